"""The log over RPC, on real daemons: ``daemon.logtail`` and ``log.record`` events.

The method is in docs/reference/rpc.rst (Methods), the event in
docs/reference/events.rst.

A daemon keeps its recent log lines in memory (``gdaemon.logring``) exactly
as its log file has them, serves them with ``daemon.logtail`` in ``-f`` and
``-d`` mode alike, and sends every record as a ``log.record`` event that
``events.subscribe(["log.*"])`` receives.  Lines of forked workers arrive
through ``daemon.logring.ingest(fields)``, which must not write to the file.
"""

import json
import os
import sys

import pytest

from support import RawConnection, pid_from_file, run, wait_until
from support.workers import write_daemon

#: RPC methods the test daemons add: log a line at a level; ingest a
#: forwarded record; count log.record events seen by a receiver that logs.
LOGGING_METHODS = '''
import logging

@daemon.rpc.method("test.log", params=[("level", str), ("text", str)], returns=bool)
def log_line(level, text):
    daemon.logger.log(getattr(logging, level), "%s", text)
    return True

@daemon.rpc.method("test.ingest", params=[("fields", dict)], returns=bool)
def ingest(fields):
    daemon.logring.ingest(fields)
    return True
'''

#: A receiver of log.record that logs itself, and an event tap that logs:
#: neither may make the daemon loop.
LOOPING_RECEIVER = '''
seen = []

@daemon.on("log.record")
def relog(sender, **record):
    seen.append(record["message"])
    sender.logger.warning("receiver saw %s", record["message"][:40])

def noisy_tap(name, data, when):
    if name == "log.record":
        logging.getLogger("tap").info("tap saw a record")

daemon.events.add_tap(noisy_tap)

@daemon.rpc.method("test.seen", returns=int)
def count_seen():
    return len(seen)
'''


def start(spawn, workdir, extra="", verbose=False, **config):
    path = write_daemon(workdir, LOGGING_METHODS + extra, config=config)
    return spawn([sys.executable, path, "-f"] + (["-v"] if verbose else []), cwd=workdir)


def subscribe(conn, patterns):
    response = conn.call("events.subscribe", [patterns])
    assert response["result"] is True, response


def next_event(conn, name, predicate=lambda data: True):
    """The next pushed event called ``name`` whose data satisfies ``predicate``."""
    while True:
        message = conn.read()
        assert message is not None, "connection closed"
        if message.get("method") == "event":
            event = message["params"]
            if event["name"] == name and predicate(event["data"]):
                return event


def test_logtail_returns_the_last_lines_oldest_first(spawn, workdir):
    proc = start(spawn, workdir)
    for i in range(5):
        proc.result("test.log", ["INFO", "line-%d" % i])
    lines = proc.result("daemon.logtail", [3])
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["line-2", "line-3", "line-4"]
    # Formatted like the log file: "DATE TIME LEVEL LOGGER[PID]: MESSAGE".
    assert " INFO gdaemon.worker-test[%d]: line-4" % proc.pid in lines[-1]
    default = proc.result("daemon.logtail")
    assert default[-1] == lines[-1] and len(default) <= 100
    assert any("ready on" in line for line in default)
    assert proc.result("daemon.logtail", {"lines": 0}) == []


@pytest.mark.parametrize("lines", [-1, 10001, "ten"])
def test_logtail_refuses_a_bad_count(spawn, workdir, lines):
    proc = start(spawn, workdir)
    response = proc.call("daemon.logtail", [lines])
    assert response["error"]["code"] == -32602, response
    assert "lines" in response["error"]["message"]
    assert len(proc.result("daemon.logtail", [10000])) >= 1


def test_logtail_is_bounded_and_keeps_the_newest(spawn, workdir):
    proc = start(spawn, workdir, extra='''
@daemon.rpc.method("test.flood", params=[("count", int)], returns=bool)
def flood(count):
    for i in range(count):
        daemon.logger.info("flood %d", i)
    return True
''')
    proc.result("test.flood", [10500])
    lines = proc.result("daemon.logtail", [10000])
    assert len(lines) == 10000
    assert lines[-1].endswith("flood 10499")
    assert lines[0].endswith("flood 500")


def test_daemon_mode_logtail_matches_the_log_file(workdir):
    path = write_daemon(workdir, LOGGING_METHODS)
    completed = run([sys.executable, path, "-d"], workdir, timeout=20)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    address = "unix://" + os.path.join(workdir, "daemon.sock")
    with RawConnection(address) as conn:
        assert conn.result("test.log", ["WARNING", "to-the-file"]) is True
        lines = conn.result("daemon.logtail", [2])
    with open(os.path.join(workdir, "daemon.log")) as f:
        file_lines = f.read().splitlines()
    assert lines[-1] in file_lines
    assert lines[-1].endswith("WARNING gdaemon.worker-test[%d]: to-the-file" % pid)
    assert file_lines[-len(lines):] == lines


def test_log_record_events_reach_subscribers(spawn, workdir):
    proc = start(spawn, workdir)
    with proc.connect() as conn:
        subscribe(conn, ["log.*"])
        with proc.connect() as other:
            other.result("test.log", ["WARNING", "watch-me"])
        event = next_event(conn, "log.record", lambda data: data["message"] == "watch-me")
    data = event["data"]
    assert data["level"] == "WARNING"
    assert data["logger"] == "gdaemon.worker-test"
    assert data["pid"] == proc.pid
    assert abs(data["time"] - event["time"]) < 5
    assert data["line"].endswith("WARNING gdaemon.worker-test[%d]: watch-me" % proc.pid)


def test_debug_records_only_with_verbose(spawn, workdir):
    quiet = start(spawn, workdir)
    quiet.result("test.log", ["DEBUG", "hidden-debug"])
    quiet.result("test.log", ["INFO", "shown-info"])
    lines = quiet.result("daemon.logtail")
    assert any(line.endswith("shown-info") for line in lines)
    assert not any("hidden-debug" in line for line in lines)

    loud_dir = os.path.join(workdir, "verbose")
    os.mkdir(loud_dir)
    loud = start(spawn, loud_dir, verbose=True)
    with loud.connect() as conn:
        subscribe(conn, ["log.record"])
        with loud.connect() as other:
            other.result("test.log", ["DEBUG", "shown-debug"])
        event = next_event(conn, "log.record", lambda data: data["message"] == "shown-debug")
    assert event["data"]["level"] == "DEBUG"
    assert any(line.endswith("DEBUG gdaemon.worker-test[%d]: shown-debug" % loud.pid)
               for line in loud.result("daemon.logtail"))


def test_receivers_and_taps_that_log_do_not_loop(spawn, workdir):
    proc = start(spawn, workdir, extra=LOOPING_RECEIVER)
    proc.result("test.log", ["WARNING", "first"])
    # The receiver's own warning joins the ring, but sends no event of its
    # own: one record in, one receiver call (not an endless chain).
    wait_until(lambda: any("receiver saw first" in line for line in proc.result("daemon.logtail")),
               5, message="the receiver's line in the ring")
    seen = proc.result("test.seen")
    proc.result("test.log", ["WARNING", "second"])
    assert proc.result("test.seen") == seen + 1
    lines = proc.result("daemon.logtail", [10000])
    assert sum("receiver saw" in line for line in lines) == seen + 1
    assert sum("tap saw a record" in line for line in lines) >= 1
    assert proc.result("test.ping") == "pong"


def test_ingest_adds_a_worker_line_and_an_event_but_not_to_the_file(workdir):
    path = write_daemon(workdir, LOGGING_METHODS)
    completed = run([sys.executable, path, "-d"], workdir, timeout=20)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    address = "unix://" + os.path.join(workdir, "daemon.sock")
    line = "2026-01-01 00:00:00,000 ERROR gdaemon.worker-test.alpha[4242]: from a worker"
    fields = {"level": "ERROR", "logger": "gdaemon.worker-test.alpha", "message": "from a worker",
              "pid": 4242, "time": 1767225600.0, "line": line}
    with RawConnection(address) as conn:
        subscribe(conn, ["log.record"])
        with RawConnection(address) as other:
            assert other.result("test.ingest", [fields]) is True
            # Below the daemon's level (INFO without -v): ignored.
            assert other.result("test.ingest", [dict(fields, level="DEBUG", line="debug-line")]) is True
            tail = other.result("daemon.logtail", [5])
        event = next_event(conn, "log.record", lambda data: data["pid"] == 4242)
    assert tail[-1] == line
    assert "debug-line" not in tail
    assert event["data"] == fields
    with open(os.path.join(workdir, "daemon.log")) as f:
        assert "from a worker" not in f.read()


def test_ctl_style_subscription_sees_lines_logged_after_the_tail(spawn, workdir):
    proc = start(spawn, workdir)
    with proc.connect() as conn:
        subscribe(conn, ["log.record"])
        before = conn.result("daemon.logtail", [1])
        with proc.connect() as other:
            other.result("test.log", ["ERROR", "after-the-tail"])
        event = next_event(conn, "log.record", lambda data: data["message"] == "after-the-tail")
    assert before and "after-the-tail" not in before[-1]
    assert json.loads(json.dumps(event))["data"]["level"] == "ERROR"
