"""Issue 8, worker side: what a message to a worker costs and how it is refused.

Forked and greenlet workers accept the same messages and refuse them the same
way: a message that can never fit (too large, nested too deeply) is ``-32602``
naming the limit; a channel that is full *now* is ``-32005``.  A pipelined
burst a forked worker takes (it drains its ring in parallel) is taken by a
greenlet worker too.
"""

import json
import sys
import threading

import pytest

from support import RawConnection, wait_until
from support.workers import wait_looping, write_daemon

pytestmark = pytest.mark.timeout(60)

WORKERS = """
daemon.workers.install(Counter("forked"), looptime=0.5, forever=True)
daemon.workers.install(GCounter("green"), looptime=0.5, forever=True)
"""


@pytest.fixture
def proc(spawn, workdir):
    script = write_daemon(workdir, WORKERS)
    proc = spawn([sys.executable, script, "-f"])
    wait_looping(proc, "forked")
    wait_looping(proc, "green")
    return proc


def error_of(response):
    assert "error" in response, response
    return response["error"]


@pytest.mark.parametrize("name", ["forked", "green"])
def test_a_message_that_can_never_fit_is_invalid_params_naming_the_limit(proc, name):
    error = error_of(proc.call("worker.send", [name, "note", "x" * 300_000]))
    assert error["code"] == -32602
    assert "payload" in error["message"] and "262140" in error["message"], error
    error = error_of(proc.call("worker.call", [name, "add", ["x" * 300_000]]))
    assert error["code"] == -32602 and "params" in error["message"], error
    # Nothing was delivered, the worker is fine, and a message that fits goes through.
    assert proc.result("worker.send", [name, "note", "small"]) > 0
    assert proc.result("worker.call", [name, "add", [2, 3]]) == 5


@pytest.mark.parametrize("name", ["forked", "green"])
def test_a_deeply_nested_payload_is_refused_without_a_traceback(proc, name):
    deep = "[" * 900 + "]" * 900
    line = '{"jsonrpc":"2.0","id":1,"method":"worker.send","params":["%s","note",%s]}\n' % (name, deep)
    with RawConnection(proc.address) as conn:
        for _ in range(20):   # a client repeating it must not flood the log
            conn.send_raw(line.encode())
            response = conn.read()
            assert response["error"]["code"] in (-32602, -32600), response
        assert conn.result("test.ping") == "pong"
    output = proc.output()
    assert "Traceback" not in output and "RecursionError" not in output, output[-3000:]


def check_burst(proc, name, responses):
    """A greenlet worker took every message; a forked one most; the rest is only -32005."""
    count = len(responses)
    codes = [r["error"]["code"] for r in responses if "error" in r]
    assert set(codes) <= {-32005}, set(codes)   # only "full now", never another error
    if name == "green":
        assert codes == [], "%d of %d refused" % (len(codes), count)
    else:
        assert len(codes) <= count // 2, "%d of %d refused" % (len(codes), count)
    # The worker got the accepted ones.
    accepted = count - len(codes)
    wait_until(lambda: proc.result("worker.call", [name, "stats"])["notes"] >= accepted, 20,
               message="notes delivered")


@pytest.mark.parametrize("name", ["forked", "green"])
def test_a_burst_in_one_batch_is_taken(proc, name):
    # One batch runs without the connection yielding in between: 1000 sends of
    # ~420 bytes are 1.6 times what one channel holds at once.
    count, payload = 1000, "p" * 400
    batch = [{"jsonrpc": "2.0", "id": i, "method": "worker.send", "params": [name, "note", payload]}
             for i in range(count)]
    with RawConnection(proc.address, timeout=30) as conn:
        conn.send_raw(json.dumps(batch).encode() + b"\n")
        responses = conn.read()
    assert len(responses) == count
    check_burst(proc, name, responses)


@pytest.mark.parametrize("name", ["forked", "green"])
def test_a_pipelined_burst_is_taken(proc, name):
    count, payload = 300, "p" * 20000   # 6 MB in all: 23 times what one channel holds at once
    lines = b"".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "worker.send",
                                 "params": [name, "note", payload]}).encode() + b"\n"
                     for i in range(count))
    with RawConnection(proc.address, timeout=30) as conn:
        # Write while reading, as a pipelining client does (a client that never
        # reads its replies is eventually dropped).
        sender = threading.Thread(target=conn.send_raw, args=(lines,))
        sender.start()
        responses = [conn.read() for _ in range(count)]
        sender.join(10)
    check_burst(proc, name, responses)


FLOODER = '''
class Flooder(Counter):
    @exposed
    def flood(self, lines):
        for i in range(lines):
            self.logger.warning("flood %d %s", i, "x" * 2000)
        return "done"
'''


def test_a_log_flood_never_takes_the_room_of_a_reply(spawn, workdir):
    script = write_daemon(workdir, 'daemon.workers.install(Flooder("f"), looptime=0.5, forever=True)',
                          extra=FLOODER, name="flood.py")
    proc = spawn([sys.executable, script, "-f"])
    wait_looping(proc, "f")
    # 1,000 lines of 2 kB: eight times what the channel to the daemon holds.
    for _ in range(3):
        assert proc.result("worker.call", ["f", "flood", [1000]]) == "done"
    assert proc.result("worker.call", ["f", "add", [1, 2]]) == 3
    # Forwarding is best effort: some of the lines reached the daemon's log ring.
    wait_until(lambda: any("flood" in line for line in proc.result("daemon.logtail", [100])), 10,
               message="forwarded lines")
