"""Issue 8: hostile and clumsy clients cost a bounded amount, per request and per connection.

Every case runs against a real daemon started as a real process, over real
sockets: peak memory is read from ``/proc/PID/status`` (``VmHWM``),
descriptors from ``/proc/PID/fd``, CPU time from ``/proc/PID/stat``, log
lines from the daemon's stderr (foreground mode).  Most tests share one
daemon; those that need other limits start their own.
"""

import http.client
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

import pytest
import websocket

from support import RawConnection, free_port, recv_until_closed, rpc, run, wait_until
from support.scripts import write_script

SCRIPT = """
import resource
import typing

import gdaemon.ratelimit
gdaemon.ratelimit.DEFAULT_INTERVAL = {interval!r}

if {nofile!r}:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile!r}, hard))


class HostileDaemon(EchoDaemon):
    def setup(self):
        super().setup()
        self.calls = 0

        @self.rpc.method("test.any", params=[("value", typing.Any)])
        def any_(value):
            return value

        @self.rpc.method("test.len", params=[("value", str)], returns=int)
        def length(value):
            return len(value)

        @self.rpc.method("test.count", returns=int)
        def count():
            self.calls += 1
            return self.calls

        @self.rpc.method("test.calls", returns=int)
        def calls():
            return self.calls

        @self.rpc.method("test.fail")
        def fail():
            raise ValueError("handler bug number %d" % self.calls)


HostileDaemon({config!r}).init()
"""


def write_hostile(workdir, config, interval=60.0, nofile=0):
    """Write the HostileDaemon script; ``interval`` for rate-limited logs, ``nofile`` its fd limit."""
    return write_script(workdir, SCRIPT.format(interval=interval, nofile=nofile, config=config),
                        name="hostiled.py")


def start(workdir, spawn, interval=60.0, nofile=0, http=True, **config):
    """A HostileDaemon in ``workdir``; ``proc.port`` is its HTTP port (or None)."""
    port = free_port() if http else None
    cfg = {"description": "Hostile Test Daemon"}
    if http:
        cfg["websockethandler"] = "tcp://127.0.0.1:%d" % port
    cfg.update(config)
    path = write_hostile(workdir, cfg, interval, nofile)
    address = None
    if cfg.get("sockethandler", "").startswith("tcp://"):
        address = cfg["sockethandler"]
    proc = spawn([sys.executable, path, "-f"], address=address, wait=not cfg.get("token"))
    proc.port = port
    proc.url = "ws://127.0.0.1:%d/rpc" % port if http else None
    return proc


@pytest.fixture(scope="module")
def daemon(module_workdir, module_spawn):
    """One shared daemon with default limits, a unix socket and the HTTP endpoint."""
    return start(module_workdir, module_spawn)


# -- /proc ------------------------------------------------------------------------------

def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_kb(pid):
    return proc_status(pid, "VmHWM")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_text(proc):
    return proc.output()


# -- wire helpers ----------------------------------------------------------------------

def request(method, params=None, id=1):
    obj = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        obj["params"] = params
    return obj


def post(port, body, path="/rpc", content_type="application/json", headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        conn.request("POST", path, body=body, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw_exchange(proc, data):
    """Send one line on a fresh unix connection; the decoded reply."""
    with proc.connect() as conn:
        conn.send_raw(data + b"\n")
        return conn.read()


def ws_exchange(proc, data):
    ws = websocket.create_connection(proc.url, timeout=10)
    try:
        ws.send(data, opcode=websocket.ABNF.OPCODE_TEXT)
        return json.loads(ws.recv())
    finally:
        ws.close()


def http_exchange(proc, data):
    status, body = post(proc.port, data)
    return status, json.loads(body)


#: The ways in for a request: the raw socket, the websocket, HTTP POST.
TRANSPORTS = ["socket", "websocket", "http"]


def exchange(proc, transport, data):
    """``(HTTP status, decoded reply)`` of ``data`` sent over ``transport``; no status but over HTTP."""
    if transport == "http":
        return http_exchange(proc, data)
    return None, (raw_exchange if transport == "socket" else ws_exchange)(proc, data)


def calls(proc):
    return proc.result("test.calls")


#: The worst 1 MB batch lines: each value is a Python object (and, before
#: issue 8, an error object in a 47 MB reply).
MB = 1024 * 1024 - 64
WORST_LINES = {
    "ints": b"[" + b"1," * (MB // 2 - 1) + b"1]",
    "objects": b"[" + b"{}," * (MB // 3 - 1) + b"{}]",
    "arrays": b"[" + b"[]," * (MB // 3 - 1) + b"[]]",
    "strings": b"[" + b'"",' * (MB // 3 - 1) + b'""]',
}


def assert_batch_refused(response, limit=1000):
    assert response["error"]["code"] == -32600, response
    assert response["id"] is None, response
    assert str(limit) in response["error"]["message"], response


# == socketmaxbatch ===================================================================

@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_long_batch_is_one_error_and_nothing_of_it_runs(daemon, transport):
    before = calls(daemon)
    long_batch = json.dumps([request("test.count", id=i) for i in range(1001)]).encode()
    status, response = exchange(daemon, transport, long_batch)
    assert status == (400 if transport == "http" else None)
    assert_batch_refused(response)
    assert calls(daemon) == before, "part of a refused batch ran"
    # Exactly socketmaxbatch requests is a batch like any other.
    fits = json.dumps([request("test.count", id=i) for i in range(1000)]).encode()
    status, response = exchange(daemon, transport, fits)
    assert status == (200 if transport == "http" else None)
    assert [r["id"] for r in response] == list(range(1000))
    assert calls(daemon) == before + 1000


@pytest.mark.timeout(60)
def test_one_megabyte_batches_do_not_grow_peak_memory(daemon):
    """Before issue 8 one ``[1,1,...]`` line raised VmHWM from 36 MB to 285 MB."""
    # Warm every path up with small requests, so that their first use is not counted.
    warm = json.dumps(request("examples.echo", ["warm"])).encode()
    for transport in TRANSPORTS:
        assert exchange(daemon, transport, warm)[1]["result"] == "warm"
    before = peak_kb(daemon.pid)
    for line in WORST_LINES.values():
        for transport in TRANSPORTS:
            status, response = exchange(daemon, transport, line)
            assert status == (400 if transport == "http" else None)
            assert_batch_refused(response)
    grown = peak_kb(daemon.pid) - before
    # Reading the line itself needs a copy or two of it: a few MB, never its objects.
    assert grown < 6 * 1024, "peak memory grew by %d kB" % grown


@pytest.mark.timeout(60)
def test_long_batches_do_not_stall_other_clients(daemon):
    """An attacker sends 1 MB batch lines in a loop; daemon.status stays quick elsewhere."""
    stop = threading.Event()
    sent = []
    failures = []

    def attack():
        try:
            with daemon.connect(timeout=30) as conn:
                lines = list(WORST_LINES.values())
                while not stop.is_set():
                    conn.send_raw(lines[len(sent) % len(lines)] + b"\n")
                    assert_batch_refused(conn.read())
                    sent.append(1)
        except Exception as exc:  # reported below, in the test's own thread
            failures.append(exc)

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        wait_until(lambda: len(sent) >= 2, 30, message="the attack to be under way")
        rounds_before = len(sent)
        # Every call is answered during the attack.  Before issue 8 each took
        # up to 1.8 s: a hundred outlast the test's timeout.  How fast is
        # scripts/bench.py hostile's figure (p99 < 10 ms), not asserted here.
        with daemon.connect() as conn:
            for _ in range(100):
                assert "pid" in conn.result("daemon.status")
        # The attacker was served alongside, not starved: it goes on.
        wait_until(lambda: len(sent) >= rounds_before + 2 or failures, 30,
                   message="the attack to go on")
    finally:
        stop.set()
        attacker.join(30)
    assert not failures, failures


@pytest.mark.timeout(60)
def test_multicall_is_bounded_by_socketmaxbatch(daemon):
    before = calls(daemon)
    too_many = [{"methodName": "test.count", "params": []}] * 1001
    response = daemon.call("system.multicall", [too_many])
    assert response["error"]["code"] == -32602 and "1000" in response["error"]["message"]
    assert calls(daemon) == before


# == integers of any size, end of input ================================================

BIG = [2 ** 64, 2 ** 70, -2 ** 63 - 1, -2 ** 100, 10 ** 40]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["socket", "websocket", "http"])
def test_big_integers_round_trip_exactly(daemon, transport):
    for value in BIG:
        line = json.dumps(request("test.any", [[value, {"n": value}]], id=value)).encode()
        if transport == "socket":
            with daemon.connect() as conn:
                conn.send_raw(line + b"\n")
                raw = conn.read_line()
        elif transport == "websocket":
            ws = websocket.create_connection(daemon.url, timeout=10)
            try:
                ws.send(line)
                raw = ws.recv().encode()
            finally:
                ws.close()
        else:
            status, raw = post(daemon.port, line)
            assert status == 200
        assert raw == b'{"jsonrpc":"2.0","result":[%d,{"n":%d}],"id":%d}' % (value, value, value)


@pytest.mark.timeout(60)
def test_the_client_round_trips_big_integers(daemon):
    from gdaemon.client import Client
    with Client(daemon.address) as client:
        for value in BIG:
            assert client.call("test.any", value) == value
            assert type(client.call("test.any", value)) is int
    with Client(daemon.url) as client:
        assert client.call("test.any", 2 ** 70) == 2 ** 70


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_end_of_input_ends_the_last_line(family, workdir, spawn):
    """``printf '{...}' | nc -U daemon.sock``: no newline, then the client shuts its side."""
    config = {}
    if family == "tcp":
        config["sockethandler"] = "tcp://127.0.0.1:%d" % free_port()
    proc = start(workdir, spawn, http=False, **config)
    pipelined = (json.dumps(request("examples.echo", ["first"], id=1)) + "\n"
                 + json.dumps(request("examples.echo", ["last"], id=2))).encode()
    for data, expected in [(json.dumps(request("examples.echo", ["hi"])).encode(), [("hi", 1)]),
                           (pipelined, [("first", 1), ("last", 2)])]:
        with RawConnection(proc.address) as conn:
            conn.send_raw(data)
            conn.sock.shutdown(socket.SHUT_WR)
            replies = []
            while True:
                response = conn.read()
                if response is None:
                    break
                replies.append((response["result"], response["id"]))
        assert replies == expected


# == socketauthtimeout ===================================================================

@pytest.fixture
def token_daemon(workdir, spawn):
    proc = start(workdir, spawn, token="s3cret", socketauthtimeout=0.5, socketmaxconnections=8,
                 sockethandler="tcp://127.0.0.1:%d" % free_port())

    def authenticated():
        with RawConnection(proc.address, timeout=5) as conn:
            return conn.call("system.auth", ["s3cret"]).get("result") is True
    wait_until(authenticated, 15, message="daemon to serve")
    return proc


@pytest.mark.timeout(60)
def test_unauthenticated_connections_are_closed_after_socketauthtimeout(token_daemon):
    proc = token_daemon
    with RawConnection(proc.address) as idle, RawConnection(proc.address) as admin:
        assert admin.result("system.auth", ["s3cret"]) is True
        started = time.monotonic()
        data = recv_until_closed(idle.sock)
        elapsed = time.monotonic() - started
        assert 0.3 < elapsed < 5, elapsed
        # One -32001 line says why, then the connection is closed.
        response = json.loads(data)
        assert response["error"]["code"] == -32001 and response["id"] is None
        # The authenticated connection outlives the timeout.
        assert admin.result("examples.echo", ["still here"]) == "still here"
    # A request started but not finished does not extend the deadline.
    with RawConnection(proc.address) as slow:
        slow.send_raw(b'{"jsonrpc":"2.0","method":"system.au')
        assert json.loads(recv_until_closed(slow.sock))["error"]["code"] == -32001


@pytest.mark.timeout(60)
def test_idle_strangers_cannot_lock_the_admin_out(token_daemon):
    """Before issue 8, 64 idle connections held every slot for socketidle (300 s);
    since issue 14 a newcomer takes the place of the oldest silent one
    (docs/reference/rpc.rst, What one client can cost)."""
    proc = token_daemon
    strangers = [RawConnection(proc.address) for _ in range(8)]
    try:
        started = time.monotonic()

        def admin_gets_in():
            with RawConnection(proc.address, timeout=5) as conn:
                return conn.call("system.auth", ["s3cret"]).get("result") is True
        wait_until(admin_gets_in, 10, interval=0.05, message="the admin to get in")
        assert time.monotonic() - started < 5
    finally:
        for conn in strangers:
            conn.close()


@pytest.mark.timeout(60)
def test_unauthenticated_websocket_is_closed_after_socketauthtimeout(workdir, spawn):
    proc = start(workdir, spawn, token="s3cret", socketauthtimeout=0.5)
    wait_until(lambda: websocket.create_connection(proc.url, timeout=5).close() or True, 15,
               message="websocket endpoint up")
    admin = websocket.create_connection(proc.url, timeout=10)
    idle = websocket.create_connection(proc.url, timeout=10)
    try:
        admin.send(json.dumps(request("system.auth", ["s3cret"])))
        assert json.loads(admin.recv())["result"] is True
        started = time.monotonic()
        response = json.loads(idle.recv())
        assert response["error"]["code"] == -32001
        opcode, frame = idle.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame.data[:2])[0] == 1008
        assert time.monotonic() - started < 5
        admin.send(json.dumps(request("examples.echo", ["in"], id=2)))
        assert json.loads(admin.recv())["result"] == "in"
    finally:
        admin.close()
        idle.close()


# == the HTTP endpoint is bounded like the raw socket =====================================

def connect_many(port, count):
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
    return socks


def close_all(socks):
    for sock in socks:
        try:
            sock.close()
        except OSError:
            pass


@pytest.mark.timeout(60)
def test_an_http_flood_keeps_descriptors_bounded_and_the_unix_socket_answering(workdir, spawn):
    """300 idle connections against a daemon whose descriptor limit is 128."""
    proc = start(workdir, spawn, nofile=128, socketmaxconnections=16, sockettimeout=1)
    baseline = fd_count(proc.pid)
    socks = connect_many(proc.port, 300)
    try:
        most = baseline
        for _ in range(5):
            # Answered during the flood (how fast: scripts/bench.py endpoint).
            assert proc.result("daemon.status")["pid"] == proc.pid
            most = max(most, fd_count(proc.pid))
        # socketmaxconnections served, plus a bounded few being refused
        # (REFUSAL_SLACK), plus a few whose close gevent defers to the next
        # loop iteration: nowhere near one per client.
        assert most <= baseline + 16 + 16 + 10, (baseline, most)
        # Silent ones make room for newcomers (docs/reference/rpc.rst, What one
        # client can cost), so each is closed quietly: evicted, or once
        # sockettimeout passed without a request.
        for sock in socks:
            data = recv_until_closed(sock)
            if data:
                assert data.startswith(b"HTTP/1.1 503 "), data[:100]
                assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == -32004
        wait_until(lambda: fd_count(proc.pid) <= baseline, 10, message="descriptors released")
    finally:
        close_all(socks)
    # Still serving both sides, and nothing was logged as an error.
    assert http_exchange(proc, json.dumps(request("examples.echo", ["after"])).encode())[1]["result"] == "after"
    assert " ERROR " not in log_text(proc)
    assert "Too many open files" not in log_text(proc)


@pytest.mark.timeout(60)
def test_slowloris_headers_and_bodies_are_cut_at_sockettimeout(workdir, spawn):
    proc = start(workdir, spawn, sockettimeout=1, interval=60.0)
    heads = [socket.create_connection(("127.0.0.1", proc.port), timeout=10) for _ in range(10)]
    bodies = [socket.create_connection(("127.0.0.1", proc.port), timeout=10) for _ in range(3)]
    try:
        for sock in bodies:
            sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")
        trickle = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10000
        selector = selectors.DefaultSelector()
        for sock in heads + bodies:
            selector.register(sock, selectors.EVENT_READ)
        open_ = set(heads + bodies)
        answers = {}
        started = time.monotonic()
        position = 0
        while open_ and time.monotonic() - started < 10:
            # One more byte to each, every 0.1 s: each read alone is quick.
            for sock in list(open_):
                try:
                    sock.send(trickle[position:position + 1] if sock in heads else b" ")
                except OSError:
                    pass
            position += 1
            for key, _ in selector.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    answers[key.fileobj] = answers.get(key.fileobj, b"") + data
                else:
                    open_.discard(key.fileobj)
                    selector.unregister(key.fileobj)
        elapsed = time.monotonic() - started
        assert not open_, "%d connections still open after %.1fs" % (len(open_), elapsed)
        assert elapsed < 5
        for sock in heads:
            assert sock not in answers  # closed quietly, no 400
        for sock in bodies:
            assert answers[sock].startswith(b"HTTP/1.1 408 ")
    finally:
        close_all(heads + bodies)
    text = log_text(proc)
    assert " ERROR " not in text and "Traceback" not in text
    # Rate-limited: one line for the ten timed-out heads.
    assert text.count("request headers incomplete") == 1, text


# == rate-limited logging of client-caused errors =========================================

def deep_xmlrpc_array(depth):
    return ("<?xml version='1.0'?><methodCall><methodName>test.any</methodName><params><param>"
            + "<value><array><data>" * depth + "</data></array></value>" * depth
            + "</param></params></methodCall>").encode()


@pytest.mark.timeout(60)
def test_client_errors_are_logged_once_per_kind_then_counted(workdir, spawn):
    proc = start(workdir, spawn, interval=1.0, socketmaxmessage=65536)
    size_before = len(log_text(proc))
    for _ in range(20):
        # A deep XML-RPC array: once ~150 KB of traceback per request.
        status, body = post(proc.port, deep_xmlrpc_array(600), path="/RPC2", content_type="text/xml")
        assert status == 200 and b"<fault>" in body and b"-32603" in body
        # Garbage instead of HTTP.
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert recv_until_closed(sock).startswith(b"HTTP/1.1 400")
        # An oversized line on the raw socket.
        with proc.connect() as conn:
            conn.send_raw(b"[" + b" " * 70000 + b"]\n")
            assert conn.read()["error"]["code"] == -32003
    assert proc.result("examples.echo", ["alive"]) == "alive"

    markers = ("nested too deeply", "bad HTTP request", "request line exceeds")

    def summarized():
        lines = log_text(proc).splitlines()
        return all(any(m in line and "and 19 similar lines" in line for line in lines) for m in markers)
    wait_until(summarized, 10, message="a summary line for each kind")
    text = log_text(proc)[size_before:]
    assert "Traceback" not in text and " ERROR " not in text
    for marker in markers:
        lines = [line for line in text.splitlines() if marker in line]
        assert 1 <= len(lines) <= 2, (marker, lines)
        if len(lines) == 2:
            assert "(and 19 similar lines in the last 1s)" in lines[1], lines
    # 60 bad requests, a few hundred bytes of log.
    assert len(text) < 3000, text


@pytest.mark.timeout(60)
def test_handler_bugs_still_log_their_traceback(daemon):
    before = log_text(daemon).count("ValueError: handler bug number")
    for _ in range(2):
        response = daemon.call("test.fail")
        assert response["error"]["code"] == -32603
        assert "handler bug" not in json.dumps(response)
    wait_until(lambda: log_text(daemon).count("ValueError: handler bug number") == before + 2, 5,
               message="two tracebacks")
    assert "Traceback" in log_text(daemon)


# == loopback is decided on the resolved address ==========================================

@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", ["sockethandler", "websockethandler"])
def test_a_host_spelled_like_loopback_is_not_loopback(workdir, key):
    port = free_port()
    config = {key: "tcp://127.attacker.example:%d" % port}
    result = run([sys.executable, write_hostile(workdir, config), "-f"], workdir)
    assert result.returncode == 1, result
    assert "non-loopback" in result.stderr and key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_another_spelling_of_127_0_0_1_is_loopback(workdir, spawn):
    """``2130706433`` is 127.0.0.1 once resolved: served without a token."""
    port = free_port()
    proc = start(workdir, spawn, http=False, sockethandler="tcp://2130706433:%d" % port)
    assert rpc("tcp://127.0.0.1:%d" % port, "examples.echo", ["hi"])["result"] == "hi"
    assert proc.result("examples.echo", ["again"]) == "again"


# == quadratic receive ==================================================================

@pytest.mark.timeout(60)
def test_a_long_line_read_a_kilobyte_at_a_time_costs_linear_time(workdir, spawn):
    """4 MB lines with socketbuffer 1024: ~1.5 s of CPU each when every recv copied the buffer."""
    proc = start(workdir, spawn, http=False, socketmaxmessage=4 * 1024 * 1024 + 100, sockettimeout=10)
    value = "x" * (4 * 1024 * 1024)
    line = json.dumps(request("test.len", [value])).encode() + b"\n"
    with proc.connect(timeout=30) as conn:
        assert conn.result("test.len", ["warm"]) == 4
        before = cpu_seconds(proc.pid)
        for _ in range(3):
            conn.send_raw(line)
            assert conn.read()["result"] == len(value)
        spent = cpu_seconds(proc.pid) - before
    assert spent < 0.6, "%.2f s of CPU for 12 MB" % spent
