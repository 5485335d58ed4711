"""JSON-RPC over the websocket at ``GET /rpc`` (docs/reference/http.rst), against real daemons.

Spoken with the ``websocket-client`` package (an independent RFC 6455
implementation) and, once, with ``gdaemon.client``.  Most tests share one
module-scoped daemon with a forked worker; tests that need other limits
start their own.
"""

import json
import os
import signal
import socket
import struct
import sys
import time

import pytest
import websocket

from support import RawConnection, free_port, wait_until
from support.workers import (fd_targets, kinds, live_children, standby_pids, wait_looping,
                             wait_status, write_daemon)

PAUSED, LOOPING = 2, 1


def start(spawn, workdir, install="pass", wait=True, **config):
    """A daemon with examples.echo and a websocket endpoint on a free port."""
    port = free_port()
    cfg = {"websockethandler": "tcp://127.0.0.1:%d" % port}
    cfg.update(config)
    path = write_daemon(workdir, install, config=cfg)
    proc = spawn([sys.executable, path, "-f"], wait=wait)
    proc.url = "ws://127.0.0.1:%d/rpc" % port
    return proc


@pytest.fixture(scope="module")
def daemon(module_spawn, module_workdir):
    """One shared daemon: worker ``alpha`` (forked, forever), default limits."""
    proc = start(module_spawn, module_workdir,
                 'daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)')
    proc.origin = proc.url[:-len("/rpc")].replace("ws://", "http://")
    wait_looping(proc, "alpha")
    return proc


def connect(url, **kw):
    kw.setdefault("timeout", 10)
    return websocket.create_connection(url, **kw)


class Peer:
    """A websocket JSON-RPC peer that keeps pushed events apart from replies."""

    def __init__(self, url, **kw):
        self.ws = connect(url, **kw)
        self.events = []
        self._id = 0

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def receive(self):
        message = json.loads(self.ws.recv())
        if isinstance(message, dict) and message.get("method") == "event":
            self.events.append(message["params"])
        return message

    def call(self, method, params=None):
        self._id += 1
        request = {"jsonrpc": "2.0", "method": method, "id": self._id}
        if params is not None:
            request["params"] = params
        self.send(request)
        while True:
            message = self.receive()
            if "id" in message:
                assert message["id"] == self._id, message
                return message

    def result(self, method, params=None):
        response = self.call(method, params)
        assert "error" not in response, response
        return response["result"]

    def wait_event(self, predicate, timeout=10.0):
        """The first pushed event (seen or to come) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no matching event among %r" % self.events
            self.ws.settimeout(remaining)
            self.receive()

    def close(self):
        self.ws.close()


def tcp_inodes(local_port, remote_port=None):
    """Inodes of TCP sockets on ``local_port``: listening, or connected to ``remote_port``."""
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            if local == local_port and (remote == remote_port if remote_port else fields[3] == "0A"):
                found.add(int(fields[9]))
    return found


def close_code(ws):
    """Read until the server's close frame; return its status code."""
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None


# -- the shared daemon --------------------------------------------------------------

def test_echo_ordering_and_worker_events(daemon):
    peer = Peer(daemon.url)
    try:
        assert peer.result("examples.echo", ["hé ✓"]) == "hé ✓"
        assert peer.result("examples.echo", {"message": "by name"}) == "by name"
        # Pipelined requests are answered in order, one message each.
        for i in range(50):
            peer.send({"jsonrpc": "2.0", "method": "examples.echo", "params": [str(i)], "id": i})
        replies = [peer.receive() for _ in range(50)]
        assert [r["id"] for r in replies] == list(range(50))
        assert [r["result"] for r in replies] == [str(i) for i in range(50)]
        # A notification gets no reply: the next message answers the next request.
        peer.send({"jsonrpc": "2.0", "method": "examples.echo", "params": ["quiet"]})
        assert peer.result("examples.echo", ["loud"]) == "loud"
        # Batches answer as one message.
        peer.send([{"jsonrpc": "2.0", "method": "examples.echo", "params": ["a"], "id": "a"},
                   {"jsonrpc": "2.0", "method": "nope", "id": "b"}])
        batch = peer.receive()
        assert batch[0]["result"] == "a" and batch[1]["error"]["code"] == -32601

        assert peer.result("events.subscribe", [["worker.*"]]) is True
        assert peer.result("worker.pause", ["alpha"]) is True
        event = peer.wait_event(lambda e: e["name"] == "worker.state" and e["data"]["status"] == PAUSED)
        assert event["data"] == {"name": "alpha", "status": PAUSED, "status_name": "PAUSED"}
        assert isinstance(event["time"], float)
        assert peer.result("worker.resume", ["alpha"]) is True
        peer.wait_event(lambda e: e["name"] == "worker.state" and e["data"]["status"] == LOOPING)
        # The websocket counts in daemon.status.
        assert peer.result("daemon.status")["connections"] >= 1
    finally:
        peer.close()


def test_bad_messages_do_not_disturb(daemon):
    peer = Peer(daemon.url)
    try:
        peer.ws.send("{not json")
        assert peer.receive()["error"]["code"] == -32700
        peer.ws.send("   ")  # blank: ignored, like a blank line
        peer.ws.send('{"jsonrpc": "2.0", "method": 5, "id": 1}')
        assert peer.receive()["error"]["code"] == -32600
        # A binary message carrying JSON is accepted too.
        peer.ws.send_binary(json.dumps({"jsonrpc": "2.0", "method": "examples.echo",
                                        "params": ["bin"], "id": 2}).encode())
        assert peer.receive()["result"] == "bin"
        # A message in three fragments.
        text = json.dumps({"jsonrpc": "2.0", "method": "examples.echo", "params": ["frag"], "id": 3})
        peer.ws.send_frame(websocket.ABNF.create_frame(text[:10], websocket.ABNF.OPCODE_TEXT, fin=0))
        peer.ws.send_frame(websocket.ABNF.create_frame(text[10:20], websocket.ABNF.OPCODE_CONT, fin=0))
        peer.ws.send_frame(websocket.ABNF.create_frame(text[20:], websocket.ABNF.OPCODE_CONT, fin=1))
        assert peer.receive()["result"] == "frag"
        # Pings are answered with the same payload.
        peer.ws.ping(b"are you there")
        opcode, frame = peer.ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"are you there"
        assert peer.result("examples.echo", ["still fine"]) == "still fine"
    finally:
        peer.close()
    # Invalid UTF-8 in a text message: close code 1007; the daemon is unaffected.
    ws = connect(daemon.url)
    ws.send(b"\xff\xfe", opcode=websocket.ABNF.OPCODE_TEXT)
    assert close_code(ws) == 1007
    ws.close()
    assert daemon.result("examples.echo", ["ok"]) == "ok"


def test_origin_check(daemon):
    # Default: only the endpoint's own http://HOST:PORT (what websocket-client sends).
    ws = connect(daemon.url, origin=daemon.origin)
    ws.close()
    ws = connect(daemon.url, suppress_origin=True)  # no Origin: not a browser, allowed
    ws.close()
    for origin in ("http://evil.example", "null", daemon.origin.replace("127.0.0.1", "localhost"),
                   daemon.origin.replace("http:", "https:")):
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            connect(daemon.url, origin=origin)
        assert caught.value.status_code == 403, origin


def test_connect_and_disconnect_events(daemon):
    with RawConnection(daemon.address) as watcher:
        assert watcher.result("events.subscribe", [["rpc.*"]]) is True
        ws = connect(daemon.url)
        local = "%s:%d" % ws.sock.getsockname()[:2]
        ws.close()
        seen = []
        while not any(e["name"] == "rpc.disconnect" and e["data"]["peer"] == local for e in seen):
            message = watcher.read()
            assert message is not None
            seen.append(message["params"])
        connects = [e for e in seen if e["name"] == "rpc.connect" and e["data"]["peer"] == local]
        assert connects and connects[0]["data"]["transport"] == "websocket"


def test_gdaemon_client_over_websocket(daemon):
    from gdaemon.client import Client
    with Client(daemon.url) as client:
        assert client.examples.echo(message="via client") == "via client"
        events = client.subscribe(["worker.*"], timeout=10)
        client.call("worker.pause", "alpha")
        for event in events:
            if event["name"] == "worker.state" and event["data"]["status"] == PAUSED:
                break
        client.call("worker.resume", "alpha")
    wait_status(daemon, "alpha", LOOPING)


def test_forked_workers_hold_no_http_socket(daemon):
    """A worker forked while a websocket is open keeps neither it nor the listener."""
    port = int(daemon.url.split(":")[2].split("/")[0])
    peer = Peer(daemon.url)
    try:
        assert peer.result("examples.echo", ["open"]) == "open"
        client_port = peer.ws.sock.getsockname()[1]
        listener, connection = tcp_inodes(port), tcp_inodes(port, client_port)
        assert listener and connection
        daemon_sockets = kinds(fd_targets(daemon.pid), "socket")
        assert listener <= daemon_sockets and connection <= daemon_sockets
        before = {child.pid for child in live_children(daemon.pid)}
        old = wait_looping(daemon, "alpha")["pid"]
        os.kill(old, signal.SIGKILL)  # respawned, and a new standby forked, while we are connected
        new = wait_looping(daemon, "alpha", other_than=old)["pid"]
        forked = wait_until(lambda: [pid for pid in [new] + standby_pids(daemon.pid) if pid not in before]
                            if standby_pids(daemon.pid) else None, 10, message="a fresh standby")
        for pid in forked:
            held = kinds(fd_targets(pid), "socket")
            assert not (held & (listener | connection)), pid
        assert peer.result("examples.echo", ["still open"]) == "still open"
    finally:
        peer.close()


# -- daemons of their own -----------------------------------------------------------

def test_message_too_large_and_slow_message(spawn, workdir):
    proc = start(spawn, workdir, socketmaxmessage=4096, sockettimeout=0.5)
    # Exactly socketmaxmessage bytes pass; one more is refused.
    ws = connect(proc.url)
    fits = "x" * (4096 - len(json.dumps({"jsonrpc": "2.0", "method": "examples.echo", "params": [""], "id": 1})))
    ws.send(json.dumps({"jsonrpc": "2.0", "method": "examples.echo", "params": [fits], "id": 1}))
    assert json.loads(ws.recv())["result"] == fits
    ws.send("[" + " " * 5000 + "]")
    error = json.loads(ws.recv())
    assert error["error"]["code"] == -32003 and error["id"] is None
    assert close_code(ws) == 1009
    ws.close()

    # A message whose rest never comes: closed after sockettimeout, no reply.
    ws = connect(proc.url)
    ws.sock.sendall(b"\x81")
    started = time.monotonic()
    ws.settimeout(5)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv()
    assert time.monotonic() - started < 3
    ws.close()
    assert proc.result("examples.echo", ["alive"]) == "alive"


def test_connection_limit_and_idle_timeout(spawn, workdir):
    proc = start(spawn, workdir, socketmaxconnections=2, socketidle=0.6)
    first, second = Peer(proc.url), Peer(proc.url)
    try:
        assert first.result("examples.echo", ["1"]) == "1"
        assert second.result("examples.echo", ["2"]) == "2"
        # Every HTTP connection counts (docs/reference/http.rst): one more is refused at once,
        # before its handshake, with 503 and a -32004 body.
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            connect(proc.url)
        assert caught.value.status_code == 503
        assert json.loads(caught.value.resp_body)["error"]["code"] == -32004
        # Idle ones are closed after socketidle; then there is room again.
        started = time.monotonic()
        first.ws.settimeout(5)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            first.ws.recv()
        assert 0.4 < time.monotonic() - started < 3
        # (the raw connection asking counts for one)
        wait_until(lambda: proc.result("daemon.status")["connections"] == 1, 5,
                   message="idle websockets closed")
        fourth = Peer(proc.url)
        assert fourth.result("examples.echo", ["4"]) == "4"
        fourth.close()
    finally:
        first.close()
        second.close()


def test_token_required(spawn, workdir):
    proc = start(spawn, workdir, wait=False, token="s3cret")
    wait_until(lambda: connect(proc.url).close() or True, 15, message="websocket endpoint up")

    # Anything but system.auth first: -32001, then close code 1008.
    peer = Peer(proc.url)
    response = peer.call("examples.echo", ["hi"])
    assert response["error"]["code"] == -32001
    assert close_code(peer.ws) == 1008
    peer.close()

    peer = Peer(proc.url)
    assert peer.call("system.auth", ["wrong"])["error"]["code"] == -32001
    assert close_code(peer.ws) == 1008
    peer.close()

    peer = Peer(proc.url)
    try:
        assert peer.result("system.auth", ["s3cret"]) is True
        assert peer.result("examples.echo", ["in"]) == "in"
    finally:
        peer.close()


def test_stop_over_websocket_says_goodbye(spawn, workdir):
    proc = start(spawn, workdir)
    peer = Peer(proc.url)
    assert peer.result("events.subscribe", [["daemon.*"]]) is True
    assert peer.result("daemon.stop") is True
    # The subscriber hears daemon.stop, then a "going away" close.
    peer.wait_event(lambda e: e["name"] == "daemon.stop")
    assert close_code(peer.ws) == 1001
    peer.close()
    assert proc.wait(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(proc.url.split(":")[2].split("/")[0])), timeout=2).close()
