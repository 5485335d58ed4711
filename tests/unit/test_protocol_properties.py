"""Property tests of the pure JSON-RPC engine (gdaemon/rpc/protocol.py; docs/reference/rpc.rst).

Whatever line a client sends, the engine answers with exactly one
well-formed JSON-RPC response line (an object, or an array for a batch), or
with nothing for a valid notification or a batch of only notifications; it
never raises; ids are echoed; error codes come from the documented set.
"""

import json
import sys
import tracemalloc
import typing

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gdaemon.errors import RpcError
from gdaemon.rpc.builtin import register_builtins
from gdaemon.rpc.methods import MethodRegistry, xmlrpc_type_name
from gdaemon.rpc.protocol import Engine, Session, Subscribers

#: The standard and server codes (docs/reference/rpc.rst, Errors), plus what our handler raises on purpose.
STANDARD_CODES = {-32700, -32600, -32601, -32602, -32603}
SERVER_CODES = {-32000, -32001, -32002, -32003, -32004, -32005}
CUSTOM_CODE = -32099
ALLOWED_CODES = STANDARD_CODES | SERVER_CODES | {CUSTOM_CODE}

#: Integers round-trip exactly up to 4,300 digits (docs/reference/rpc.rst,
#: Framing); these go well past 64 bits.
MAX_INT = 2 ** 200


class StubDaemon:
    """Just enough of a daemon for the built-in methods to be registered and called."""

    def __init__(self, registry):
        self.rpc = registry
        self.config = {"websockethandler": None, "description": "stub", "sockethandler": "unix:///x"}
        self.started_at = 0
        self.stops = 0

    def stop(self, exitcode=0):
        self.stops += 1

    def reload(self):
        pass

    def status(self):
        return {"pid": 1}

    def connection_count(self):
        return 1


#: One entry per call of t.count: what a refused batch must not have run.
CALLS = []


def make_registry():
    registry = MethodRegistry()

    @registry.method("t.echo", description="echo", params=[("message", str)], returns=str)
    def echo(message):
        return message

    @registry.method("t.add", params=[("a", int), ("b", int, 0)], returns=int)
    def add(a, b):
        return a + b

    @registry.method("t.opt", params=[("x", typing.Optional[float])])
    def opt(x):
        return x

    @registry.method("t.any", params=[("value", typing.Any)])
    def any_(value):
        return value

    @registry.method("t.sig")
    def sig(a, b=2):
        return [a, b]

    @registry.method("t.fail")
    def fail():
        raise ValueError("boom")

    @registry.method("t.rpcerror")
    def rpcerror():
        raise RpcError(CUSTOM_CODE, "custom", {"k": 1})

    @registry.method("t.daemon")
    def needs_daemon(daemon):
        return daemon is not None

    @registry.method("t.weird")
    def weird():
        return {"set": {1, 2}, "tuple": (1, 2), "bytes": b"x"}

    @registry.method("t.count")
    def count():
        CALLS.append(1)
        return len(CALLS)

    return registry


def make_engine(token=None):
    registry = make_registry()
    daemon = StubDaemon(registry)
    engine = Engine(registry, token=token, injected={"daemon": daemon})
    register_builtins(daemon, engine, Subscribers())
    return engine


ENGINE = make_engine()
METHOD_NAMES = sorted(ENGINE.registry.names()) + ["no.such", "", "t.", "system"]

# ---------------------------------------------------------------------------
# Strategies

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-MAX_INT, MAX_INT),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars,
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
valid_ids = st.one_of(st.integers(-MAX_INT, MAX_INT), st.text(max_size=12), st.none(),
                      st.floats(allow_nan=False, allow_infinity=False))
invalid_ids = st.one_of(st.booleans(), st.lists(json_scalars, max_size=2),
                        st.dictionaries(st.text(max_size=3), json_scalars, max_size=2))
ABSENT = object()


@st.composite
def requests(draw):
    """A request-shaped object: usually valid, sometimes broken in one or more ways."""
    obj = {}
    jsonrpc = draw(st.one_of(st.just("2.0"), st.just("2.0"), st.just("2.0"),
                             st.sampled_from(["1.0", "2", 2.0, None, ABSENT])))
    if jsonrpc is not ABSENT:
        obj["jsonrpc"] = jsonrpc
    method = draw(st.one_of(st.sampled_from(METHOD_NAMES), st.sampled_from(METHOD_NAMES),
                            st.text(max_size=10), json_scalars, st.just(ABSENT)))
    if method is not ABSENT:
        obj["method"] = method
    params = draw(st.one_of(st.just(ABSENT), st.lists(json_values, max_size=3),
                            st.dictionaries(st.sampled_from(["message", "a", "b", "x", "value",
                                                             "name", "calls", "token", "patterns",
                                                             "zzz"]), json_values, max_size=3),
                            # "params": null is covered by test_null_params_is_an_invalid_request
                            json_scalars.filter(lambda v: v is not None)))
    if params is not ABSENT:
        obj["params"] = params
    req_id = draw(st.one_of(st.just(ABSENT), valid_ids, valid_ids, invalid_ids))
    if req_id is not ABSENT:
        obj["id"] = req_id
    if draw(st.booleans()) and draw(st.booleans()):
        obj[draw(st.text(max_size=5))] = draw(json_scalars)
    return obj


def expectation(obj):
    """``(is_valid_notification, id_to_echo_or_ABSENT, is_invalid_request)`` for one request."""
    if not isinstance(obj, dict):
        return False, ABSENT, True
    req_id = obj.get("id", ABSENT)
    id_ok = req_id is ABSENT or (isinstance(req_id, (str, int, float, type(None)))
                                 and not isinstance(req_id, bool))
    invalid = (obj.get("jsonrpc") != "2.0" or not isinstance(obj.get("method"), str)
               or ("params" in obj and not isinstance(obj["params"], (list, dict))) or not id_ok)
    if invalid:
        return False, ABSENT, True
    if req_id is ABSENT:
        return True, ABSENT, False
    return False, req_id, False


def check_response(response, expected_id=ABSENT):
    """Assert ``response`` is a well-formed JSON-RPC 2.0 response object."""
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    assert "id" in response, response
    assert ("result" in response) != ("error" in response), response
    assert set(response) <= {"jsonrpc", "id", "result", "error"}, response
    if "error" in response:
        error = response["error"]
        assert isinstance(error, dict) and set(error) <= {"code", "message", "data"}, error
        assert type(error["code"]) is int and error["code"] in ALLOWED_CODES, error
        assert isinstance(error["message"], str), error
    if expected_id is not ABSENT:
        assert response["id"] == expected_id and type(response["id"]) is type(expected_id), \
            (expected_id, response)


def handle(line, engine=ENGINE, session=None):
    """Feed one line; return the decoded response or None (and check the framing)."""
    out = engine.handle_line(line, session or Session("test"))
    if out is None:
        return None
    if isinstance(out, str):
        out = out.encode()
    assert isinstance(out, (bytes, bytearray)), out
    assert b"\n" not in out, "a response must be a single line"
    return json.loads(out)


def dumps(obj):
    return json.dumps(obj).encode()


COMMON = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# Properties


@COMMON
@given(st.binary(max_size=200))
def test_any_bytes_give_at_most_one_well_formed_response(data):
    response = handle(data)
    if response is None:
        # Nothing is only for blank lines and valid notifications.
        if data.strip():
            payload = json.loads(data)
            if isinstance(payload, dict):
                assert expectation(payload)[0], payload
            else:
                assert isinstance(payload, list) and payload
    elif isinstance(response, list):
        assert response
        for item in response:
            check_response(item)
    else:
        check_response(response)


@COMMON
@given(st.text(max_size=100))
def test_any_text_line(text):
    response = handle(text.encode("utf-8"))
    if response is not None:
        if isinstance(response, list):
            for item in response:
                check_response(item)
        else:
            check_response(response)


@COMMON
@given(json_values)
def test_any_json_value(value):
    response = handle(dumps(value))
    if isinstance(value, list) and value:
        expected = [expectation(item) for item in value]
        if all(e[0] for e in expected):
            assert response is None
            return
        assert isinstance(response, list), response
        assert len(response) == sum(1 for e in expected if not e[0])
        for item in response:
            check_response(item)
    elif isinstance(value, dict):
        notification, req_id, invalid = expectation(value)
        if notification:
            assert response is None
        else:
            check_response(response, req_id)
            if invalid:
                assert response["error"]["code"] == -32600
    else:
        # Not an object, not a non-empty array: one -32600 with id null.
        check_response(response, None)
        assert response["error"]["code"] == -32600


@COMMON
@given(requests())
def test_request_shaped_objects(obj):
    notification, req_id, invalid = expectation(obj)
    response = handle(dumps(obj))
    if notification:
        assert response is None, (obj, response)
        return
    check_response(response)
    if invalid:
        assert response["error"]["code"] == -32600, (obj, response)
        # An invalid request is answered with id null (or its id when it had a valid one).
        own = obj.get("id", ABSENT)
        assert response["id"] is None or (own is not ABSENT and response["id"] == own), (obj, response)
    else:
        assert response["id"] == req_id and type(response["id"]) is type(req_id)
        if obj["method"] not in ENGINE.registry.names():
            assert response["error"]["code"] == -32601


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=6))
def test_batches(batch):
    expected = [expectation(obj) for obj in batch]
    response = handle(dumps(batch))
    answered = [e for e in expected if not e[0]]
    if not answered:
        assert response is None
        return
    assert isinstance(response, list), response
    assert len(response) == len(answered)
    for item in response:
        check_response(item)
    echoed = sorted(json.dumps(r["id"]) for r in response if r["id"] is not None)
    wanted = [json.dumps(e[1]) for e in answered if e[1] is not ABSENT and e[1] is not None]
    # Every valid id comes back once (invalid requests may come back with null).
    for i in wanted:
        assert i in echoed, (i, echoed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=3), st.dictionaries(st.text(max_size=6), json_values, max_size=3))
def test_known_methods_never_raise_with_random_params(args, kwargs):
    for name in ENGINE.registry.names():
        if name in ("daemon.stop", "daemon.shutdown"):
            continue
        for params in (args, kwargs):
            response = handle(dumps({"jsonrpc": "2.0", "method": name, "params": params, "id": 7}))
            check_response(response, 7)


@COMMON
@given(st.integers(-MAX_INT, MAX_INT), st.integers(-MAX_INT, MAX_INT))
def test_results_are_exact(a, b):
    response = handle(dumps({"jsonrpc": "2.0", "method": "t.add", "params": [a, b], "id": "x"}))
    assert response == {"jsonrpc": "2.0", "result": a + b, "id": "x"}


@COMMON
@given(st.text(max_size=50))
def test_unicode_round_trip(text):
    raw = json.dumps({"jsonrpc": "2.0", "method": "t.echo", "params": [text], "id": 1},
                     ensure_ascii=False).encode("utf-8")
    assert handle(raw) == {"jsonrpc": "2.0", "result": text, "id": 1}


@COMMON
@given(st.one_of(st.binary(max_size=100), requests().map(dumps), json_values.map(dumps)))
def test_before_auth_everything_is_refused(data):
    engine = make_engine(token="s3cret")
    session = Session("test")
    response = handle(data, engine, session)
    if response is None:
        # Blank line, or a notification that authenticated with the right token.
        assert not data.strip() or session.authenticated
        return
    if isinstance(response, dict) and "result" in response:
        assert response["result"] is True and session.authenticated
        return
    check_response(response)
    assert response["error"]["code"] == -32001
    assert not session.authenticated
    assert session.close_after


# ---------------------------------------------------------------------------
# Fixed examples of the same rules (quick to read when a property fails)

@pytest.mark.parametrize("line,code", [
    (b"{", -32700), (b"\xff", -32700), (b"[]", -32600), (b"42", -32600), (b'"x"', -32600),
    (b'{"jsonrpc":"2.0","method":"t.echo","params":"x"}', -32600),
    (b'{"jsonrpc":"2.0","method":"t.echo","params":[1],"id":1}', -32602),
    (b'{"jsonrpc":"2.0","method":"t.fail","id":1}', -32603),
    (b'{"jsonrpc":"2.0","method":"nope","id":1}', -32601),
])
def test_examples(line, code):
    response = handle(line)
    check_response(response)
    assert response["error"]["code"] == code


def test_internal_error_does_not_leak():
    response = handle(b'{"jsonrpc":"2.0","method":"t.fail","id":1}')
    assert "boom" not in json.dumps(response)


def test_rpc_error_is_sent_as_is():
    response = handle(b'{"jsonrpc":"2.0","method":"t.rpcerror","id":1}')
    assert response["error"] == {"code": CUSTOM_CODE, "message": "custom", "data": {"k": 1}}


def test_notifications_of_failing_methods_get_nothing():
    for method in ("t.fail", "t.rpcerror", "nope", "t.echo"):
        assert handle(dumps({"jsonrpc": "2.0", "method": method, "params": [1]})) is None


@pytest.mark.parametrize("req_id", [ABSENT, 1])
def test_null_params_is_an_invalid_request(req_id):
    """-32600 for params that are neither an array nor an object.

    (JSON-RPC 2.0: params, when present, is a structured value.)"""
    obj = {"jsonrpc": "2.0", "method": "t.sig", "params": None}
    if req_id is not ABSENT:
        obj["id"] = req_id
    response = handle(dumps(obj))
    assert response is not None, "params: null answered as a valid notification"
    check_response(response)
    assert response["error"]["code"] == -32600, response


def test_blank_lines_get_nothing():
    for line in (b"", b"  ", b"\t", b"\r"):
        assert handle(line) is None


# ---------------------------------------------------------------------------
# socketmaxbatch (docs/reference/config.rst, issue 8): batches near the limit

from gdaemon.rpc.protocol import batch_exceeds  # noqa: E402


def count_request(i, notify=False):
    request = {"jsonrpc": "2.0", "method": "t.count"}
    if not notify:
        request["id"] = i
    return request


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12), st.integers(-2, 2), st.booleans(), st.sampled_from(["", " ", "\n\t ", "\r\n"]))
def test_batches_near_the_limit(limit, offset, notify, blank):
    """limit-2 .. limit+2 requests: up to the limit all run; beyond it one -32600
    (id null) naming the limit, and none of them runs."""
    size = limit + offset
    assume(size >= 1)
    batch = [count_request(i, notify) for i in range(size)]
    line = (blank + "[" + blank + ("," + blank).join(json.dumps(r) for r in batch) + blank + "]" + blank).encode()
    session = Session("test", max_batch=limit)
    before = len(CALLS)
    response = handle(line, session=session)
    if size <= limit:
        assert len(CALLS) - before == size
        if notify:
            assert response is None
        else:
            assert [r["id"] for r in response] == list(range(size))
    else:
        assert len(CALLS) == before, "a refused batch ran"
        check_response(response, None)
        assert response["error"]["code"] == -32600
        assert str(limit) in response["error"]["message"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=14), st.integers(0, 15),
       st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_batch_length_is_counted_exactly_without_decoding(values, limit, blank):
    """batch_exceeds agrees with len(json.loads(line)) for any JSON array, any spacing."""
    text = "[" + blank + ("," + blank).join(json.dumps(v) for v in values) + blank + "]"
    assert batch_exceeds(text.encode(), limit) == (len(values) > limit)
    # Not an array, or not JSON at all: never "a long batch" (the parser decides).
    assert batch_exceeds(json.dumps({"a": values}).encode(), limit) is False
    assert batch_exceeds(text[:-1].encode() + b"{", limit) == (len(values) > limit)


@pytest.mark.parametrize("char", ["x", "\u00e9", "\u2713", "\U0001f600"])
@pytest.mark.parametrize("limit", [1, 3, 19, 20, 21, 49, 50, 60])
def test_batch_length_across_decode_windows(char, limit):
    """Values far larger than the 64 KB first window, multi-byte characters cut at its edge."""
    values = [char * (7001 + i) for i in range(20)] + list(range(30))
    line = json.dumps(values, ensure_ascii=False).encode("utf-8")
    assert len(line) > 4 * 65536 or char == "x"
    assert batch_exceeds(line, limit) == (len(values) > limit)
    assert batch_exceeds(line[:-1], limit) == (len(values) > limit)  # truncated: decided if passed


def test_default_limit_is_1000_and_exactly_1000_pass():
    before = len(CALLS)
    line = dumps([count_request(i) for i in range(1000)])
    response = handle(line)
    assert len(response) == 1000 and len(CALLS) - before == 1000
    line = dumps([count_request(i) for i in range(1001)])
    response = handle(line)
    assert response["error"]["code"] == -32600 and "1000" in response["error"]["message"]
    assert response["id"] is None
    assert len(CALLS) - before == 1000


def test_a_one_megabyte_batch_is_refused_cheaply():
    """Counted up to 1001 values, never decoded whole: decoding one of these
    lines builds 4 to 37 MB of Python objects, refusing it about 0.1 MB.
    (How fast: scripts/bench.py hostile, where attackers send these lines.)"""
    for line in (b"[" + b"1," * 524283 + b"1]", b"[" + b"{}," * 349000 + b"{}]",
                 b"[" + b'"",' * 349000 + b'""]'):
        tracemalloc.start()
        try:
            response = handle(line)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert response["error"]["code"] == -32600
        assert peak < 1024 * 1024, "%d kB allocated to refuse a 1 MB batch" % (peak // 1024)


def test_before_auth_a_batch_is_refused_unread():
    engine = make_engine(token="s3cret")
    session = Session("test")
    response = handle(b"[" + b"1," * 100000 + b"1]", engine, session)
    assert response["error"]["code"] == -32001 and session.close_after


@pytest.mark.parametrize("params", [lambda calls: [calls], lambda calls: {"calls": calls}])
def test_multicall_is_bounded_too(params):
    calls = [{"methodName": "t.count", "params": []}] * 4
    session = Session("test", max_batch=3)
    before = len(CALLS)
    response = handle(dumps({"jsonrpc": "2.0", "method": "system.multicall", "params": params(calls),
                             "id": 1}), session=session)
    assert response["error"]["code"] == -32602 and "3" in response["error"]["message"]
    assert len(CALLS) == before
    response = handle(dumps({"jsonrpc": "2.0", "method": "system.multicall", "params": params(calls[:3]),
                             "id": 1}), session=session)
    assert response["result"] == [[before + 1], [before + 2], [before + 3]]


# ---------------------------------------------------------------------------
# Integers round-trip exactly up to 4,300 digits (docs/reference/rpc.rst, Framing; issue 8)

@COMMON
@given(st.integers(), st.integers())
def test_big_integers_round_trip_exactly(req_id, value):
    line = dumps({"jsonrpc": "2.0", "method": "t.any", "params": [value], "id": req_id})
    response = handle(line)
    assert response == {"jsonrpc": "2.0", "result": value, "id": req_id}
    assert type(response["result"]) is int and type(response["id"]) is int


@pytest.mark.parametrize("value", [2 ** 64 - 1, 2 ** 64, -2 ** 63 - 1, 2 ** 70, -2 ** 70, 10 ** 100])
def test_big_integers_examples(value):
    out = ENGINE.handle_line(dumps({"jsonrpc": "2.0", "method": "t.any", "params": [value], "id": value}),
                             Session("test"))
    assert out == ('{"jsonrpc":"2.0","result":%d,"id":%d}' % (value, value)).encode()


def test_the_exact_path_is_as_strict_as_the_fast_one():
    """A 19-digit run sends a line to the stdlib parser: it still refuses what orjson refuses."""
    big = "12345678901234567890"
    for bad in ('[NaN, %s]', '[Infinity, %s]', '[1e400, %s]', '[%s'):
        response = handle((bad % big).encode())
        assert response["error"]["code"] == -32700, bad
    deep = ("[" * 3000 + big + "]" * 3000).encode()
    assert handle(deep)["error"]["code"] == -32700
    assert handle(b'["\xff", ' + big.encode() + b"]")["error"]["code"] == -32700


@pytest.mark.skipif(sys.version_info < (3, 10), reason="int | None needs Python 3.10")
def test_a_param_declared_int_or_none_takes_null_and_ints():
    # PEP 604 unions (types.UnionType) are optional like typing.Optional.
    registry = MethodRegistry()

    @registry.method("t.pep604", params=[("x", eval("int | None"))], returns=eval("int | None"))
    def pep604(x):
        return x

    engine = Engine(registry)
    for value in (None, 7):
        response = handle(dumps({"jsonrpc": "2.0", "method": "t.pep604", "params": [value], "id": 1}),
                          engine=engine)
        assert response == {"jsonrpc": "2.0", "result": value, "id": 1}
    response = handle(dumps({"jsonrpc": "2.0", "method": "t.pep604", "params": ["7"], "id": 1}),
                      engine=engine)
    assert response["error"]["code"] == -32602 and "x" in response["error"]["message"]
    assert xmlrpc_type_name(eval("int | None")) == "int"
