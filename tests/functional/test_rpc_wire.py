"""The JSON-RPC wire protocol (docs/reference/rpc.rst), tested from outside over real sockets.

Most tests share one module-scoped daemon (an exec script with a few test
methods) to stay fast; tests that need their own configuration start their
own.  Requests are written with :class:`support.RawConnection`, independently
of ``gdaemon.client``.  Written from the documentation alone.
"""

import json
import os
import socket
import stat
import sys
import threading
import time

import pytest

from support import RawConnection, command, free_port, recv_until_closed, rpc, run, wait_until
from support.scripts import echo_daemon, write_script

ECHO = command("gdaemon-echo")

#: The methods every daemon has (docs/reference/rpc.rst, Methods).
STANDARD_METHODS = [
    "system.listMethods", "system.methodHelp", "system.methodSignature",
    "system.getCapabilities", "system.multicall", "system.auth",
    "daemon.status", "daemon.stop", "daemon.shutdown", "daemon.reload",
    "worker.list", "worker.status", "worker.info", "worker.pause", "worker.resume",
    "worker.restart", "worker.send", "worker.call", "events.subscribe", "events.unsubscribe",
]

STANDARD_CODES = {-32700, -32600, -32601, -32602, -32603}

#: The shared daemon: test methods and a connection limit above 200.
WIRE_SCRIPT = """
from typing import Optional


class WireDaemon(EchoDaemon):
    def setup(self):
        super().setup()
        rpc = self.rpc

        @rpc.method("test.fail", description="always fails")
        def fail():
            raise ValueError("secret-internal-detail")

        @rpc.method("test.rpcerror")
        def rpcerror():
            raise RpcError(-32099, "custom failure", {"reason": "testing"})

        @rpc.method("test.types", params=[("text", str), ("count", int), ("ratio", float),
                                          ("flag", bool), ("items", list), ("mapping", dict)],
                    returns=dict)
        def types(text, count, ratio, flag, items, mapping):
            return {"text": text, "count": count, "ratio": ratio, "flag": flag,
                    "items": items, "mapping": mapping}

        @rpc.method("test.opt", params=[("a", int), ("b", int, 7)], returns=list)
        def opt(a, b):
            return [a, b]

        @rpc.method("test.sigdefault", params=[("a", int), ("b", int)], returns=list)
        def sigdefault(a, b=9):
            return [a, b]

        @rpc.method("test.nullable", params=[("x", Optional[int])], returns=list)
        def nullable(x):
            return [x]

        @rpc.method("test.maxconn", returns=int)
        def maxconn(daemon):
            return daemon.config.socketmaxconnections

        @rpc.method("test.spam", params=[("count", int), ("tag", int)], returns=int)
        def spam(count, tag):
            for i in range(count):
                self.events.emit("test.spam", i=i, tag=tag, pad="x" * 64)
            return count

        def prebuilt(a, b):
            return a * b

        # daemon.rpc.add(RpcMethod(...)) registers a prebuilt method object (docs/reference/api.rst).
        rpc.add(gdaemon.RpcMethod("test.prebuilt", prebuilt, description="multiply",
                                  params=[("a", int), ("b", int)], returns=int))

WireDaemon({"description": "Wire Test Daemon", "socketmaxconnections": 256}).init()
"""


@pytest.fixture(scope="module")
def server(module_workdir, module_spawn):
    """One shared foreground daemon running WIRE_SCRIPT."""
    return module_spawn([sys.executable, write_script(module_workdir, WIRE_SCRIPT), "-f"])


@pytest.fixture
def conn(server):
    with server.connect() as c:
        yield c


def request(method, params=None, id=1):
    obj = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        obj["params"] = params
    return obj


def line(obj):
    return json.dumps(obj).encode() + b"\n"


def assert_error(response, code, id="any"):
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    assert "result" not in response, response
    error = response["error"]
    assert error["code"] == code, response
    assert isinstance(error["message"], str) and error["message"], response
    if id != "any":
        assert "id" in response and response["id"] == id, response
    return error


def still_serves(server):
    response = rpc(server.address, "examples.echo", {"message": "alive"}, timeout=5)
    return response == {"jsonrpc": "2.0", "result": "alive", "id": 1}


# ---------------------------------------------------------------------------
# 4.1 framing

def test_response_is_one_line_with_the_request_id(conn):
    conn.send_raw(line(request("examples.echo", {"message": "hi"}, id="abc")))
    raw = conn.read_line()
    assert json.loads(raw) == {"jsonrpc": "2.0", "result": "hi", "id": "abc"}
    assert b"\n" not in raw


@pytest.mark.parametrize("id", [0, -5, 2 ** 40, "x", "", 1.5, None])
def test_ids_are_echoed(conn, id):
    conn.send_raw(line(request("examples.echo", ["x"], id=id)))
    response = conn.read()
    assert response["id"] == id and type(response["id"]) is type(id)
    assert response["result"] == "x"


def test_positional_and_named_params(conn):
    assert conn.result("examples.echo", ["positional"]) == "positional"
    assert conn.result("examples.echo", {"message": "named"}) == "named"


def test_notifications_get_no_response(conn):
    conn.send_raw(line({"jsonrpc": "2.0", "method": "examples.echo", "params": ["n"]}))
    conn.send_raw(line({"jsonrpc": "2.0", "method": "no.such.method"}))
    conn.send_raw(line({"jsonrpc": "2.0", "method": "test.fail"}))
    conn.send_raw(line(request("examples.echo", ["after"], id=42)))
    assert conn.read() == {"jsonrpc": "2.0", "result": "after", "id": 42}


def test_blank_lines_are_ignored(conn):
    conn.send_raw(b"\n\n\n")
    conn.send_raw(line(request("examples.echo", ["x"], id=7)))
    assert conn.read()["id"] == 7
    conn.send_raw(b"\n" + line(request("examples.echo", ["y"], id=8)) + b"\n\n")
    assert conn.read()["id"] == 8


def test_whitespace_only_lines_are_ignored(conn):
    conn.send_raw(b"   \n\t\n")
    conn.send_raw(line(request("examples.echo", ["x"], id=9)))
    assert conn.read() == {"jsonrpc": "2.0", "result": "x", "id": 9}


def test_pipelining_1000_requests_answered_in_order(conn):
    data = b"".join(line(request("examples.echo", {"message": "m%d" % i}, id=i)) for i in range(1000))
    conn.send_raw(data)
    for i in range(1000):
        response = conn.read()
        assert response == {"jsonrpc": "2.0", "result": "m%d" % i, "id": i}, i


def test_request_split_across_writes(conn):
    data = line(request("examples.echo", ["split"], id=3))
    for i in range(0, len(data), 5):
        conn.send_raw(data[i:i + 5])
    assert conn.read()["result"] == "split"


def test_unicode_round_trip(conn):
    text = "h\u00e9llo \u2713 \U0001F40D \u4e2d\u6587 \"quoted\" back\\slash \u0000 tab\t"
    raw = json.dumps(request("examples.echo", [text], id=1), ensure_ascii=False).encode("utf-8")
    conn.send_raw(raw + b"\n")
    assert conn.read()["result"] == text
    assert conn.result("examples.echo", [text]) == text


def test_invalid_utf8_is_a_parse_error(conn, server):
    conn.send_raw(b'{"jsonrpc":"2.0","method":"examples.echo","params":["\xff\xfe"],"id":1}\n')
    assert_error(conn.read(), -32700, id=None)
    assert conn.result("examples.echo", ["ok"]) == "ok"


# ---------------------------------------------------------------------------
# 4.2 errors

@pytest.mark.parametrize("raw", [b"{not json", b'{"jsonrpc":"2.0","method":', b"[1,2", b"nul",
                                 b'{"a":1}}'])
def test_parse_error_has_null_id_and_the_connection_goes_on(conn, raw):
    conn.send_raw(raw + b"\n")
    assert_error(conn.read(), -32700, id=None)
    assert conn.result("examples.echo", ["still here"]) == "still here"


@pytest.mark.parametrize("obj", [
    42, "string", None, True,
    {"jsonrpc": "2.0"},                                    # no method
    {"jsonrpc": "2.0", "method": 5},                       # method not a string
    {"jsonrpc": "2.0", "method": "examples.echo", "params": "hi"},
    {"jsonrpc": "2.0", "method": "examples.echo", "params": 5},
    {"jsonrpc": "2.0", "method": "examples.echo", "params": None},  # null is not array/object
    {"jsonrpc": "1.0", "method": "examples.echo", "params": ["x"]},
    {"method": "examples.echo", "params": ["x"]},          # no jsonrpc member
], ids=lambda o: json.dumps(o))
def test_invalid_request_without_id_is_answered_with_null_id(conn, obj):
    conn.send_raw(line(obj) + line(request("examples.echo", ["after"], id=2)))
    assert_error(conn.read(), -32600, id=None)
    assert conn.read() == {"jsonrpc": "2.0", "result": "after", "id": 2}


@pytest.mark.parametrize("obj", [
    {"jsonrpc": "2.0", "method": "examples.echo", "params": "hi", "id": 5},
    {"jsonrpc": "1.0", "method": "examples.echo", "params": ["x"], "id": 5},
    {"jsonrpc": "2.0", "id": 5},
])
def test_invalid_request_with_id(conn, obj):
    conn.send_raw(line(obj))
    response = conn.read()
    assert_error(response, -32600)
    assert response["id"] in (5, None)


def test_method_not_found(conn):
    response = conn.call("no.such.method", ["x"])
    assert_error(response, -32601, id=1)


@pytest.mark.parametrize("params,name", [
    ({"message": 5}, "message"),                    # wrong type
    ([5], "message"),
    ({"message": None}, "message"),
    ({}, "message"),                                # missing
    ([], "message"),
    ({"message": "x", "bogus": 1}, "bogus"),        # unknown
])
def test_invalid_params_names_the_param(conn, params, name):
    error = assert_error(conn.call("examples.echo", params), -32602, id=1)
    assert name in error["message"] + json.dumps(error.get("data")), error


def test_too_many_params(conn):
    assert_error(conn.call("examples.echo", ["a", "b"]), -32602, id=1)


GOOD_TYPES = {"text": "s", "count": 1, "ratio": 1.5, "flag": True, "items": [1],
              "mapping": {"k": "v"}}


@pytest.mark.parametrize("name,bad", [
    ("text", 1), ("text", None), ("count", "1"), ("count", 1.5), ("ratio", "1.0"),
    ("flag", 1), ("flag", "true"), ("items", {}), ("items", "abc"), ("mapping", []),
    ("mapping", "x"),
])
def test_declared_types_are_checked(conn, name, bad):
    assert conn.result("test.types", GOOD_TYPES) == GOOD_TYPES
    params = dict(GOOD_TYPES, **{name: bad})
    error = assert_error(conn.call("test.types", params), -32602)
    assert name in error["message"], error
    # Positionally too.
    order = ["text", "count", "ratio", "flag", "items", "mapping"]
    error = assert_error(conn.call("test.types", [params[k] for k in order]), -32602)
    assert name in error["message"], error


def test_float_accepts_int(conn):
    result = conn.result("test.types", dict(GOOD_TYPES, ratio=2))
    assert result["ratio"] == 2


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_int(conn, value):
    error = assert_error(conn.call("test.types", dict(GOOD_TYPES, count=value)), -32602)
    assert "count" in error["message"]


def test_optional_params_take_their_defaults(conn):
    assert conn.result("test.opt", [1]) == [1, 7]
    assert conn.result("test.opt", {"a": 1}) == [1, 7]
    assert conn.result("test.opt", [1, 2]) == [1, 2]
    assert conn.result("test.opt", {"a": 1, "b": 3}) == [1, 3]
    assert conn.result("test.sigdefault", [1]) == [1, 9]
    assert conn.result("test.sigdefault", {"a": 2, "b": 4}) == [2, 4]
    assert_error(conn.call("test.opt", {"b": 3}), -32602)


def test_optional_type_accepts_null(conn):
    assert conn.result("test.nullable", [None]) == [None]
    assert conn.result("test.nullable", {"x": 3}) == [3]
    error = assert_error(conn.call("test.nullable", ["3"]), -32602)
    assert "x" in error["message"]


def test_prebuilt_method_object(conn):
    assert conn.result("test.prebuilt", [6, 7]) == 42
    assert conn.result("system.methodHelp", ["test.prebuilt"]) == "multiply"
    assert_error(conn.call("test.prebuilt", [6, "7"]), -32602)


def test_handler_can_receive_the_daemon(conn):
    assert conn.result("test.maxconn") == 256


def test_internal_error_hides_the_traceback_and_serving_goes_on(conn, server):
    response = conn.call("test.fail")
    assert_error(response, -32603, id=1)
    assert "secret-internal-detail" not in json.dumps(response)
    assert "Traceback" not in json.dumps(response)
    assert conn.result("examples.echo", ["next"]) == "next"
    # ... and the traceback was logged.
    wait_until(lambda: "secret-internal-detail" in server.output(), 5, message="traceback logged")
    assert "Traceback" in server.output()


def test_rpc_error_raised_by_a_handler_is_sent_as_is(conn):
    response = conn.call("test.rpcerror")
    assert response["error"] == {"code": -32099, "message": "custom failure",
                                 "data": {"reason": "testing"}}
    assert response["id"] == 1


def test_message_too_large_closes_only_that_connection(server):
    with server.connect() as other:
        other.result("examples.echo", ["before"])
        big = RawConnection(server.address, timeout=10)
        try:
            payload = line(request("examples.echo", ["x" * (10 * 1024 * 1024)], id=1))
            errors = []

            def writer():
                try:
                    big.sock.sendall(payload)
                except OSError as exc:  # the daemon closes the connection mid-way
                    errors.append(exc)
            t = threading.Thread(target=writer, daemon=True)
            t.start()
            response = big.read()
            assert_error(response, -32003)
            try:
                assert big.read_line() is None
            except ConnectionResetError:
                pass
            t.join(10)
            assert not t.is_alive()
        finally:
            big.close()
        assert other.result("examples.echo", ["after"]) == "after"
    assert still_serves(server)


def test_error_codes_are_integers_and_messages_strings(conn):
    for raw in [b"{", b"42", line(request("nope")), line(request("examples.echo", [1]))]:
        conn.send_raw(raw + (b"" if raw.endswith(b"\n") else b"\n"))
        error = conn.read()["error"]
        assert type(error["code"]) is int and error["code"] in STANDARD_CODES
        assert isinstance(error["message"], str)


# ---------------------------------------------------------------------------
# Batches

def test_mixed_batch(conn):
    batch = [
        request("examples.echo", ["one"], id=1),
        {"jsonrpc": "2.0", "method": "examples.echo", "params": ["notified"]},
        request("no.such.method", id=3),
        {"foo": "bar"},
        request("examples.echo", {"message": 5}, id=5),
        request("test.opt", [4], id=6),
    ]
    conn.send_raw(line(batch))
    responses = conn.read()
    assert isinstance(responses, list), responses
    assert len(responses) == 5, responses
    by_id = {}
    for r in responses:
        by_id.setdefault(r.get("id"), []).append(r)
    assert by_id[1] == [{"jsonrpc": "2.0", "result": "one", "id": 1}]
    assert_error(by_id[3][0], -32601)
    assert_error(by_id[None][0], -32600)
    assert_error(by_id[5][0], -32602)
    assert by_id[6][0]["result"] == [4, 7]


def test_batch_of_invalid_values(conn):
    conn.send_raw(b"[1,2]\n")
    responses = conn.read()
    assert isinstance(responses, list) and len(responses) == 2
    for r in responses:
        assert_error(r, -32600, id=None)


def test_empty_batch_is_a_single_invalid_request(conn):
    conn.send_raw(b"[]\n")
    response = conn.read()
    assert isinstance(response, dict), response
    assert_error(response, -32600, id=None)


def test_batch_of_notifications_gets_no_response(conn):
    batch = [{"jsonrpc": "2.0", "method": "examples.echo", "params": ["a"]},
             {"jsonrpc": "2.0", "method": "no.such.method"}]
    conn.send_raw(line(batch))
    conn.send_raw(line(request("examples.echo", ["after"], id=99)))
    assert conn.read() == {"jsonrpc": "2.0", "result": "after", "id": 99}


# ---------------------------------------------------------------------------
# Concurrency and timeouts

def test_200_concurrent_connections_are_all_answered(server):
    conns = []
    try:
        for i in range(200):
            conns.append(RawConnection(server.address, timeout=15))
        for i, c in enumerate(conns):
            c.send(request("examples.echo", ["c%d" % i], id=i))
        for i, c in enumerate(conns):
            assert c.read() == {"jsonrpc": "2.0", "result": "c%d" % i, "id": i}
    finally:
        for c in conns:
            c.close()


def test_incomplete_request_is_closed_after_sockettimeout(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "T", "sockettimeout": 0.5}))
    proc = spawn([sys.executable, script, "-f"])
    idle = proc.connect()
    half = proc.connect()
    try:
        start = time.monotonic()
        half.send_raw(b'{"jsonrpc":"2.0","method":"examples.echo"')
        # Meanwhile other connections are served normally.
        with proc.connect() as other:
            for i in range(5):
                assert other.result("examples.echo", ["during %d" % i]) == "during %d" % i
        try:
            eof = half.read_line()
        except ConnectionResetError:
            eof = None
        elapsed = time.monotonic() - start
        assert eof is None and half.buffer == b"", "expected a close without a reply"
        assert 0.4 <= elapsed < 5, elapsed
        # An idle connection (no byte sent) is not subject to sockettimeout.
        assert idle.result("examples.echo", ["idle ok"]) == "idle ok"
    finally:
        idle.close()
        half.close()


def test_sockettimeout_counts_from_the_first_byte(workdir, spawn):
    """A request trickled byte by byte must still be complete within sockettimeout."""
    script = write_script(workdir, echo_daemon({"description": "T", "sockettimeout": 0.5}))
    proc = spawn([sys.executable, script, "-f"])
    data = line(request("examples.echo", ["slow"], id=1))
    with proc.connect() as slow:
        start = time.monotonic()
        closed = False
        for i in range(len(data) - 1):
            try:
                slow.send_raw(data[i:i + 1])
            except OSError:
                closed = True
                break
            time.sleep(0.1)  # the trickle itself is what is tested
            if time.monotonic() - start > 5:   # (the whole request would take some 7 s)
                break
        if not closed:
            try:
                closed = slow.read_line() is None
            except (ConnectionResetError, socket.timeout):
                closed = False
        assert closed, "a request trickled over %.1fs was not cut off" % (time.monotonic() - start)
        assert time.monotonic() - start < 6
    # Complete requests sent at a slower pace than sockettimeout are fine.
    with proc.connect() as steady:
        for i in range(3):
            assert steady.result("examples.echo", ["s%d" % i]) == "s%d" % i
            time.sleep(0.3)
        assert steady.result("examples.echo", ["end"]) == "end"


def test_idle_connections_are_closed_after_socketidle(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "I", "socketidle": 0.5}))
    proc = spawn([sys.executable, script, "-f"])
    with proc.connect() as idle, proc.connect() as busy:
        start = time.monotonic()
        # A connection in use is not idle.
        while time.monotonic() - start < 1.0:
            assert busy.result("examples.echo", ["busy"]) == "busy"
            time.sleep(0.1)
        try:
            assert idle.read_line() is None
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 5


def test_a_client_that_never_reads_its_replies_is_closed_after_socketidle(workdir, spawn):
    """The reader waits without a socket timeout; socketidle still ends a reply
    blocked on a client that sends and never reads (its connection is dropped)."""
    script = write_script(workdir, echo_daemon({"description": "W", "socketidle": 0.5}))
    proc = spawn([sys.executable, script, "-f"])
    stuck = socket.socket(socket.AF_UNIX)
    stuck.connect(proc.address[len("unix://"):])
    stuck.settimeout(0.2)
    line = json.dumps(request("examples.echo", ["x" * 60000])).encode() + b"\n"
    try:
        for _ in range(2000):  # until our sending blocks: the daemon's replies fill both buffers
            stuck.sendall(line)
    except socket.timeout:
        pass
    try:
        wait_until(lambda: rpc(proc.address, "daemon.status")["result"]["connections"] == 1, 5,
                   message="the stuck connection dropped")
    finally:
        stuck.close()


def test_socketmaxmessage_is_honoured(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "S", "socketmaxmessage": 300}))
    proc = spawn([sys.executable, script, "-f"])
    with proc.connect() as c:
        assert c.result("examples.echo", ["x" * 150]) == "x" * 150
        c.send(request("examples.echo", ["x" * 600]))
        assert_error(c.read(), -32003)
        try:
            assert c.read_line() is None
        except ConnectionResetError:
            pass
    with proc.connect() as c:
        assert c.result("examples.echo", ["fine"]) == "fine"


def test_crlf_terminated_requests(conn):
    conn.send_raw(json.dumps(request("examples.echo", ["crlf"], id=4)).encode() + b"\r\n")
    assert conn.read() == {"jsonrpc": "2.0", "result": "crlf", "id": 4}


def test_too_many_connections(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "M", "socketmaxconnections": 3}))
    proc = spawn([sys.executable, script, "-f"])

    def open_served():
        c = proc.connect(timeout=5)
        response = c.call("examples.echo", ["x"])
        if response == {"jsonrpc": "2.0", "result": "x", "id": 1}:
            return c
        c.close()
        return None

    held = []
    try:
        for _ in range(3):
            held.append(wait_until(open_served, 10, message="a connection under the limit"))
        extra = proc.connect(timeout=5)
        try:
            assert_error(extra.read(), -32004)
            try:
                assert extra.read_line() is None
            except ConnectionResetError:
                pass
        finally:
            extra.close()
        # The held connections are unaffected.
        for c in held:
            assert c.result("examples.echo", ["held"]) == "held"
        # Once one is closed, a new connection is accepted.
        held.pop().close()
        held.append(wait_until(open_served, 10, message="a slot freed by closing"))
    finally:
        for c in held:
            c.close()


# ---------------------------------------------------------------------------
# 4.3 standard methods

def test_list_methods_is_sorted_and_complete(conn):
    names = conn.result("system.listMethods")
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in STANDARD_METHODS + ["examples.echo", "test.fail", "test.types"]:
        assert name in names, name


def test_method_help(conn):
    assert conn.result("system.methodHelp", ["examples.echo"]) == "I'm here to reply your data"
    assert conn.result("system.methodHelp", {"name": "test.fail"}) == "always fails"
    assert isinstance(conn.result("system.methodHelp", ["daemon.status"]), str)


def test_method_signature(conn):
    assert conn.result("system.methodSignature", ["examples.echo"]) == [["string", "string"]]
    assert conn.result("system.methodSignature", {"name": "test.types"}) == \
        [["struct", "string", "int", "double", "boolean", "array", "struct"]]
    assert conn.result("system.methodSignature", ["test.opt"]) == [["array", "int", "int"]]


def test_method_help_of_an_unknown_method_is_an_error(conn):
    response = conn.call("system.methodHelp", ["no.such.method"])
    assert "error" in response and response["error"]["code"] in (-32601, -32602), response


def test_echo_daemon_signature(echo):
    assert echo.result("system.methodSignature", ["examples.echo"]) == [["string", "string"]]
    assert echo.result("examples.echo", {"message": "hi"}) == "hi"


def test_get_capabilities(conn):
    caps = conn.result("system.getCapabilities")
    assert set(caps) >= {"json-rpc", "system.multicall", "introspection", "events", "auth"}
    assert "xmlrpc" not in caps  # no HTTP endpoint configured
    for name, value in caps.items():
        assert set(value) >= {"specUrl", "specVersion"}, (name, value)


def test_multicall(conn):
    calls = [
        {"methodName": "examples.echo", "params": ["a"]},
        {"methodName": "no.such.method", "params": []},
        {"methodName": "test.opt", "params": [1]},
        {"methodName": "examples.echo", "params": [1]},
    ]
    results = conn.result("system.multicall", [calls])
    assert len(results) == 4
    assert results[0] == ["a"]
    assert results[1]["faultCode"] == -32601 and isinstance(results[1]["faultString"], str)
    assert results[2] == [[1, 7]]
    assert results[3]["faultCode"] == -32602
    assert conn.result("system.multicall", {"calls": []}) == []


def test_daemon_status(server, conn):
    import gdaemon
    before = time.time()
    status = conn.result("daemon.status")
    assert set(status) >= {"pid", "description", "version", "uptime", "started_at",
                           "sockethandler", "connections", "workers"}
    assert status["pid"] == server.pid
    assert status["description"] == "Wire Test Daemon"
    assert status["version"] == gdaemon.__version__
    assert isinstance(status["uptime"], (int, float)) and 0 <= status["uptime"] < 600
    if isinstance(status["started_at"], (int, float)):
        assert before - 600 < status["started_at"] <= before + 1
    else:
        assert isinstance(status["started_at"], str) and status["started_at"]
    assert status["sockethandler"] == server.address
    assert os.path.isabs(status["sockethandler"][len("unix://"):])
    assert isinstance(status["connections"], int) and status["connections"] >= 1
    assert status["workers"] == {}


def test_daemon_reload_returns_true_and_keeps_the_connection(conn, server):
    assert conn.result("daemon.reload") is True
    assert conn.result("examples.echo", ["after reload"]) == "after reload"
    assert server.proc.poll() is None


def test_worker_methods_without_workers(conn):
    assert conn.result("worker.list") == []
    assert conn.result("worker.status") == {}
    assert_error(conn.call("worker.restart", ["nobody"]), -32002)


# ---------------------------------------------------------------------------
# 4.4 authentication

@pytest.fixture(scope="module")
def token_server(module_workdir, module_spawn):
    path = os.path.join(module_workdir, "auth")   # beside the shared server's daemon.sock
    os.mkdir(path)
    script = write_script(path, echo_daemon({"description": "Auth", "token": "s3cret-token"}))
    proc = module_spawn([sys.executable, script, "-f"], wait=False, cwd=path)
    # is_serving() cannot authenticate: wait for the socket to answer -32001.
    wait_until(lambda: rpc(proc.address, "system.listMethods", timeout=2)["error"]["code"] == -32001,
               15, message="the token daemon to serve")
    return proc


def _closed(c):
    try:
        return c.read_line() is None
    except ConnectionResetError:
        return True


def test_token_first_request_must_be_auth(token_server):
    with token_server.connect() as c:
        assert_error(c.call("examples.echo", ["x"]), -32001, id=1)
        assert _closed(c)


def test_token_wrong_token_is_refused_and_closed(token_server):
    with token_server.connect() as c:
        assert_error(c.call("system.auth", ["wrong"]), -32001, id=1)
        assert _closed(c)


def test_token_right_token_then_calls_work(token_server):
    with token_server.connect() as c:
        assert c.result("system.auth", {"token": "s3cret-token"}) is True
        assert c.result("examples.echo", ["in"]) == "in"
        assert "examples.echo" in c.result("system.listMethods")


# ---------------------------------------------------------------------------
# 4.5 events

def read_event(c):
    """The next pushed notification on ``c`` (fails on a response)."""
    message = c.read()
    assert message is not None, "connection closed"
    assert "id" not in message, message
    return message


def test_subscribe_pushes_events_in_the_spec_format(server):
    with server.connect() as sub:
        assert sub.result("events.subscribe", {"patterns": ["rpc.*"]}) is True
        before = time.time()
        with server.connect() as other:
            other.result("test.spam", [3, 0])
        message = read_event(sub)
        # A late rpc.disconnect of an earlier test's connection may come first.
        while message["params"]["name"] == "rpc.disconnect":
            message = read_event(sub)
        assert set(message) == {"jsonrpc", "method", "params"}, message
        assert message["jsonrpc"] == "2.0" and message["method"] == "event"
        params = message["params"]
        assert set(params) == {"name", "data", "time"}, params
        assert params["name"] == "rpc.connect"
        assert isinstance(params["data"], dict) and params["data"]
        assert isinstance(params["time"], (int, float))
        assert before - 5 < params["time"] < time.time() + 5
        # Only rpc.* events, not test.spam: next comes rpc.disconnect.
        assert read_event(sub)["params"]["name"] == "rpc.disconnect"


def test_subscribe_to_several_patterns(server):
    with server.connect() as sub:
        assert sub.result("events.subscribe", [["test.*", "daemon.reload"]]) is True
        with server.connect() as other:
            other.result("test.spam", [2, 1])
            other.result("daemon.reload")
        names = [read_event(sub)["params"] for _ in range(3)]
        assert [p["name"] for p in names] == ["test.spam", "test.spam", "daemon.reload"]
        assert names[0]["data"]["i"] == 0 and names[1]["data"]["i"] == 1


def test_unsubscribe_all(server):
    with server.connect() as sub:
        sub.result("events.subscribe", [["rpc.*"]])
        assert sub.result("events.unsubscribe") is True
        with server.connect() as other:
            other.result("examples.echo", ["x"])
        sub.send(request("examples.echo", ["mine"], id=77))
        assert sub.read() == {"jsonrpc": "2.0", "result": "mine", "id": 77}


def test_unsubscribe_some_patterns(server):
    with server.connect() as sub:
        sub.result("events.subscribe", [["rpc.*", "test.*"]])
        assert sub.result("events.unsubscribe", {"patterns": ["rpc.*"]}) is True
        with server.connect() as other:
            other.result("test.spam", [1, 2])
        event = read_event(sub)
        assert event["params"]["name"] == "test.spam"


def test_slow_subscriber_never_blocks_the_daemon(server):
    sub = server.connect(timeout=15)
    try:
        assert sub.result("events.subscribe", [["*"]]) is True
        # The subscriber reads nothing while the daemon emits far more events
        # than any bounded queue plus the socket buffers can hold.
        chunks, per_chunk = 8, 5000
        with server.connect(timeout=5) as other:
            for tag in range(chunks):
                assert other.result("test.spam", [per_chunk, tag]) == per_chunk
                assert still_serves(server)
        received, dropped = [], []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            params = read_event(sub)["params"]
            if params["name"] == "events.dropped":
                dropped.append(params["data"])
            elif params["name"] == "test.spam":
                received.append((params["data"]["tag"], params["data"]["i"]))
                if received[-1] == (chunks - 1, per_chunk - 1):
                    break
        # Whatever is still queued (an events.dropped may come last) precedes this reply.
        sub.send(request("examples.echo", ["caught up"], id=1000))
        while True:
            message = sub.read()
            assert message is not None
            if "id" in message:
                assert message["result"] == "caught up"
                break
            if message["params"]["name"] == "events.dropped":
                dropped.append(message["params"]["data"])
        # The newest event arrived; older ones were dropped and counted.
        assert received and received[-1] == (chunks - 1, per_chunk - 1)
        assert dropped, "no events.dropped event"
        counts = [v for d in dropped for v in d.values() if isinstance(v, int) and not isinstance(v, bool)]
        assert counts and all(c > 0 for c in counts), dropped
        assert len(received) < chunks * per_chunk
        # Order is kept among what was delivered.
        assert received == sorted(received)
    finally:
        sub.close()
    assert still_serves(server)


# ---------------------------------------------------------------------------
# Endpoints

def test_non_loopback_tcp_without_token_refuses_to_start(workdir):
    addr = "tcp://0.0.0.0:%d" % free_port()
    completed = run([ECHO, "-f", "-a", addr], workdir, timeout=15)
    text = completed.stdout + completed.stderr
    assert completed.returncode == 1, text
    assert any(word in text.lower() for word in ("token", "insecure", "loopback")), text


def test_non_loopback_tcp_allowed_with_insecure(workdir, spawn):
    port = free_port()
    script = write_script(workdir, echo_daemon(
        {"description": "I", "sockethandler": "tcp://0.0.0.0:%d" % port, "insecure": True}))
    spawn([sys.executable, script, "-f"], address="tcp://127.0.0.1:%d" % port)
    assert rpc("tcp://127.0.0.1:%d" % port, "examples.echo", ["open"])["result"] == "open"


def test_non_loopback_tcp_allowed_with_a_token(workdir, spawn):
    port = free_port()
    script = write_script(workdir, echo_daemon(
        {"description": "K", "sockethandler": "tcp://0.0.0.0:%d" % port, "token": "tok"}))
    addr = "tcp://127.0.0.1:%d" % port
    proc = spawn([sys.executable, script, "-f"], address=addr, wait=False)
    wait_until(lambda: rpc(addr, "system.listMethods", timeout=2)["error"]["code"] == -32001, 15,
               message="the daemon to serve")
    with RawConnection(addr) as c:
        assert c.result("system.auth", ["tok"]) is True
        assert c.result("examples.echo", ["secured"]) == "secured"
    assert proc.proc.poll() is None


def test_tcp_endpoint(spawn):
    addr = "tcp://127.0.0.1:%d" % free_port()
    spawn([ECHO, "-f", "-a", addr], address=addr)
    with RawConnection(addr) as c:
        c.send_raw(b"".join(line(request("examples.echo", ["t%d" % i], id=i)) for i in range(20)))
        for i in range(20):
            assert c.read()["result"] == "t%d" % i
        c.send_raw(b"{oops\n")
        assert_error(c.read(), -32700, id=None)


def test_unix_socket_mode_defaults_to_0600(echo, workdir):
    mode = os.stat(os.path.join(workdir, "daemon.sock")).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_unix_socket_mode_is_honoured(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "Mode", "socketmode": 0o660}))
    spawn([sys.executable, script, "-f"])
    assert stat.S_IMODE(os.stat(os.path.join(workdir, "daemon.sock")).st_mode) == 0o660


@pytest.mark.parametrize("end", [b"\n", b""], ids=["newline", "end-of-input"])
def test_nc_style_one_shot_request(echo, end):
    """A request written then half-closed (like ``nc -U``) is answered (docs/reference/rpc.rst, Framing);
    without its newline too (``printf '{...}' | nc -U daemon.sock``): the end
    of input ends the last line."""
    with RawConnection(echo.address) as conn:
        conn.send_raw(b'{"jsonrpc":"2.0","method":"examples.echo","params":{"message":"hi"},"id":1}' + end)
        conn.sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(conn.sock)
    assert data == b'{"jsonrpc":"2.0","result":"hi","id":1}\n'


# ---------------------------------------------------------------------------
# Issue 8: socketmaxbatch, integers of any size

def test_a_batch_longer_than_socketmaxbatch_is_one_invalid_request(conn, server):
    batch = [request("examples.echo", {"message": str(i)}, id=i) for i in range(1001)]
    conn.send_raw(line(batch))
    error = assert_error(conn.read(), -32600, id=None)
    assert "1000" in error["message"]
    # Exactly the limit is answered in full, on the same connection.
    conn.send_raw(line(batch[:1000]))
    assert [r["result"] for r in conn.read()] == [str(i) for i in range(1000)]
    assert still_serves(server)


@pytest.mark.parametrize("value", [2 ** 64, 2 ** 70, -2 ** 63 - 1, 10 ** 30])
def test_integers_beyond_64_bits_round_trip_exactly(conn, value):
    items = [value, -value]
    conn.send_raw(line(request("test.types", {"text": "t", "count": value, "ratio": 1, "flag": True,
                                              "items": items, "mapping": {"v": value}}, id=value)))
    raw = conn.read_line()
    response = json.loads(raw)
    assert response["id"] == value and response["result"]["count"] == value
    assert response["result"]["items"] == items and response["result"]["mapping"] == {"v": value}
    assert b"e+" not in raw  # never a float on the wire
