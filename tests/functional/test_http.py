"""Plain HTTP on the websocket endpoint (docs/reference/http.rst): ``POST /rpc``, XML-RPC on
``POST /RPC2``, the dashboard's files, status codes and authentication.

Requests are made with the standard library (``http.client``,
``xmlrpc.client``) against real daemons.
"""

import http.client
import json
import socket
import sys
import time
import xmlrpc.client

import pytest

from support import DaemonProcess, free_port, recv_until_closed, wait_until
from support.workers import write_daemon

#: A few result shapes, on top of the worker test daemon (which has examples.echo).
METHODS = '''
class TestDaemon(TestDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.shapes", returns=dict)
        def shapes():
            return {"none": None, "big": 2 ** 40, "huge": 2 ** 70, "list": [1, "two", 3.5],
                    "nested": {"t": True, 7: "int key"}, "ctrl": "a\\x00b"}
'''


def make_daemon(workdir, spawn=None, **config):
    """A daemon with an HTTP endpoint on ``proc.port``: started by ``spawn``
    (which stops it), or not started yet (the caller stops it)."""
    port = free_port()
    cfg = {"websockethandler": "tcp://127.0.0.1:%d" % port}
    cfg.update(config)
    path = write_daemon(workdir, "pass", extra=METHODS, config=cfg)
    argv = [sys.executable, path, "-f"]
    proc = spawn(argv) if spawn is not None else DaemonProcess(argv, workdir)
    proc.port = port
    return proc


@pytest.fixture(scope="module")
def daemon(module_workdir, module_spawn):
    return make_daemon(module_workdir, module_spawn, socketmaxmessage=65536)


def request(port, method, path, body=None, headers=None):
    """One request on a fresh connection: ``(status, headers dict, body bytes)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def post_json(port, payload, headers=None, raw=None):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    body = raw if raw is not None else json.dumps(payload).encode()
    status, headers, body = request(port, "POST", "/rpc", body, hdrs)
    return status, headers, (json.loads(body) if body else None)


# -- POST /rpc ---------------------------------------------------------------------

def test_post_rpc_single_batch_and_notifications(daemon):
    status, headers, body = post_json(daemon.port, {"jsonrpc": "2.0", "method": "examples.echo",
                                                    "params": ["hé"], "id": 7})
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == {"jsonrpc": "2.0", "result": "hé", "id": 7}

    status, _, body = post_json(daemon.port, [
        {"jsonrpc": "2.0", "method": "examples.echo", "params": {"message": "a"}, "id": 1},
        {"jsonrpc": "2.0", "method": "examples.echo", "params": ["quiet"]},
        {"jsonrpc": "2.0", "method": "nope", "id": 2},
        {"jsonrpc": "2.0", "method": "examples.echo", "params": [1], "id": 3}])
    assert status == 200
    assert [r["id"] for r in body] == [1, 2, 3]
    assert body[0]["result"] == "a"
    assert body[1]["error"]["code"] == -32601
    assert body[2]["error"]["code"] == -32602

    # Only notifications: nothing to say.
    status, _, body = post_json(daemon.port, [{"jsonrpc": "2.0", "method": "examples.echo", "params": ["x"]}])
    assert status == 204 and body is None

    # Events need a connection that lasts.
    _, _, body = post_json(daemon.port, {"jsonrpc": "2.0", "method": "events.subscribe",
                                         "params": [["*"]], "id": 1})
    assert body["error"]["code"] == -32000


def test_post_rpc_errors(daemon):
    status, _, body = post_json(daemon.port, None, raw=b"{oops")
    assert status == 400 and body["error"]["code"] == -32700 and body["id"] is None

    status, _, body = post_json(daemon.port, None, raw=b"[]")
    assert status == 200 and body["error"]["code"] == -32600

    # Larger than socketmaxmessage: 413 with -32003.
    big = json.dumps({"jsonrpc": "2.0", "method": "examples.echo", "params": ["x" * 70000], "id": 1})
    status, headers, body = post_json(daemon.port, None, raw=big.encode())
    assert status == 413 and body["error"]["code"] == -32003
    assert headers.get("connection") == "close"

    # Not JSON: a cross-site form could send that, we do not take it.
    status, _, _ = request(daemon.port, "POST", "/rpc", b"{}", {"Content-Type": "text/plain"})
    assert status == 415

    # A browser page of another origin.
    status, _, body = post_json(daemon.port, {"jsonrpc": "2.0", "method": "daemon.stop", "id": 1},
                                headers={"Origin": "http://evil.example"})
    assert status == 403
    # ... the same page on the endpoint's own origin is fine.
    status, _, body = post_json(daemon.port, {"jsonrpc": "2.0", "method": "examples.echo", "params": ["o"],
                                              "id": 1}, headers={"Origin": "http://127.0.0.1:%d" % daemon.port})
    assert status == 200 and body["result"] == "o"
    assert daemon.result("examples.echo", ["still here"]) == "still here"


def test_a_refused_request_announcing_a_huge_body_is_closed_at_once(workdir):
    """Answered, then closed: not kept open while the server swallows the
    announced gigabytes.  With sockettimeout at 60 s, only a close at once
    comes within the 10 s our socket waits."""
    proc = make_daemon(workdir, sockettimeout=60)
    try:
        proc.start()
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 10000000000\r\n\r\n" + b"x" * 1000)
            assert recv_until_closed(sock).startswith(b"HTTP/1.1 415")
    finally:
        proc.stop()


def test_routes_and_methods(daemon):
    port = daemon.port
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="/static/dashboard.js"' in body and b"https://" not in body  # no CDN
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = request(port, "GET", "/static/" + name)
        assert status == 200 and headers["content-type"].startswith(kind) and body
    status, headers, body = request(port, "HEAD", "/static/dashboard.css")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0

    for path in ("/nope", "/static/missing.js", "/static/../rpc/http.py", "/static/%2e%2e/rpc/http.py",
                 "/static/", "/RPC2/x"):
        assert request(port, "GET", path)[0] == 404, path
    assert request(port, "GET", "/rpc")[0] == 426  # a websocket, not a page
    status, headers, _ = request(port, "PUT", "/rpc", b"{}", {"Content-Type": "application/json"})
    assert status == 405 and headers["allow"] == "GET, POST"
    status, headers, _ = request(port, "GET", "/RPC2")
    assert status == 405 and headers["allow"] == "POST"
    assert request(port, "POST", "/", b"x")[0] == 405
    assert request(port, "DELETE", "/static/dashboard.js")[0] == 405


def test_keep_alive_and_garbage(daemon):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        for i in range(5):
            conn.request("POST", "/rpc", json.dumps({"jsonrpc": "2.0", "method": "examples.echo",
                                                     "params": [str(i)], "id": i}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert json.loads(response.read())["result"] == str(i)
    finally:
        conn.close()
    # Not HTTP at all: answered 400 (or just closed); nothing else is disturbed.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x00garbage\r\n\r\n")
        reply = sock.recv(4096)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    assert post_json(daemon.port, {"jsonrpc": "2.0", "method": "examples.echo", "params": ["ok"],
                                   "id": 1})[2]["result"] == "ok"


# -- XML-RPC ----------------------------------------------------------------------

def test_xmlrpc(daemon):
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1:%d/RPC2" % daemon.port, allow_none=True)
    assert proxy.examples.echo("hé") == "hé"
    methods = proxy.system.listMethods()
    assert "examples.echo" in methods and methods == sorted(methods)
    assert proxy.system.methodHelp("examples.echo") == "I'm here to reply your data"
    assert proxy.system.methodSignature("examples.echo") == [["string", "string"]]
    assert "xmlrpc" in proxy.system.getCapabilities()
    status = proxy.daemon.status()
    assert status["pid"] == daemon.pid and status["workers"] == {}

    with pytest.raises(xmlrpc.client.Fault) as caught:
        proxy.no.such.method()
    assert caught.value.faultCode == -32601
    with pytest.raises(xmlrpc.client.Fault) as caught:
        proxy.examples.echo(1)
    assert caught.value.faultCode == -32602 and "message" in caught.value.faultString

    shapes = proxy.test.shapes()
    assert shapes["none"] is None and shapes["big"] == 2 ** 40 and shapes["huge"] == str(2 ** 70)
    assert shapes["list"] == [1, "two", 3.5] and shapes["nested"] == {"t": True, "7": "int key"}
    assert shapes["ctrl"] == "a\ufffdb"

    multi = xmlrpc.client.MultiCall(proxy)
    multi.examples.echo("one")
    multi.examples.echo("two")
    assert tuple(multi()) == ("one", "two")

    # Not XML-RPC: a fault, not a crash.
    status, _, body = request(daemon.port, "POST", "/RPC2", b"<oops", {"Content-Type": "text/xml"})
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault) as caught:
        xmlrpc.client.loads(body)
    assert caught.value.faultCode == -32700
    response = xmlrpc.client.dumps(("x",), methodresponse=True).encode()
    _, _, body = request(daemon.port, "POST", "/RPC2", response, {"Content-Type": "text/xml"})
    with pytest.raises(xmlrpc.client.Fault) as caught:
        xmlrpc.client.loads(body)
    assert caught.value.faultCode == -32600


# -- authentication -----------------------------------------------------------------

def test_token_over_http(workdir):
    proc = make_daemon(workdir, token="s3cret", socketidle=0.5)
    proc.start(wait=False)
    try:
        call = {"jsonrpc": "2.0", "method": "examples.echo", "params": ["hi"], "id": 1}
        wait_until(lambda: post_json(proc.port, call), 15, message="HTTP endpoint up")

        status, headers, body = post_json(proc.port, call)
        assert status == 401 and body["error"]["code"] == -32001
        assert headers["www-authenticate"].startswith("Bearer")
        status, _, body = post_json(proc.port, call, {"Authorization": "Bearer wrong"})
        assert status == 401 and body["error"]["code"] == -32001
        status, _, body = post_json(proc.port, call, {"Authorization": "Bearer s3cret"})
        assert status == 200 and body["result"] == "hi"

        # XML-RPC: the same header, or Basic auth with the token as password.
        with pytest.raises(xmlrpc.client.ProtocolError) as caught:
            xmlrpc.client.ServerProxy("http://127.0.0.1:%d/RPC2" % proc.port).examples.echo("x")
        assert caught.value.errcode == 401
        with pytest.raises(xmlrpc.client.ProtocolError):
            xmlrpc.client.ServerProxy("http://me:wrong@127.0.0.1:%d/RPC2" % proc.port).examples.echo("x")
        proxy = xmlrpc.client.ServerProxy("http://me:s3cret@127.0.0.1:%d/RPC2" % proc.port)
        assert proxy.examples.echo("basic") == "basic"
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1:%d/RPC2" % proc.port,
                                          headers=[("Authorization", "Bearer s3cret")])
        assert proxy.examples.echo("bearer") == "bearer"
        # The page itself is public (it holds no data); what it calls is not.
        assert request(proc.port, "GET", "/")[0] == 200

        # A keep-alive connection left idle is closed after socketidle.
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        try:
            conn.request("GET", "/static/dashboard.css")
            assert conn.getresponse().read()
            started = time.monotonic()
            assert conn.sock.recv(1) == b""
            assert 0.3 < time.monotonic() - started < 3
        finally:
            conn.close()
    finally:
        proc.stop()


def test_stop_over_http(workdir):
    proc = make_daemon(workdir)
    try:
        proc.start()
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        conn.request("POST", "/rpc", json.dumps({"jsonrpc": "2.0", "method": "daemon.stop", "id": 1}),
                     {"Content-Type": "application/json"})
        assert json.loads(conn.getresponse().read())["result"] is True
        # The keep-alive connection we leave open does not hold the stop up
        # (how long the stop takes: scripts/bench.py endpoint, about 0.1 s; it
        # was 1 s more while idle keep-alive connections were waited for).
        assert proc.wait(15) == 0
        assert conn.sock.recv(1) == b""
        conn.close()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def test_address_in_use_refuses_to_start(workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = write_daemon(workdir, "pass", config={"websockethandler": "tcp://127.0.0.1:%d" % port})
        proc = DaemonProcess([sys.executable, path, "-f"], workdir)
        try:
            proc.start(wait=False)
            assert proc.wait(15) == 1
            assert "address in use: tcp://127.0.0.1:%d" % port in proc.output()
        finally:
            proc.stop()


# -- issue 8: bounded like the raw socket ----------------------------------------------

def test_a_long_batch_over_post_is_one_invalid_request(daemon):
    # (compact: the shared daemon takes bodies of up to 64 KB)
    batch = [{"jsonrpc": "2.0", "method": "no.such", "id": i} for i in range(1001)]
    status, _, body = post_json(daemon.port, None, raw=json.dumps(batch, separators=(",", ":")).encode())
    assert status == 400
    assert body["error"]["code"] == -32600 and body["id"] is None and "1000" in body["error"]["message"]
    status, _, body = post_json(daemon.port, None, raw=json.dumps(batch[:1000], separators=(",", ":")).encode())
    assert status == 200 and [r["id"] for r in body] == list(range(1000))


def test_a_refused_token_closes_the_connection(workdir):
    proc = make_daemon(workdir, token="s3cret")
    proc.start(wait=False)
    try:
        call = {"jsonrpc": "2.0", "method": "examples.echo", "params": ["hi"], "id": 1}
        wait_until(lambda: post_json(proc.port, call), 15, message="HTTP endpoint up")
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        try:
            conn.request("POST", "/rpc", json.dumps(call), {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 401 and response.getheader("Connection") == "close"
            response.read()
            assert conn.sock is None or conn.sock.recv(1) == b""
        finally:
            conn.close()
    finally:
        proc.stop()


def read_by_server(server_port, client):
    """Whether the daemon has read everything ``client`` sent it: the receive
    queue of its end of the TCP connection (``/proc/net/tcp``) is empty."""
    client_port = client.getsockname()[1]
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16) == 0
    return False


def test_http_connections_count_against_socketmaxconnections(workdir):
    proc = make_daemon(workdir, socketmaxconnections=2, sockettimeout=1)
    try:
        proc.start()
        # Two connections whose request heads arrived whole fill the endpoint
        # (one that has not sent its head would make room: docs/reference/rpc.rst,
        # What one client can cost)...
        first = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        try:
            for sock in (first, second):
                sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{")
            # Once the daemon has read those heads (before, either connection
            # has not sent its headers as far as the daemon knows: a newcomer
            # could take its place).
            wait_until(lambda: read_by_server(proc.port, first) and read_by_server(proc.port, second), 5,
                       message="the daemon read both heads")
            status, headers, body = request(proc.port, "GET", "/")
            assert status == 503 and json.loads(body)["error"]["code"] == -32004
            # ...until sockettimeout passes without the rest: then they are closed.
            for sock in (first, second):
                started = time.monotonic()
                assert recv_until_closed(sock).startswith(b"HTTP/1.1 408 ")
                assert time.monotonic() - started < 3
        finally:
            first.close()
            second.close()
        # Idle keep-alive connections make room for a newcomer.
        idle = []
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
            conn.request("GET", "/static/dashboard.css")
            assert conn.getresponse().read()
            idle.append(conn)
        try:
            assert request(proc.port, "GET", "/")[0] == 200

            def closed(conn):
                conn.sock.settimeout(0.01)
                try:
                    return conn.sock.recv(1) == b""
                except socket.timeout:
                    return False
            # The longest idle one made room; the other is still served.
            wait_until(lambda: closed(idle[0]), 5, message="the longest idle connection closed")
            assert not closed(idle[1])
            idle[1].sock.settimeout(10)
            idle[1].request("GET", "/static/dashboard.css")
            assert idle[1].getresponse().status == 200
        finally:
            for conn in idle:
                conn.close()
        assert "Traceback" not in proc.output() and " ERROR " not in proc.output()
    finally:
        proc.stop()
