"""Single valid requests an attacker sends to freeze or bloat the daemon, and attacks on its log
(issue 14; docs/reference/rpc.rst: Framing, Methods, What one client can cost).

One daemon (token, websocket endpoint, a log ring filled with 10,000 lines of
~760 characters: one ``daemon.logtail(10000)`` is some 7.7 MB) serves the
whole module.  Each attack is sent as an attacker would: the exact bytes,
from a separate process (:data:`ATTACKER`) or a connection of its own; then a
second connection checks that ``daemon.status`` still answers, and
``/proc/PID/status`` (VmHWM) that the daemon's peak memory stayed put.
Bounds are generous (tight figures: ``scripts/bench.py hostile-requests``).

The daemon script caps its own address space (3 GB) so that today's
unbounded allocations fail inside it, never on the machine.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from support import RawConnection, free_port, wait_until
from support.scripts import write_script

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret"
MAX_REPLY = 16 * 1024 * 1024

DAEMON = '''
import logging
import resource
import time
import typing

# A guard for the machine, not part of any bound under test.
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))
log = logging.getLogger("attacked")


class AttackedDaemon(EchoDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("t.spam", params=[("count", int), ("size", int)], returns=int)
        def spam(count, size):
            for i in range(count):
                log.info("%06d %s", i, "x" * size)
            return count

        @self.rpc.method("t.say", params=[("text", str)], returns=bool)
        def say(text):
            log.warning("client says %s", text)
            return True

        @self.rpc.method("t.blob", params=[("size", int)], returns=str)
        def blob(size):
            return "b" * size

        @self.rpc.method("t.same", params=[("value", typing.Any)], returns=typing.Any)
        def same(value):
            return value

        worked = [0]

        @self.rpc.method("t.work", returns=int)
        def work():
            # 10 ms of the hub's time, without ever yielding.
            end = time.perf_counter() + 0.01
            while time.perf_counter() < end:
                pass
            worked[0] += 1
            return worked[0]

        @self.rpc.method("t.worked", returns=int)
        def worked_so_far():
            return worked[0]


class Idle(GreenletWorker):
    def loop(self):
        pass


daemon = AttackedDaemon(CONFIG)
daemon.workers.install(Idle("idle"), looptime=1.0, forever=True)
daemon.init()
'''

#: The attacker: ``python attacker.py KIND ADDRESS COUNT`` sends one attack on
#: a connection of its own and prints one JSON line of what it got back.  It
#: reads a reply up to ``MAX_REPLY`` + 64 KB only: a longer one is reported
#: as ``"over": true`` without being read whole.
ATTACKER = r'''
import base64, json, os, socket, struct, sys, time, urllib.request

kind, address, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
TOKEN, CAP = "s3cret", 16 * 1024 * 1024 + 65536
AUTH = b'{"jsonrpc":"2.0","method":"system.auth","params":["s3cret"],"id":0}'


def logtails(n):
    return json.dumps([{"jsonrpc": "2.0", "method": "daemon.logtail", "params": [10000], "id": i}
                       for i in range(1, n + 1)]).encode()


def multicall(n):
    return json.dumps({"jsonrpc": "2.0", "method": "system.multicall", "id": 1,
                       "params": [[{"methodName": "daemon.logtail", "params": [10000]}] * n]}).encode()


def read_line(sock):
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        if len(data) > CAP:
            return None
    return bytes(data)


def raw(request):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(address)
    sock.sendall(AUTH + b"\n")
    assert b'"result":true' in read_line(sock)
    start = time.monotonic()
    sock.sendall(request + b"\n")
    return read_line(sock), time.monotonic() - start


def pipelined(n):
    """``n`` requests on one connection, in one write; none of the replies read for
    two seconds (the attack), then all of them: ``(replies, results)``."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(address)
    sock.sendall(AUTH + b"\n")
    assert b'"result":true' in read_line(sock)
    line = b'{"jsonrpc":"2.0","method":"daemon.logtail","params":[10000],"id":1}\n'
    sock.sendall(line * n)
    time.sleep(2)
    replies = results = 0
    with sock.makefile("rb") as stream:
        while replies < n:
            reply = stream.readline()
            if not reply:
                break
            replies += 1
            results += reply.startswith(b'{"jsonrpc":"2.0","result":')
    return replies, results


def websocket(request):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /rpc HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (address, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    buf = bytearray(buf.split(b"\r\n\r\n", 1)[1])

    def send(payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes((0x81, 0x80 | n)) if n < 126 else (
            struct.pack("!BBH", 0x81, 0xFE, n) if n < 65536 else struct.pack("!BBQ", 0x81, 0xFF, n))
        sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv():
        nonlocal buf
        while True:
            if len(buf) >= 2:
                n, pos = buf[1] & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    n, pos = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127 and len(buf) >= 10:
                    n, pos = struct.unpack("!Q", buf[2:10])[0], 10
                if n > CAP:
                    return None
                if n < 126 or pos > 2:
                    if len(buf) >= pos + n:
                        payload = bytes(buf[pos:pos + n])
                        del buf[:pos + n]
                        return payload
            chunk = sock.recv(1 << 20)
            if not chunk:
                return b""
            buf += chunk

    send(AUTH)
    assert b'"result":true' in recv()
    start = time.monotonic()
    send(request)
    return recv(), time.monotonic() - start


def http(path, request, kind):
    start = time.monotonic()
    req = urllib.request.Request("http://%s%s" % (address, path), data=request, method="POST",
                                 headers={"Content-Type": kind, "Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read(CAP + 1)
    return (None if len(body) > CAP else body), time.monotonic() - start


def xmlrpc_multicall(n):
    return ("<?xml version='1.0'?><methodCall><methodName>system.multicall</methodName><params><param>"
            "<value><array><data>%s</data></array></value></param></params></methodCall>" % (
                "<value><struct><member><name>methodName</name><value><string>daemon.logtail</string>"
                "</value></member><member><name>params</name><value><array><data><value><int>10000"
                "</int></value></data></array></value></member></struct></value>" * n)).encode()


if kind == "raw-pipelined":
    replies, results = pipelined(count)
    print(json.dumps({"replies": replies, "results": results}))
    raise SystemExit(0)
if kind == "raw-batch":
    reply, took = raw(logtails(count))
elif kind == "raw-multicall":
    reply, took = raw(multicall(count))
elif kind == "raw-blob":
    reply, took = raw(json.dumps({"jsonrpc": "2.0", "method": "t.blob", "params": [count], "id": 9}).encode())
elif kind == "ws-batch":
    reply, took = websocket(logtails(count))
elif kind == "http-batch":
    reply, took = http("/rpc", logtails(count), "application/json")
elif kind == "xmlrpc-multicall":
    reply, took = http("/RPC2", xmlrpc_multicall(count), "text/xml")
else:
    raise SystemExit("unknown kind " + kind)
report = {"over": reply is None, "size": len(reply or b""), "seconds": took,
          "too_large": (reply or b"").count(b"-32003"), "named": b"socketmaxreply" in (reply or b""),
          "results": (reply or b"").count(b'"result"')}
print(json.dumps(report))
'''


# -- the daemon ----------------------------------------------------------------------


def vmhwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM for %d" % pid)


def reset_peak(pid):
    """Start ``VmHWM`` afresh from the current RSS (``clear_refs``: the owner may)."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


def authed(proc, timeout=10.0):
    conn = RawConnection(proc.address, timeout=timeout)
    assert conn.result("system.auth", [TOKEN]) is True
    return conn


def assert_status_answers(proc):
    """``daemon.status`` on a fresh connection answers (and quickly).

    A daemon still busy with an attack takes many seconds; a loaded machine
    may add a second of its own.
    """
    with authed(proc) as conn:
        start = time.monotonic()
        status = conn.result("daemon.status")
        assert status["pid"] == proc.pid
        assert time.monotonic() - start < 3.0


@pytest.fixture(scope="module")
def attacked(module_workdir, module_spawn):
    port = free_port()
    config = {"token": TOKEN, "websockethandler": "tcp://127.0.0.1:%d" % port}
    path = write_script(module_workdir, DAEMON.replace("CONFIG", repr(config)), name="attacked.py")
    proc = module_spawn([sys.executable, path, "-f"], wait=False)
    proc.port = port

    def ready():
        assert proc.proc.poll() is None, proc.output()
        with authed(proc, timeout=2.0) as conn:
            return conn.result("daemon.status")
    wait_until(ready, 15, message="the attacked daemon to serve")
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 10,
               message="its HTTP endpoint")
    with authed(proc, timeout=30) as conn:
        assert conn.result("t.spam", [10000, 750]) == 10000
    with open(os.path.join(module_workdir, "attacker.py"), "w") as f:
        f.write(ATTACKER)
    return proc


def attack(proc, kind, count, address=None, timeout=45):
    """Run the attacker process; return its report."""
    script = os.path.join(proc.cwd, "attacker.py")
    address = address or proc.address[len("unix://"):]
    done = subprocess.run([sys.executable, script, kind, address, str(count)], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def new_output(proc, since):
    return proc.output()[since:]


# -- bounded replies -----------------------------------------------------------------------


def test_a_batch_of_100_logtails_gets_at_most_socketmaxreply(attacked):
    """7.7 KB of request: 100 x daemon.logtail(10000).  It was a 658 MB reply and +1.29 GB."""
    before = vmhwm_mb(attacked.pid)
    report = attack(attacked, "raw-batch", 100)
    assert not report["over"], report
    assert report["size"] <= MAX_REPLY + 1  # and its newline
    assert report["results"] >= 1 and report["too_large"] == 100 - report["results"], report
    assert report["named"]
    assert vmhwm_mb(attacked.pid) - before < 200, "peak memory grew by %.0f MB" % (
        vmhwm_mb(attacked.pid) - before)
    assert_status_answers(attacked)


def test_pipelined_logtails_cost_one_reply_at_a_time(attacked):
    """60 x daemon.logtail(10000) in one write, none read for 2 s: about 15 of them
    fit one read (socketbuffer), and their replies, 115 MB, were collected whole
    before any was written; now the daemon holds one reply and waits for the
    client to read it.  Every reply still arrives, in order."""
    reset_peak(attacked.pid)
    before = vmhwm_mb(attacked.pid)
    report = attack(attacked, "raw-pipelined", 60)
    assert report == {"replies": 60, "results": 60}, report
    grown = vmhwm_mb(attacked.pid) - before
    assert grown < 60, "peak memory grew by %.0f MB" % grown
    assert_status_answers(attacked)


def pipelined_raw_work(proc, count):
    """``count`` ``t.work`` requests in one write on an authenticated connection;
    returns a function that reads their responses and returns how many succeeded."""
    conn = authed(proc)
    line = b'{"jsonrpc":"2.0","method":"t.work","id":1}\n'
    assert len(line) * count <= 1024  # socketbuffer: all of them in one read
    conn.send_raw(line * count)

    def responses():
        with conn:
            return sum("result" in conn.read() for _ in range(count))
    return responses


def pipelined_http_work(proc, count):
    """``count`` keep-alive ``POST /rpc`` of ``t.work`` in one write; returns a
    function that reads their responses and returns how many succeeded."""
    body = b'{"jsonrpc":"2.0","method":"t.work","id":1}'
    request = (b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
               b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
    sock.sendall(request * count)

    def responses():
        with sock, sock.makefile("rb") as stream:
            ok = 0
            for _ in range(count):
                assert stream.readline().startswith(b"HTTP/1.1 200")
                length = 0
                while True:
                    header = stream.readline()
                    if header in (b"\r\n", b""):
                        break
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                ok += b'"result"' in stream.read(length)
            return ok
    return responses


@pytest.mark.parametrize("pipeline", [pipelined_raw_work, pipelined_http_work], ids=["raw", "http"])
def test_pipelined_requests_share_the_hub_with_other_connections(attacked, pipeline):
    """20 requests of 10 ms each in one write (one read of the daemon's; on
    HTTP, keep-alive requests pywsgi reads from its buffer): another
    connection is answered between two of them, not after all 20 (200 ms).
    Over HTTP it got no answer at all while a client kept posting."""
    with authed(attacked) as other:
        before = other.result("t.worked")
        responses = pipeline(attacked, 20)
        # The first answer once the daemon has started on them.
        started = wait_until(lambda: other.result("t.worked") - before, 10, interval=0,
                             message="the daemon to start on the pipelined requests")
        assert started < 20, "the other connection waited for all 20 requests"
        assert responses() == 20
        assert other.result("t.worked") == before + 20


@pytest.mark.parametrize("kind", ["ws-batch", "http-batch", "xmlrpc-multicall", "raw-multicall"])
def test_every_transport_bounds_its_replies(attacked, kind):
    address = None if kind.startswith("raw") else "127.0.0.1:%d" % attacked.port
    report = attack(attacked, kind, 5, address=address)
    assert not report["over"], report
    assert report["size"] <= MAX_REPLY
    assert report["too_large"] >= 1 and report["named"], report
    assert_status_answers(attacked)


def test_a_single_response_over_socketmaxreply_is_replaced(attacked):
    report = attack(attacked, "raw-blob", MAX_REPLY + 10)
    assert not report["over"] and report["too_large"] == 1 and report["results"] == 0, report
    with authed(attacked) as conn:  # just below the limit, it fits
        conn.send({"jsonrpc": "2.0", "method": "t.blob", "params": [MAX_REPLY - 100], "id": 1})
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = conn.sock.recv(1 << 20)
            assert chunk, "closed"
            data += chunk
        assert len(json.loads(data)["result"]) == MAX_REPLY - 100
    assert_status_answers(attacked)


# -- bounded work per request --------------------------------------------------------------


@pytest.mark.parametrize("instances", [10 ** 30, 10000, 1025])
def test_worker_scale_past_workerlimit_is_refused_at_once(attacked, instances):
    before = vmhwm_mb(attacked.pid)
    with authed(attacked, timeout=5) as conn:
        start = time.monotonic()
        response = conn.call("worker.scale", ["idle", instances])
        took = time.monotonic() - start
        assert response["error"]["code"] == -32602, response
        assert "workerlimit" in response["error"]["message"] and "1024" in response["error"]["message"]
        assert took < 4.0   # refused before anything is allocated (the figure: bench.py hostile-requests)
        assert conn.result("worker.pools") == {"idle": ["idle"]}
    assert vmhwm_mb(attacked.pid) - before < 50
    assert_status_answers(attacked)


INSTALL = '''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))


class Idle(GreenletWorker):
    def loop(self):
        pass


def refused(daemon, name, instances):
    start = time.process_time()   # CPU time: what the refusal costs, whatever the machine's load
    try:
        daemon.workers.install(Idle(name), instances=instances)
    except gdaemon.WorkerError as exc:
        return [str(exc), time.process_time() - start]
    return None


small = Daemon({"workerlimit": 3})
small.workers.install(Idle("a"), instances=2)
results = {"third": refused(small, "b", 1), "fourth": refused(small, "c", 2)}
big = Daemon({})
results["huge"] = refused(big, "h", 10 ** 30)
results["many"] = refused(big, "m", 1025)
print(json.dumps(results))
'''


def test_install_past_workerlimit_raises_worker_error_before_allocating(workdir):
    path = write_script(workdir, INSTALL, name="install.py")
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=30, cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert results["third"] is None  # 2 + 1 = 3 instances: at the limit, not past it
    for key, limit in (("fourth", 3), ("huge", 1024), ("many", 1024)):
        message, took = results[key]
        assert "workerlimit" in message and str(limit) in message, message
        assert took < 1.0   # CPU seconds in the installing process


def test_subscribing_60000_patterns_is_refused_and_matching_stays_linear(attacked):
    with authed(attacked, timeout=5) as conn:
        start = time.monotonic()
        response = conn.call("events.subscribe", [["p%05d.*" % i for i in range(60000)]])
        assert response["error"]["code"] == -32602 and "64" in response["error"]["message"], response
        # It took 12 s before issue 14; the figure now: bench.py hostile-requests.
        assert time.monotonic() - start < 4.0
        assert_status_answers(attacked)
        # 64 distinct patterns (sent 50 times over) are fine, one more is not.
        patterns = ["nomatch%02d.*" % i for i in range(63)] + ["log.*"]
        assert conn.result("events.subscribe", [patterns * 50]) is True
        response = conn.call("events.subscribe", [["one.more"]])
        assert response["error"]["code"] == -32602 and "64" in response["error"]["message"]
        response = conn.call("events.subscribe", [["x" * 300]])
        assert response["error"]["code"] == -32602
        with authed(attacked) as other:
            other.result("t.say", ["subscriber test"])
        deadline = time.monotonic() + 10
        while True:
            event = conn.read()
            assert event is not None and time.monotonic() < deadline
            if event.get("method") == "event" and "subscriber test" in event["params"]["data"]["message"]:
                break
    assert_status_answers(attacked)


# -- system.auth, integers -------------------------------------------------------------------


#: Tokens an attacker sends: lone surrogates (which used to cost a traceback and
#: no reply), long strings, a NUL, and every JSON type that is not a string.
WRONG_TOKENS = ['"\\ud800"', '"\\udfff\\ud800xyz"', '"%s"' % ("\\ud800" * 50000), '"%s"' % ("a" * 500000),
                '"s3cret\\u0000"', "123", "null", "[]", "{}", "true", "1.5"]


def test_system_auth_with_anything_but_the_token_is_32001(attacked):
    since = len(attacked.output())
    for token in WRONG_TOKENS:
        # A long integer id: the line then takes the standard library's parser,
        # which (unlike orjson) lets lone surrogates through.
        for params, req_id in (("[%s]" % token, "1" * 30), ('{"token": %s}' % token, "-" + "2" * 4000),
                               ("[%s]" % token, '"%s"' % ("i" * 100000))):
            request = ('{"jsonrpc":"2.0","method":"system.auth","params":%s,"id":%s}'
                       % (params, req_id)).encode()
            with RawConnection(attacked.address, timeout=5) as conn:
                conn.send_raw(request + b"\n")
                response = conn.read()
                assert response is not None, "no reply to %s" % token[:20]
                assert response["error"]["code"] == -32001, response
                assert conn.read() is None  # and closed
        # Once authenticated, a second system.auth with a wrong token is -32001 too.
        with authed(attacked) as conn:
            conn.send_raw(('{"jsonrpc":"2.0","method":"system.auth","params":[%s],"id":%s}\n'
                           % (token, "5" * 25)).encode())
            response = conn.read()
            assert response["error"]["code"] == -32001, (token[:20], response)
    assert "Traceback" not in new_output(attacked, since)
    assert_status_answers(attacked)


def test_integers_round_trip_up_to_4300_digits_and_no_further(attacked):
    with authed(attacked) as conn:
        for digits in ("9" * 4300, "-" + "8" * 4300):
            conn.send_raw(('{"jsonrpc":"2.0","method":"t.same","params":[%s],"id":%s}\n'
                           % (digits, digits)).encode())
            line = conn.read_line()
            assert json.loads(line) == {"jsonrpc": "2.0", "result": int(digits), "id": int(digits)}
        for where in ("params", "id"):
            big = "7" * 4301
            request = {"params": '{"jsonrpc":"2.0","method":"t.same","params":[%s],"id":1}' % big,
                       "id": '{"jsonrpc":"2.0","method":"t.same","params":[1],"id":-%s}' % big}[where]
            conn.send_raw(request.encode() + b"\n")
            response = conn.read()
            assert response["error"]["code"] == -32700 and "4300" in response["error"]["message"], response
            assert response["id"] is None
    assert_status_answers(attacked)


# -- the log -----------------------------------------------------------------------------


def http_get(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        sock.close()


#: Static paths that cannot name a file: a NUL (a traceback per request, and
#: with %0a a forged line, used to follow), bytes that are not UTF-8, traversal.
BAD_STATIC = ["/static/%00.css", "/static/x%0aFORGED-LINE%00.css", "/static/%ff%fe.js",
              "/static/..%2f..%2fsetup.py", "/static/a%0d%0aFORGED-LINE.css"]


def test_a_static_path_that_names_no_file_is_a_quiet_404(attacked):
    since = len(attacked.output())
    for path in BAD_STATIC:
        for _ in range(10):
            assert http_get(attacked.port, path).startswith(b"HTTP/1.1 404 "), path
    assert http_get(attacked.port, "/static/dashboard.css").startswith(b"HTTP/1.1 200 ")
    with authed(attacked) as conn:
        conn.result("t.say", ["marker after the static paths"])  # the log has caught up
    wait_until(lambda: "marker after the static paths" in attacked.output(), 5, message="the marker line")
    output = new_output(attacked, since)
    assert "Traceback" not in output
    assert not any(line.startswith("FORGED-LINE") for line in output.splitlines())
    assert_status_answers(attacked)


def test_client_text_is_one_line_of_the_log_of_the_ring_and_of_events(attacked):
    since = len(attacked.output())
    text = "x\nFORGED-LINE 2026-01-01 INFO forged\r\x1b[31m\x00\u2028\ud800 end"
    with authed(attacked) as subscriber, authed(attacked) as conn:
        assert subscriber.result("events.subscribe", [["log.*"]]) is True
        # (A long id: the standard library's parser, which lets the lone surrogate through.)
        conn.send_raw(b'{"jsonrpc":"2.0","method":"t.say","params":["%s"],"id":%s}\n'
                      % (json.dumps(text)[1:-1].encode(), b"1" * 25))
        assert conn.read()["result"] is True
        event = subscriber.read()
        while "client says" not in event["params"]["data"]["message"]:
            event = subscriber.read()
        expected = "client says x\\nFORGED-LINE 2026-01-01 INFO forged\\x0d\\x1b[31m\\x00\\u2028\\ud800 end"
        assert event["params"]["data"]["message"] == expected
        assert event["params"]["data"]["line"].endswith(expected)
        tail = conn.result("daemon.logtail", [5])
        assert any(line.endswith(expected) for line in tail), tail
        assert all("\n" not in line for line in tail)
    wait_until(lambda: expected in attacked.output(), 5, message="the escaped line in the log")
    output = new_output(attacked, since)
    assert not any(line.startswith("FORGED-LINE") for line in output.splitlines())
    assert_status_answers(attacked)
