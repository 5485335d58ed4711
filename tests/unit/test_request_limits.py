"""Bounded work per request, bytes in and bytes out (issue 14).

The limits are in docs/reference/rpc.rst: Framing, What one client can cost.

The engine, the subscriber registry, the codec, the log formatter and the hub
monitor, each without a daemon or a socket.  The attacks themselves, as an
attacker sends them to a real daemon, are in
tests/functional/test_attack_requests.py.
"""

import json
import logging
import sys
import threading
import time

import pytest

from gdaemon.errors import InvalidParams
from gdaemon.hubmonitor import HubMonitor
from gdaemon.logfiles import LogFormatter, escape_control
from gdaemon.rpc.methods import MethodRegistry
from gdaemon.rpc.protocol import Engine, ReplyBudget, Session, Subscribers
from gdaemon.wire import codec

pytestmark = pytest.mark.timeout(30)


def make_engine(max_reply, calls):
    registry = MethodRegistry()

    @registry.method("t.blob", params=[("size", int)], returns=str)
    def blob(size):
        calls.append(size)
        return "x" * size

    engine = Engine(registry)
    engine.max_reply = max_reply
    return engine


def batch(*sizes, ids=True):
    return [dict({"jsonrpc": "2.0", "method": "t.blob", "params": [size]},
                 **({"id": i} if ids else {}))
            for i, size in enumerate(sizes)]


def reply(engine, payload):
    return engine.handle_line(json.dumps(payload).encode(), Session("test"))


def test_a_batch_reply_never_passes_max_reply_and_stops_running_calls():
    calls = []
    engine = make_engine(10000, calls)
    out = reply(engine, batch(3000, 3000, 3000, 3000, 10, 10))
    assert len(out) <= 10000
    responses = json.loads(out)
    assert [r["id"] for r in responses] == [0, 1, 2, 3, 4, 5]
    assert [len(r["result"]) for r in responses[:3]] == [3000] * 3
    for r in responses[3:]:
        assert r["error"]["code"] == -32003 and "10000" in r["error"]["message"]
        assert "socketmaxreply" in r["error"]["message"]
    assert "result dropped" in responses[3]["error"]["message"]
    assert "not run" in responses[4]["error"]["message"]
    assert calls == [3000, 3000, 3000, 3000]  # the 4th ran (its result was dropped), no more


def test_notifications_past_the_limit_still_run_and_add_nothing():
    calls = []
    engine = make_engine(5000, calls)
    payload = batch(4000, 4000) + batch(7, ids=False)
    responses = json.loads(reply(engine, payload))
    assert len(responses) == 2 and responses[1]["error"]["code"] == -32003
    assert calls == [4000, 4000, 7]


def test_the_stand_in_errors_fit_whatever_the_ids():
    calls = []
    engine = make_engine(20000, calls)
    payload = batch(*[1000] * 40)
    for i, item in enumerate(payload):
        item["id"] = "i" * 200 + str(i)
    out = reply(engine, payload)
    assert len(out) <= 20000
    assert len(json.loads(out)) == 40


def test_a_single_response_over_the_limit_is_replaced():
    engine = make_engine(1000, [])
    out = reply(engine, {"jsonrpc": "2.0", "method": "t.blob", "params": [5000], "id": 7})
    response = json.loads(out)
    assert response["id"] == 7 and response["error"]["code"] == -32003
    response = json.loads(reply(engine, {"jsonrpc": "2.0", "method": "t.blob", "params": [500], "id": 8}))
    assert response["result"] == "x" * 500


def test_reply_budget_keeps_room_for_the_stand_ins():
    budget = ReplyBudget(100, reserved=30)
    assert budget.take(60, 10)
    assert not budget.take(31, 10)  # 60 + 31 + 10 still reserved > 100
    assert budget.over and budget.used == 70
    assert not budget.take(0, 10)
    assert budget.used == 80 and budget.reserved == 0


def refusal_cpu_seconds(count):
    """CPU seconds to refuse ``count`` distinct patterns: the best of 5 tries.

    CPU time of this process, not wall time: a loaded machine delays the
    refusal, it does not make it cost more.
    """
    patterns = ["p%d.*" % i for i in range(count)]
    best = float("inf")
    for _ in range(5):
        session = Session("test")
        start = time.process_time()
        with pytest.raises(InvalidParams, match="64"):
            Subscribers().subscribe(session, patterns)
        best = min(best, time.process_time() - start)
        assert session.patterns == []
    return best


def test_refusing_too_many_patterns_takes_linear_time():
    # 8 times the patterns: linear work takes 8 times as long, quadratic 64
    # (it took 12 s for 60,000 patterns).  The figure itself is in
    # ``scripts/bench.py timings``.
    small, large = refusal_cpu_seconds(15000), refusal_cpu_seconds(120000)
    assert large < 32 * max(small, 1e-4), "15,000 patterns: %.4f s, 120,000: %.4f s" % (small, large)


def test_subscribe_takes_at_most_64_distinct_patterns():
    subs = Subscribers()
    session = Session("test")
    with pytest.raises(InvalidParams, match="64"):
        subs.subscribe(session, ["p%d.*" % i for i in range(60000)])
    assert session.patterns == [] and len(subs) == 0
    subs.subscribe(session, ["p%d.*" % i for i in range(63)] * 100 + ["log.*"])
    assert len(session.patterns) == 64 and len(subs) == 1
    subs.subscribe(session, ["log.*", "p0.*"])  # nothing new: still 64
    with pytest.raises(InvalidParams, match="64"):
        subs.subscribe(session, ["new.*"])
    with pytest.raises(InvalidParams, match="256"):
        Subscribers().subscribe(Session("other"), ["x" * 257])
    subs.publish("log.record", {"m": 1}, 1.0)
    subs.publish("worker.state", {}, 2.0)
    events, dropped = session.events.take()
    assert [e["name"] for e in events] == ["log.record"] and dropped == 0
    subs.unsubscribe(session, ["log.*"])
    assert len(session.patterns) == 63
    subs.unsubscribe(session)
    assert session.patterns == [] and len(subs) == 0


def test_glob_semantics_are_fnmatchcase():
    subs = Subscribers()
    session = Session("test")
    subs.subscribe(session, ["worker.[!x]?ate", "posix.sig*"])
    for name in ("worker.state", "posix.sigterm", "worker.xtate", "Worker.state", "posix.si"):
        subs.publish(name, {}, 0)
    assert [e["name"] for e in session.events.take()[0]] == ["worker.state", "posix.sigterm"]


def test_check_token_refuses_anything_but_the_token():
    engine = Engine(MethodRegistry(), token="s3cret")
    for given in ("\ud800", "s3cret\ud800", "\udfff" * 100000, "", "x" * 1000000, None, 1, [], {}):
        assert engine.check_token(given) is False
    assert engine.check_token("s3cret") is True


def test_integers_round_trip_up_to_4300_digits():
    for digits in ("9" * 4300, "-" + "9" * 4300):
        assert codec.loads(('{"id": %s}' % digits).encode())["id"] == int(digits)
    for digits in ("9" * 4301, "-" + "1" * 4301):
        with pytest.raises(codec.IntegerTooLong, match="4300"):
            codec.loads(('[%s]' % digits).encode())
    engine = Engine(MethodRegistry())
    out = json.loads(engine.handle_line(b'{"jsonrpc":"2.0","method":"x","id":' + b"7" * 4301 + b"}",
                                        Session("test")))
    assert out["error"]["code"] == -32700 and "4300" in out["error"]["message"] and out["id"] is None


def test_log_formatter_writes_one_line_per_record():
    assert escape_control("a\nb\r\x00\x1b\x7f\x85\u2028\ud800") == \
        "a\\nb\\x0d\\x00\\x1b\\x7f\\x85\\u2028\\ud800"
    formatter = LogFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "path %s", ("/x\nFORGED\x00",), None)
    assert formatter.format(record) == "WARNING path /x\\nFORGED\\x00"
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO forged[1]: line")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "oops %s", ("a\nb",),
                                   sys.exc_info())
    text = formatter.format(record)
    lines = text.split("\n")
    assert lines[0] == "ERROR oops a\\nb" and lines[1] == "Traceback (most recent call last):"
    assert "ValueError: bad" in lines
    assert "  2026-01-01 00:00:00,000 INFO forged[1]: line" in lines  # indented: no record


def test_escape_control_skips_only_text_without_a_character_to_escape():
    # Its shortcut returns printable text as it is: that is right only if no
    # character it escapes is printable, whatever the Unicode version.
    import re

    from gdaemon.logfiles import _CONTROL
    pattern = re.compile(_CONTROL)
    assert not [code for code in range(0x110000) if pattern.match(chr(code)) and chr(code).isprintable()]
    # Not printable, yet nothing to escape: a no-break space stays as it is.
    assert escape_control("a\xa0b") == "a\xa0b"
    assert escape_control("tab\there") == "tab\\x09here"


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# A frame whose f_lineno is None (a code object without a line table): what
# the hub monitor met in the 60,000-pattern subscribe, and died of.
_busy.__code__ = _busy.__code__.replace(co_linetable=b"")


def test_hub_monitor_survives_a_frame_without_line_number():
    import gevent
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("test.hubmonitor")
    logger.propagate = False
    logger.addHandler(Collect())
    monitor = HubMonitor(logger, max_blocking_time=0.05)
    gevent.sleep(0)  # a hub to watch
    threads_before = threading.active_count()
    monitor.start()
    try:
        for episode in (1, 2):
            _busy(0.4)  # blocks the hub: nothing else runs
            gevent.sleep(0.2)  # the ping is answered: the episode ends
            assert len(records) >= episode, records
        assert threading.active_count() > threads_before  # the monitor thread lives on
        assert "blocked" in records[-1]
    finally:
        monitor.stop()
