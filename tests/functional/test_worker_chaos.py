"""Chaos: RPC load while workers are SIGKILLed at random; RPC while workers crash-loop."""

import os
import random
import signal
import sys
import threading

from support import RawConnection, wait_until
from support.workers import live_children, wait_looping, write_daemon, zombies

LOOPING = 1
NAMES = ["p%d" % i for i in range(6)] + ["g0", "g1"]


def well_formed(response, request_id):
    """A JSON-RPC 2.0 response to request ``request_id``: a result, or an error object."""
    if not isinstance(response, dict) or response.get("jsonrpc") != "2.0":
        return False
    if response.get("id") != request_id:
        return False
    if "result" in response:
        return "error" not in response
    error = response.get("error")
    return (isinstance(error, dict) and isinstance(error.get("code"), int)
            and isinstance(error.get("message"), str))


def test_rpc_load_while_random_workers_are_killed(spawn, workdir):
    path = write_daemon(workdir, """
        for i in range(6):
            daemon.workers.install(Counter("p%d" % i), looptime=0.02, forever=True)
        daemon.workers.install(GCounter("g0"), looptime=0.02, forever=True)
        daemon.workers.install(GCounter("g1"), looptime=0.02, forever=True)
    """, config={"restartintensity": 100000})
    proc = spawn([sys.executable, path, "-f"])
    for name in NAMES:
        wait_looping(proc, name)

    stop = threading.Event()
    failures = []
    counts = {"requests": 0, "errors": 0, "kills": 0}
    lock = threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        try:
            with RawConnection(proc.address, timeout=10) as conn:
                while not stop.is_set():
                    name = rng.choice(NAMES)
                    method, params = rng.choice([
                        ("daemon.status", None),
                        ("worker.status", None),
                        ("worker.info", [name]),
                        ("worker.call", [name, "add", [1, 2]]),
                        ("worker.send", [name, "note", "x"]),
                        ("worker.call", [name, "stats"]),
                    ])
                    response = conn.call(method, params)
                    with lock:
                        counts["requests"] += 1
                        counts["errors"] += "error" in (response or {})
                    if not well_formed(response, conn._next_id):
                        failures.append((method, params, response))
                        return
                    if "error" in response and response["error"]["code"] != -32005:
                        failures.append((method, params, response))  # only "unavailable" may happen
                        return
                    if method == "worker.call" and params[1] == "add" and "result" in response:
                        if response["result"] != 3:
                            failures.append((method, params, response))
                            return
        except Exception as exc:  # reported below, with what was going on
            failures.append(("client", seed, repr(exc)))

    def killer():
        rng = random.Random(42)
        try:
            with RawConnection(proc.address, timeout=10) as conn:
                while not stop.is_set():
                    found = conn.result("worker.info", [rng.choice(NAMES[:6])])
                    if found["pid"]:
                        try:
                            os.kill(found["pid"], signal.SIGKILL)
                            counts["kills"] += 1
                        except ProcessLookupError:
                            pass
                    stop.wait(rng.uniform(0.01, 0.05))
        except Exception as exc:
            failures.append(("killer", repr(exc)))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=killer))
    for thread in threads:
        thread.start()
    try:
        stop.wait(6.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert not failures, failures[:5]
    assert counts["kills"] >= 50 and counts["requests"] >= 500, counts

    # Every worker back LOOPING, no zombie, one process per forked worker.
    # (The killer's last SIGKILL may have landed a moment ago: its worker is
    # LOOPING for the daemon and a zombie for the kernel until the daemon
    # hears of it.  Both must settle, within a deadline.)
    wait_until(lambda: zombies(proc.pid) == [], 5, message="every dead child reaped")
    wait_until(lambda: set(proc.result("worker.status").values()) == {LOOPING}, 10,
               message="all workers LOOPING again")
    assert zombies(proc.pid) == []
    wait_until(lambda: len(live_children(proc.pid)) == 6, 5, message="6 worker processes")
    infos = proc.result("worker.info")
    assert sum(i["restarts"] for i in infos) >= counts["kills"] // 2
    assert proc.result("test.ping") == "pong"
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_control_plane_answers_while_workers_crash_loop(spawn, workdir):
    # No backoff at all: ten workers dying and being forked again as fast as
    # the daemon can, the worst case for its event loop.
    path = write_daemon(workdir, """
        for i in range(10):
            daemon.workers.install(Crasher("c%d" % i), looptime=0.1, forever=True)
    """, config={"restartintensity": 1000000})
    proc = spawn([sys.executable, path, "-f"])
    wait_until(lambda: sum(i["restarts"] for i in proc.result("worker.info")) >= 50, 10,
               message="crash loop going")
    before = sum(i["restarts"] for i in proc.result("worker.info"))
    # Every call answered (within the connection's 10 s, a guard against a
    # stall); how fast is scripts/bench.py crashloop's figure (p99 < 10 ms).
    with RawConnection(proc.address, timeout=10) as conn:
        for _ in range(100):
            status = conn.result("daemon.status")
            assert set(status["workers"]) == {"c%d" % i for i in range(10)}
    # ... while the crash loop went on.
    wait_until(lambda: sum(i["restarts"] for i in proc.result("worker.info")) > before + 10, 5,
               message="more restarts")
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
