"""gdaemon.client.Client against real daemons over real sockets (docs/reference/api.rst, The client)."""

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from gdaemon.client import Client, connect_unix, decode, encode
from gdaemon.errors import (ConnectionLost, InvalidParams, MethodNotFound, RpcError,
                            Unauthorized, UnknownWorker)
from support import RawConnection, command, free_port, wait_until
from support.certs import make_certs
from support.scripts import echo_daemon, write_script


def script_daemon(spawn, workdir, config, address=None, wait=True):
    """Start a small daemon script (``examples.echo`` only) with ``config``, in the foreground.

    Unpatched, as it always was here: the client is also tested against a
    daemon that did not monkey-patch.
    """
    path = write_script(workdir, echo_daemon(config), patched=False, name="daemon_script.py")
    return spawn([sys.executable, path, "-f"], address=address, wait=wait)


@pytest.fixture
def client(echo):
    with Client(echo.address, timeout=10.0) as c:
        yield c


# -- calls ---------------------------------------------------------------------

def test_call_positional_and_by_name(client):
    assert client.call("examples.echo", "hi") == "hi"
    assert client.call("examples.echo", message="by name") == "by name"
    assert client.call("examples.echo", "é ünïcode \n newline") == "é ünïcode \n newline"


def test_call_rejects_positional_and_named_together(client):
    with pytest.raises(TypeError):
        client.call("examples.echo", "a", message="b")
    # Nothing was sent: the connection still answers in order.
    assert client.call("examples.echo", "after") == "after"


def test_attribute_proxy_joins_nested_names(client):
    assert client.examples.echo(message="proxied") == "proxied"
    assert client.examples.echo("positional") == "positional"
    methods = client.system.listMethods()
    assert "examples.echo" in methods and methods == sorted(methods)
    assert client.daemon.status()["pid"] > 0
    with pytest.raises(AttributeError):
        client._private  # noqa: B018 - private names are never RPC methods


def test_client_connects_lazily_and_reconnects_after_close(echo, workdir):
    c = Client(echo.address)
    assert not c.connected
    assert c.call("examples.echo", "1") == "1"
    assert c.connected
    c.close()
    c.close()  # idempotent
    assert not c.connected
    assert c.call("examples.echo", "2") == "2"
    c.close()


def test_batch_mixes_results_and_errors(client):
    with client.batch() as batch:
        ok = batch.examples.echo("first")
        missing = batch.call("no.such.method")
        bad = batch.examples.echo(42)
        batch.notify("examples.echo", "ignored")
        named = batch.call("examples.echo", message="second")
        with pytest.raises(RuntimeError):
            ok.result()  # not sent until the block ends
    assert ok.result() == "first"
    assert named.result() == "second"
    with pytest.raises(MethodNotFound) as info:
        missing.result()
    assert info.value.code == -32601
    assert isinstance(bad.exception(), InvalidParams)
    assert "message" in bad.exception().message
    # The connection is still in step after the batch.
    assert client.examples.echo("after") == "after"


def test_batch_is_one_array_line_on_the_wire(workdir):
    """Observe the bytes the client writes, on a listener of our own."""
    path = os.path.join(workdir, "s.sock")
    seen = []

    def serve(conn):
        line = conn.makefile("rb").readline()
        seen.append(line)
        batch = json.loads(line)
        replies = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in batch if "id" in r]
        conn.sendall(json.dumps(list(reversed(replies))).encode() + b"\n")

    with one_shot_server(path, serve):
        with Client("unix://" + path) as c:
            with c.batch() as b:
                futures = [b.call("m", i) for i in range(3)]
                b.notify("n", "x")
            assert [f.result() for f in futures] == [0, 1, 2]
    assert len(seen) == 1 and seen[0].endswith(b"\n") and seen[0].count(b"\n") == 1
    assert isinstance(json.loads(seen[0]), list) and len(json.loads(seen[0])) == 4


def test_batch_not_sent_when_block_raises(client):
    with pytest.raises(ZeroDivisionError):
        with client.batch() as batch:
            future = batch.examples.echo("never")
            1 / 0
    with pytest.raises(RuntimeError):
        future.result()
    assert client.examples.echo("still fine") == "still fine"


def test_notify_gets_no_reply_and_calls_stay_in_order(client):
    client.notify("examples.echo", "one")
    client.notify("no.such.method")
    client.notify("examples.echo", message="two")
    assert client.call("examples.echo", "three") == "three"
    assert client.call("examples.echo", "four") == "four"


# -- errors --------------------------------------------------------------------

def test_errors_raise_the_specific_rpcerror_subclass(client):
    with pytest.raises(MethodNotFound) as info:
        client.call("no.such.method")
    assert info.value.code == -32601 and isinstance(info.value, RpcError)
    with pytest.raises(InvalidParams) as info:
        client.examples.echo()
    assert info.value.code == -32602 and "message" in info.value.message
    with pytest.raises(InvalidParams):
        client.examples.echo(message=1)
    with pytest.raises(UnknownWorker) as info:
        client.worker.restart("nobody")
    assert info.value.code == -32002
    # Errors leave the connection usable.
    assert client.examples.echo("ok") == "ok"


def test_unreachable_unix_socket_raises_connection_lost(workdir):
    address = "unix://" + os.path.join(workdir, "nobody.sock")
    c = Client(address)
    with pytest.raises(ConnectionLost) as info:
        c.call("system.listMethods")
    assert address in str(info.value)
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(ConnectionLost):
        c.notify("x")


def test_unreachable_tcp_port_raises_connection_lost():
    address = "tcp://127.0.0.1:%d" % free_port()
    with pytest.raises(ConnectionLost) as info:
        Client(address, timeout=2).connect()
    assert address in str(info.value)


def test_daemon_stop_closes_connection_then_next_daemon_is_reached(spawn, workdir):
    first = spawn([command("gdaemon-echo"), "-f"])
    c = Client(first.address, timeout=10)
    assert c.daemon.stop() is True
    assert first.wait(15) == 0
    with pytest.raises(ConnectionLost) as info:
        c.examples.echo("anyone?")
    assert first.address in str(info.value)
    # A new daemon on the same socket: the same client reconnects on its own.
    second = spawn([command("gdaemon-echo"), "-f"])
    assert c.examples.echo("back") == "back"
    assert c.daemon.status()["pid"] == second.pid
    c.close()


def test_idle_connection_closed_by_daemon_reconnects_transparently(spawn, workdir):
    first = spawn([command("gdaemon-echo"), "-f"])
    c = Client(first.address, timeout=10)
    assert c.examples.echo("one") == "one"
    RawConnection(first.address).call("daemon.stop")
    assert first.wait(15) == 0
    spawn([command("gdaemon-echo"), "-f"])
    # The old connection was closed while idle: nothing was lost, so the
    # client reconnects before sending instead of failing.
    assert c.examples.echo("two") == "two"
    c.close()


# -- events ----------------------------------------------------------------------

def next_named(events, name, limit=50):
    """The next event called ``name`` (others, e.g. late events of the readiness probe, skipped)."""
    for _, event in zip(range(limit), events):
        if event["name"] == name:
            return event
    raise AssertionError("no %s event" % name)


def test_subscribe_yields_pushed_events_and_calls_still_work(client, echo):
    events = client.subscribe("rpc.*")
    with RawConnection(echo.address) as other:
        assert other.result("examples.echo", ["x"]) == "x"
        event = next_named(events, "rpc.connect")
        assert set(event) == {"name", "data", "time"}
        assert isinstance(event["time"], (int, float))
        # Calls share the connection with the pushed events.
        assert client.examples.echo("between") == "between"
    next_named(events, "rpc.disconnect")


def test_next_event_timeout_keeps_connection_usable(client):
    client.subscribe(["nothing.matches.*"])
    with pytest.raises(TimeoutError):
        client.next_event(timeout=0.2)
    assert client.examples.echo("alive") == "alive"


def test_subscription_raises_connection_lost_when_daemon_stops(echo):
    c = Client(echo.address, timeout=10)
    events = c.subscribe(["*"])
    RawConnection(echo.address).call("daemon.stop")
    names = []
    with pytest.raises(ConnectionLost):
        for event in events:
            names.append(event["name"])
            assert len(names) < 1000
    assert echo.wait(15) == 0
    c.close()


def test_subscription_stops_quietly_after_close(client):
    events = client.subscribe("nothing.*")
    client.close()
    assert list(events) == []


# -- authentication ------------------------------------------------------------------

@pytest.fixture
def token_daemon(spawn, workdir):
    """A daemon with ``token``; readiness checked with an authenticated raw call."""
    proc = script_daemon(spawn, workdir, {"token": "s3cret"}, wait=False)

    def ready():
        assert proc.proc.poll() is None, proc.output()
        with RawConnection(proc.address, timeout=2) as conn:
            return conn.call("system.auth", {"token": "s3cret"}).get("result") is True
    wait_until(ready, 15, message="token daemon")
    return proc


def test_token_is_sent_first_on_every_connection(token_daemon):
    c = Client(token_daemon.address, token="s3cret")
    assert c.examples.echo("authenticated") == "authenticated"
    c.close()
    assert c.examples.echo("again") == "again"  # system.auth sent again
    c.close()


def test_missing_or_wrong_token_is_unauthorized(token_daemon):
    with pytest.raises(Unauthorized) as info:
        Client(token_daemon.address).examples.echo("no token")
    assert info.value.code == -32001
    with pytest.raises(Unauthorized):
        Client(token_daemon.address, token="wrong").connect()


# -- TLS -------------------------------------------------------------------------

@pytest.fixture
def tls_daemon(spawn, workdir):
    """A daemon on ``tls://``, its certificate signed by a throw-away CA; ``(proc, cafile)``."""
    certs = make_certs(workdir)
    address = "tls://127.0.0.1:%d" % free_port()
    proc = script_daemon(spawn, workdir, {"sockethandler": address, "certfile": certs.certfile,
                                          "keyfile": certs.keyfile}, address=address, wait=False)

    def ready():
        assert proc.proc.poll() is None, proc.output()
        with Client(address, cafile=certs.cafile, timeout=2) as c:
            return c.system.listMethods()
    wait_until(ready, 15, message="tls daemon")
    return proc, certs.cafile


def test_tls_verifies_the_daemon_certificate(tls_daemon):
    proc, cafile = tls_daemon
    with Client(proc.address, cafile=cafile) as c:
        assert c.examples.echo("over tls") == "over tls"
    # Without the CA the daemon's certificate is refused.
    with pytest.raises(ConnectionLost) as info:
        Client(proc.address, timeout=5).connect()
    assert "certificate" in str(info.value).lower()


# -- websocket -----------------------------------------------------------------------

def test_websocket_endpoint_calls_batches_and_events(workdir, spawn):
    port = free_port()
    proc = script_daemon(spawn, workdir, {"websockethandler": "tcp://127.0.0.1:%d" % port})
    with Client("ws://127.0.0.1:%d/rpc" % port, timeout=10) as c:
        assert c.examples.echo("over ws") == "over ws"
        assert c.examples.echo("x" * 70000) == "x" * 70000  # 64-bit frame length
        with c.batch() as b:
            ok, missing = b.examples.echo("b"), b.call("no.such")
        assert ok.result() == "b" and isinstance(missing.exception(), MethodNotFound)
        events = c.subscribe("rpc.*")
        RawConnection(proc.address).close()
        next_named(events, "rpc.connect")


def _ws_server_frame(opcode, payload, fin=True):
    from gdaemon.wire.websocket import encode_frame as ws_frame
    return ws_frame(opcode, payload, fin=fin)


def test_websocket_client_handles_fragments_pings_and_close():
    """RFC 6455 details the daemon may never exercise, checked on a raw server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    observed = {}

    def serve():
        from gdaemon.wire.websocket import parse_frame as ws_parse_frame
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
            accept = base64.b64encode(hashlib.sha1(headers["Sec-WebSocket-Key"].encode()
                                                   + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            buffer = bytearray(rest)

            def read_frame():
                while True:
                    raw_masked = len(buffer) >= 2 and bool(buffer[1] & 0x80)
                    frame = ws_parse_frame(buffer, 1 << 20)
                    if frame is not None:
                        return raw_masked, frame
                    buffer.extend(conn.recv(4096))

            masked, (fin, opcode, payload) = read_frame()
            observed["request"] = (masked, fin, opcode, json.loads(payload))
            reply = json.dumps({"jsonrpc": "2.0", "id": json.loads(payload)["id"],
                                "result": "fragmented reply"}).encode()
            # A reply in three fragments with a ping and an event in between.
            conn.sendall(_ws_server_frame(0x1, reply[:5], fin=False)
                         + _ws_server_frame(0x9, b"are you there")
                         + _ws_server_frame(0x0, reply[5:12], fin=False)
                         + _ws_server_frame(0x0, reply[12:], fin=True))
            masked, (fin, opcode, payload) = read_frame()
            observed["pong"] = (masked, opcode, payload)
            conn.sendall(_ws_server_frame(0x8, b"\x03\xe8bye"))
            opcode = None
            while opcode != 0x8:  # the client's next request may come first
                masked, (fin, opcode, payload) = read_frame()
            observed["close"] = (opcode, payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        c = Client("ws://127.0.0.1:%d/rpc" % port, timeout=5)
        assert c.call("examples.echo", "hi") == "fragmented reply"
        with pytest.raises(ConnectionLost):
            c.call("examples.echo", "after close")  # the server closed: no reply
        thread.join(5)
    finally:
        listener.close()
    assert observed["request"][:3] == (True, True, 0x1)
    assert observed["request"][3]["params"] == ["hi"]
    assert observed["pong"] == (True, 0xA, b"are you there")
    assert observed["close"] == (0x8, b"\x03\xe8")


def test_websocket_handshake_refusal_is_connection_lost():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionLost) as info:
            Client("ws://127.0.0.1:%d/rpc" % listener.getsockname()[1], timeout=5).connect()
        assert "403" in str(info.value)
    finally:
        thread.join(5)
        listener.close()


# -- unix socket paths longer than sun_path ---------------------------------------------

class one_shot_server:
    """A unix listener answering one connection with ``handler(conn)`` in a thread."""

    def __init__(self, path, handler, bind_path=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(bind_path or path)
        self.sock.listen(1)
        self.handler = handler
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn, _ = self.sock.accept()
        with conn:
            self.handler(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(5)
        self.sock.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc/self/fd")
def test_connect_unix_reaches_paths_longer_than_107_bytes(workdir):
    deep = os.path.join(workdir, *(["d" * 40] * 3))
    os.makedirs(deep)
    path = os.path.join(deep, "daemon.sock")
    assert len(path) > 107
    dirfd = os.open(deep, os.O_RDONLY)
    try:
        bind_path = "/proc/self/fd/%d/daemon.sock" % dirfd

        def serve(conn):
            request = json.loads(conn.makefile("rb").readline())
            conn.sendall(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "deep"}).encode() + b"\n")

        with one_shot_server(path, serve, bind_path=bind_path):
            assert os.path.exists(path)
            with Client("unix://" + path) as c:
                assert c.call("anything") == "deep"
        with pytest.raises(OSError):
            connect_unix(os.path.join(deep, "missing.sock"), 1)
    finally:
        os.close(dirfd)


# -- gevent ------------------------------------------------------------------------

GEVENT_SCRIPT = textwrap.dedent("""
    import sys
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from gdaemon.client import Client

    address = sys.argv[1]
    def worker(n):
        with Client(address) as c:
            c.connect()
            sock = c._transport.sock
            assert type(sock).__module__.startswith("gevent"), type(sock)
            return [c.examples.echo("%d-%d" % (n, i)) for i in range(20)]
    jobs = [gevent.spawn(worker, n) for n in range(5)]
    gevent.joinall(jobs, raise_error=True, timeout=20)
    print(sum(len(job.value) for job in jobs), jobs[3].value[7])
""")

PLAIN_SCRIPT = textwrap.dedent("""
    import socket, sys
    from gdaemon.client import Client
    with Client(sys.argv[1]) as c:
        c.connect()
        assert type(c._transport.sock) is socket.socket, type(c._transport.sock)
        assert "gevent" not in sys.modules or not __import__("gevent.monkey").monkey.is_anything_patched()
        print(c.examples.echo("plain"))
""")


@pytest.mark.parametrize("script, expected", [(GEVENT_SCRIPT, "100 3-7"), (PLAIN_SCRIPT, "plain")],
                         ids=["monkey-patched", "plain"])
def test_client_with_and_without_gevent_monkey_patching(echo, workdir, script, expected):
    result = subprocess.run([sys.executable, "-c", script, echo.address], cwd=workdir,
                            capture_output=True, text=True, timeout=40)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


# -- codec -------------------------------------------------------------------------

def test_encode_decode_round_trip_and_big_integers():
    value = {"a": [1, 2.5, None, True], "ü": "line\nbreak"}
    data = encode(value)
    assert b"\n" not in data
    assert decode(data) == value
    # orjson refuses integers beyond 64 bits: the stdlib takes over.
    assert json.loads(encode({"big": 2 ** 70})) == {"big": 2 ** 70}
    with pytest.raises(ValueError):
        decode(b"{not json")
