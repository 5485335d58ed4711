"""gdaemon.ratelimit.RateLimitedLog: one line per kind per interval, then a count (issue 8)."""

import logging
import time

import gevent
import pytest

from gdaemon.ratelimit import RateLimitedLog


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelno, record.getMessage(), record.exc_info))


@pytest.fixture
def logger():
    log = logging.getLogger("test.ratelimit.%d" % id(object()))
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = Capture()
    log.addHandler(handler)
    log.lines = handler.lines
    yield log
    log.removeHandler(handler)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.01)


@pytest.mark.timeout(10)
def test_first_line_at_once_then_one_summary_with_the_count(logger):
    limiter = RateLimitedLog(logger, interval=0.3)
    assert limiter.log("parse", logging.INFO, "bad request from %s", "peer-0") is True
    for i in range(1, 500):
        assert limiter.log("parse", logging.INFO, "bad request from %s", "peer-%d" % i) is False
    assert logger.lines == [(logging.INFO, "bad request from peer-0", None)]
    assert limiter.suppressed("parse") == 499
    wait_for(lambda: len(logger.lines) == 2)
    level, text, exc_info = logger.lines[1]
    assert level == logging.INFO and exc_info is None
    assert text.startswith("bad request from peer-499") and "499 similar lines" in text
    assert limiter.suppressed("parse") == 0


@pytest.mark.timeout(10)
def test_kinds_are_limited_separately(logger):
    limiter = RateLimitedLog(logger, interval=30)
    for _ in range(10):
        limiter.log("a", logging.WARNING, "kind a")
        limiter.log("b", logging.INFO, "kind b")
    assert [t for _, t, _ in logger.lines] == ["kind a", "kind b"]
    limiter.flush()
    assert [t for _, t, _ in logger.lines[2:]] == [
        "kind a (and 9 similar lines in the last 30s)", "kind b (and 9 similar lines in the last 30s)"]
    assert logger.lines[2][0] == logging.WARNING
    limiter.close()


@pytest.mark.timeout(10)
def test_a_steady_flood_gives_about_one_line_per_interval(logger):
    interval = 0.2
    limiter = RateLimitedLog(logger, interval=interval)
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < 1.0:
        limiter.log("flood", logging.INFO, "flood")
        sent += 1
        gevent.sleep(0.001)
    limiter.flush()
    counted = 1 + sum(int(t.split("(and ")[1].split()[0]) for _, t, _ in logger.lines if "(and " in t)
    assert counted == sent  # every line is either written or counted
    assert len(logger.lines) <= 1.0 / interval + 3, logger.lines


@pytest.mark.timeout(10)
def test_after_a_quiet_interval_the_next_line_is_written_at_once(logger):
    limiter = RateLimitedLog(logger, interval=0.1)
    assert limiter.log("k", logging.INFO, "one")
    # The window opened when "one" was logged, at the latest now (taken
    # before the call, a pause of this process in between could end the
    # wait inside the window).
    window_end = time.monotonic() + 0.1
    wait_for(lambda: time.monotonic() > window_end)  # the window is over
    assert limiter.log("k", logging.INFO, "two")
    assert [t for _, t, _ in logger.lines] == ["one", "two"]


def test_disabled_levels_cost_nothing(logger):
    logger.setLevel(logging.WARNING)
    limiter = RateLimitedLog(logger, interval=10)
    assert limiter.log("k", logging.INFO, "hidden") is False
    assert limiter.suppressed("k") == 0 and logger.lines == []


def test_many_kinds_do_not_grow_without_bound(logger):
    limiter = RateLimitedLog(logger, interval=60)
    for i in range(5 * RateLimitedLog.max_kinds):
        limiter.log(("kind", i), logging.INFO, "line %d", i)
    assert len(limiter._kinds) <= RateLimitedLog.max_kinds + 1
    limiter.close()


def test_interval_must_be_positive(logger):
    with pytest.raises(ValueError):
        RateLimitedLog(logger, interval=0)
