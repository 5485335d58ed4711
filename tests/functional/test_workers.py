"""Workers in real daemons: forked and greenlet workers, their RPC methods, the watchdog.

Each test writes a daemon script (tests/support/workers.py) into its work
directory, runs it in the foreground and checks from outside: RPC answers,
marker files written by the workers, events recorded by the daemon, /proc.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from support import gone, wait_gone, wait_until
from support.workers import (cpu_seconds, events, fd_count, fd_targets, forkserver_pids, info, kinds,
                             live_children, marks, standby_pids, unix_socket_inode, wait_looping,
                             wait_status, write_daemon, zombies)

SPINUP, LOOPING, PAUSED, SPINDOWN, RESTARTING, STOPPED = range(6)

INFO_KEYS = {"name", "kind", "pid", "status", "status_name", "looptime", "forever", "restarts",
             "loops", "started_at", "last_exit", "rss", "cpu", "recycles", "recycle_reason"}


@pytest.fixture
def start(spawn, workdir):
    """``start(install, **kw)``: write a worker daemon (support.workers) and run it with -f.

    At teardown a daemon still running gets SIGTERM first, so that it reaps its
    own workers (orphans wait for a slow init); the ``spawn`` fixture then
    kills whatever is left.
    """
    started = []

    def _start(install, **kw):
        path = write_daemon(workdir, install, **kw)
        proc = spawn([sys.executable, path, "-f"])
        started.append(proc)
        return proc

    yield _start
    stop_gracefully(started)


def stop_gracefully(procs):
    for proc in procs:
        if proc.proc.poll() is None:
            proc.remember_children()
            proc.signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass  # the spawn fixture SIGKILLs it and says nothing: the test failed already


def error_code(response):
    assert "error" in response, response
    return response["error"]["code"]


# -- the worker.* RPC methods -------------------------------------------------------

def test_worker_rpc_methods(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("beta"), looptime=0.5)
    """)
    alpha = wait_looping(proc, "alpha")
    beta = wait_looping(proc, "beta")
    daemon_pid = proc.result("daemon.status")["pid"]

    assert proc.result("worker.list") == ["alpha", "beta"]
    assert proc.result("worker.status") == {"alpha": LOOPING, "beta": LOOPING}
    assert proc.result("worker.status", ["alpha"]) == LOOPING
    assert proc.result("daemon.status")["workers"] == {"alpha": LOOPING, "beta": LOOPING}

    assert set(alpha) == INFO_KEYS
    assert alpha["kind"] == "process" and alpha["pid"] not in (None, daemon_pid)
    assert alpha["status_name"] == "LOOPING"
    assert alpha["looptime"] == 0.05 and alpha["forever"] is True
    assert alpha["restarts"] == 0 and alpha["last_exit"] is None
    assert alpha["started_at"] <= time.time()
    assert beta["kind"] == "greenlet" and beta["pid"] == daemon_pid and beta["forever"] is False
    # rss and cpu: the worker's own process (the daemon's for a greenlet worker).
    assert alpha["rss"] > 1_000_000 and alpha["cpu"] >= 0
    assert beta["rss"] > 1_000_000 and beta["cpu"] >= 0
    listed = proc.result("worker.info")
    assert [i["name"] for i in listed] == ["alpha", "beta"]
    wait_until(lambda: info(proc, "alpha")["loops"] >= 3, 5, message="alpha looping")

    # worker.call: positional and named params, errors.
    assert proc.result("worker.call", ["alpha", "add", [2, 3]]) == 5
    assert proc.result("worker.call", {"name": "alpha", "method": "add", "params": {"a": 1, "b": 4}}) == 5
    stats = proc.result("worker.call", ["alpha", "stats"])
    assert stats["pid"] == alpha["pid"] and stats["count"] >= 1
    assert proc.result("worker.call", ["beta", "stats", {"verbose": True}])["verbose"] is True
    assert error_code(proc.call("worker.call", ["alpha", "nope"])) == -32601
    assert error_code(proc.call("worker.call", ["alpha", "_secret"])) == -32601
    assert error_code(proc.call("worker.call", ["alpha", "not_exposed"])) == -32601
    assert error_code(proc.call("worker.call", ["alpha", "add", [1, 2, 3]])) == -32602
    assert error_code(proc.call("worker.call", ["alpha", "add", "x"])) == -32602
    assert error_code(proc.call("worker.call", ["alpha", "boom"])) == -32603
    refused = proc.call("worker.call", ["alpha", "refuse"])
    assert refused["error"] == {"code": -32050, "message": "refused", "data": {"why": "testing"}}
    assert len(proc.result("worker.call", ["alpha", "big", [100000]])) == 100000
    assert error_code(proc.call("worker.call", ["alpha", "big", [300000]])) == -32603
    # The worker survived all of that.
    assert info(proc, "alpha")["pid"] == alpha["pid"]

    # worker.send: bytes written, received as daemon.worker.<command>.
    written = proc.result("worker.send", ["alpha", "note", {"k": [1, 2]}])
    assert isinstance(written, int) and written > 0
    assert proc.result("worker.send", {"name": "beta", "command": "note"}) > 0
    wait_until(lambda: 'note {"k": [1, 2]}' in marks(workdir, "alpha"), 5, message="note")
    wait_until(lambda: "note null" in marks(workdir, "beta"), 5, message="note on beta")
    # ... and the worker's self.send() comes back as worker.message.
    wait_until(lambda: [e for e in events(workdir, "worker.message")
                        if e["data"] == {"name": "alpha", "command": "noted", "payload": {"k": [1, 2]}}],
               5, message="worker.message")

    # Errors: unknown worker, bad params.
    for method, params in [("worker.status", ["zeta"]), ("worker.info", ["zeta"]),
                           ("worker.pause", ["zeta"]), ("worker.resume", ["zeta"]),
                           ("worker.restart", ["zeta"]), ("worker.send", ["zeta", "x"]),
                           ("worker.call", ["zeta", "stats"])]:
        assert error_code(proc.call(method, params)) == -32002, method
    assert error_code(proc.call("worker.status", [42])) == -32602
    assert error_code(proc.call("worker.restart")) == -32602
    assert error_code(proc.call("worker.send", ["alpha", ""])) == -32602
    assert error_code(proc.call("worker.send", ["alpha", 5])) == -32602
    assert "worker.call" in proc.result("system.listMethods")
    assert proc.result("system.methodSignature", ["worker.send"]) == [["int", "string", "string", "any"]]


def test_events_of_a_worker_are_pushed_to_subscribers(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)
    """)
    first = wait_looping(proc, "alpha")
    with proc.connect() as conn:
        assert conn.result("events.subscribe", [["worker.*"]]) is True
        os.kill(first["pid"], signal.SIGKILL)
        seen = []
        while not any(e["name"] == "worker.state" and e["data"]["status"] == LOOPING for e in seen):
            message = conn.read()
            assert message is not None
            # The first instance's own LOOPING event may still be on its way
            # (the daemon's watchdog emits it; worker.info reads shared memory).
            if seen or message["params"]["name"] != "worker.state":
                seen.append(message["params"])
    names = [e["name"] for e in seen]
    assert names[:2] == ["worker.exited", "worker.failed"], seen
    assert seen[0]["data"] == {"name": "alpha", "pid": first["pid"], "exitcode": -9}
    assert seen[1]["data"] == {"name": "alpha", "reason": "killed by SIGKILL"}
    assert "worker.spawned" in names and "worker.respawned" in names
    states = [e["data"]["status_name"] for e in seen if e["name"] == "worker.state"]
    assert states == ["RESTARTING", "SPINUP", "LOOPING"]


# -- pause / resume -------------------------------------------------------------------

def test_pause_reaches_a_long_looptime_worker_at_once_and_stops_its_loop(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("slow"), looptime=3600, forever=True)
        daemon.workers.install(Counter("fast"), looptime=0.02, forever=True)
        daemon.workers.install(GCounter("green"), looptime=0.02, forever=True)
    """)
    for name in ("slow", "fast", "green"):
        wait_looping(proc, name)
    wait_until(lambda: "loop 1 %d" % info(proc, "slow")["pid"] in marks(workdir, "slow"), 5)

    # A worker waiting out an hour-long looptime gets the command at once
    # (in milliseconds: scripts/bench.py workers, "pause acknowledged").
    assert proc.result("worker.pause", ["slow"]) is True
    wait_status(proc, "slow", PAUSED, timeout=10)
    assert proc.result("worker.status", ["fast"]) == LOOPING

    # All of them: no loop runs while paused.
    assert proc.result("worker.pause") is True
    for name in ("fast", "green"):
        wait_status(proc, name, PAUSED, timeout=2)
    frozen = {name: info(proc, name)["loops"] for name in ("fast", "green")}
    lines = {name: len(marks(workdir, name)) for name in ("fast", "green")}
    end = time.monotonic() + 0.5  # 25 looptimes
    while time.monotonic() < end:
        assert {name: info(proc, name)["loops"] for name in frozen} == frozen
        time.sleep(0.05)
    assert {name: len(marks(workdir, name)) for name in lines} == lines

    assert proc.result("worker.resume", ["fast"]) is True
    wait_until(lambda: info(proc, "fast")["loops"] > frozen["fast"] + 3, 5, message="fast resumed")
    assert info(proc, "green")["loops"] == frozen["green"]
    assert proc.result("worker.resume") is True
    wait_until(lambda: info(proc, "green")["loops"] > frozen["green"] + 3, 5, message="green resumed")
    assert proc.result("worker.status") == {"slow": LOOPING, "fast": LOOPING, "green": LOOPING}
    states = [(e["data"]["name"], e["data"]["status_name"]) for e in events(workdir, "worker.state")]
    assert ("slow", "PAUSED") in states and ("green", "PAUSED") in states


# -- the watchdog ---------------------------------------------------------------------

def test_sigkilled_forever_worker_is_respawned(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)
    """)
    first = wait_looping(proc, "alpha")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_looping(proc, "alpha", other_than=first["pid"])
    assert second["restarts"] == 1 and second["last_exit"] == -signal.SIGKILL
    assert gone(first["pid"])
    assert zombies(proc.pid) == []
    names = [e["name"] for e in events(workdir)]
    for name in ("worker.spawned", "worker.exited", "worker.respawned", "posix.sigchld"):
        assert name in names
    # The new instance ran spinup() afresh; the old one never ran spindown().
    lines = marks(workdir, "alpha")
    assert "spinup %d" % second["pid"] in lines
    assert "spindown %d" % first["pid"] not in lines


def test_crash_looping_worker_backs_off(start, workdir):
    proc = start("""
        daemon.workers.install(Crasher("crash"), looptime=0.1, forever=True)
        daemon.workers.install(GCrasher("gcrash"), looptime=0.1, forever=True)
        daemon.workers.install(Counter("ok"), looptime=0.5, forever=True)
    """, config={"restartintensity": 2, "restartperiod": 10})
    wait_until(lambda: info(proc, "crash")["restarts"] >= 3, 5, message="crash restarts")
    before = cpu_seconds(proc.pid)
    seen = set()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        seen.add(info(proc, "crash")["status_name"])
        time.sleep(0.01)
    used = cpu_seconds(proc.pid) - before
    assert "RESTARTING" in seen
    # 2 at once, then 0.1 + 0.2 + 0.4 + 0.8 + 1.6 ...: a handful, not hundreds.
    # (8 within 3 s; on a loaded machine the window above may close seconds
    # later, and each doubling adds one: 12 take some 80 s.)
    for name in ("crash", "gcrash"):
        found = info(proc, name)
        assert 3 <= found["restarts"] <= 12, found
        assert found["last_exit"] == 1
    assert used < 1.0, "daemon used %.2fs of CPU in 1.5s" % used
    assert proc.result("worker.status", ["ok"]) == LOOPING
    failed = [e["data"] for e in events(workdir, "worker.failed") if e["data"]["name"] == "crash"]
    assert failed and failed[0]["reason"] == "exited with code 1"


def test_death_of_a_non_forever_worker_stops_the_daemon_with_exit_1(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("mortal"), looptime=0.05)
        daemon.workers.install(Counter("other"), looptime=0.05, forever=True)
    """)
    mortal = wait_looping(proc, "mortal")
    other = wait_looping(proc, "other")
    os.kill(mortal["pid"], signal.SIGKILL)
    assert proc.wait(15) == 1
    # The daemon stopped gracefully: the other worker spun down.
    assert "spindown %d" % other["pid"] in marks(workdir, "other")
    assert gone(other["pid"])
    assert not os.path.exists(os.path.join(workdir, "daemon.sock"))


def test_hung_worker_is_killed_and_replaced(start, workdir):
    proc = start("""
        daemon.workers.install(Hanger("hang"), looptime=0.05, forever=True, timeout=0.5)
        daemon.workers.install(GHanger("ghang"), looptime=0.05, forever=True, timeout=0.5)
    """)
    first = wait_looping(proc, "hang")
    wait_until(lambda: "hang %d" % first["pid"] in marks(workdir, "hang"), 5, message="hang")
    second = wait_looping(proc, "hang", other_than=first["pid"], timeout=5)
    assert second["last_exit"] == -signal.SIGKILL
    failed = [e["data"] for e in events(workdir, "worker.failed") if e["data"]["name"] == "hang"]
    assert failed and "heartbeat" in failed[0]["reason"]
    assert "worker 'hang'" in proc.output() and "heartbeat stalled" in proc.output()
    # A greenlet worker that hangs is killed (GreenletExit) and respawned the same way.
    found = wait_until(lambda: info(proc, "ghang")["restarts"] >= 1 and info(proc, "ghang"), 5,
                       message="greenlet worker replaced")
    assert found["last_exit"] == -signal.SIGKILL
    assert marks(workdir, "ghang")[:3] == ["spinup", "hang", "spinup"]
    assert proc.result("test.ping") == "pong"


def test_long_looptime_worker_with_timeout_is_not_killed(start, workdir):
    # timeout bounds how long the heartbeat may stall, not the looptime: a
    # worker waiting for its next run keeps beating.
    proc = start("""
        daemon.workers.install(Counter("patient"), looptime=10, forever=True, timeout=0.3)
        daemon.workers.install(GCounter("gpatient"), looptime=10, forever=True, timeout=0.3)
    """)
    first = wait_looping(proc, "patient")
    wait_looping(proc, "gpatient")
    proc.result("worker.pause", ["gpatient"])
    time.sleep(1.2)  # four timeouts; nothing to wait for: we check nothing happened
    assert info(proc, "patient")["pid"] == first["pid"]
    assert info(proc, "patient")["restarts"] == 0
    assert info(proc, "gpatient")["restarts"] == 0
    assert events(workdir, "worker.failed") == []


# -- stopping -------------------------------------------------------------------------

def test_sigterm_runs_every_spindown_and_exits_0(start, workdir):
    proc = start("""
        for i in range(3):
            daemon.workers.install(Counter("p%d" % i), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("g"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("paused"), looptime=0.05)
    """)
    pids = {name: wait_looping(proc, name)["pid"] for name in ("p0", "p1", "p2", "g", "paused")}
    standby = wait_until(lambda: standby_pids(proc.pid), 20, message="a standby process")
    proc.result("worker.pause", ["paused"])
    wait_status(proc, "paused", PAUSED)
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    for name, pid in pids.items():
        assert "spindown %d" % pid in marks(workdir, name), name
        if name != "g":
            assert gone(pid)
    assert gone(standby[0])
    states = [(e["data"]["name"], e["data"]["status_name"]) for e in events(workdir, "worker.state")]
    for name in pids:
        assert (name, "SPINDOWN") in states and (name, "STOPPED") in states


def test_sigkill_of_the_daemon_leaves_no_worker_alive(start, workdir):
    proc = start("""
        for i in range(4):
            daemon.workers.install(Counter("p%d" % i), looptime=0.05, forever=True)
    """)
    pids = [wait_looping(proc, "p%d" % i)["pid"] for i in range(4)]
    pids += wait_until(lambda: standby_pids(proc.pid), 20, message="a standby process")
    proc.signal(signal.SIGKILL)
    proc.wait(5)
    wait_gone(pids, 2.0)


def test_workers_that_ignore_stop_are_killed_after_shutdowntimeout(start, workdir):
    proc = start("""
        daemon.workers.install(Stubborn("stubborn"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("fine"), looptime=0.05, forever=True)
    """, extra='''
        class Stubborn(Worker):
            def loop(self):
                time.sleep(3600)
    ''', config={"shutdowntimeout": 1})
    stubborn = wait_looping(proc, "stubborn")
    fine = wait_looping(proc, "fine")
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert gone(stubborn["pid"]) and gone(fine["pid"])
    assert "spindown %d" % fine["pid"] in marks(workdir, "fine")


# -- resources --------------------------------------------------------------------------

def test_forked_worker_holds_no_listening_socket_nor_other_channels(start, workdir):
    proc = start("""
        for i in range(3):
            daemon.workers.install(Counter("p%d" % i), looptime=0.05, forever=True)
    """)
    pids = [wait_looping(proc, "p%d" % i)["pid"] for i in range(3)]
    # Respawn one (from the standby), so that processes forked at different
    # times are compared; and check the next standby too.
    os.kill(pids[1], signal.SIGKILL)
    pids[1] = wait_looping(proc, "p1", other_than=pids[1])["pid"]
    pids += wait_until(lambda: standby_pids(proc.pid), 20, message="a standby process")
    listener = unix_socket_inode(os.path.join(workdir, "daemon.sock"))
    assert listener is not None
    daemon_fds = fd_targets(proc.pid)
    assert "socket:[%d]" % listener in daemon_fds.values()
    inherited = kinds(fd_targets(os.getpid()), "pipe")  # pipes the test runner passed down
    daemon_pipes = kinds(daemon_fds, "pipe") - inherited
    worker_pipes = []
    for pid in pids:
        targets = fd_targets(pid)
        assert "socket:[%d]" % listener not in targets.values()
        assert not any(t.endswith("daemon.pid") for t in targets.values())
        pipes = kinds(targets, "pipe") - inherited
        assert len(pipes) == 2 and pipes <= daemon_pipes  # its own channel, shared with the daemon
        worker_pipes.append(pipes)
    for i, pipes in enumerate(worker_pipes):
        for other in worker_pipes[i + 1:]:
            assert not (pipes & other)


def test_no_fd_leak_nor_shm_entry_after_100_respawns(start, workdir):
    shm_before = set(os.listdir("/dev/shm"))
    proc = start("""
        daemon.workers.install(Counter("victim"), looptime=0.5, forever=True)
        daemon.workers.install(GCounter("green"), looptime=0.5, forever=True)
    """, config={"restartintensity": 1000})
    pid = wait_looping(proc, "victim")["pid"]
    wait_looping(proc, "green")
    with proc.connect() as conn:
        conn.result("worker.info", ["victim"])
        # The daemon at rest: its worker and the standby forked after it (until
        # the standby has taken its name, the daemon may still hold the pipes
        # of the fork, or not yet hold the standby's channel).
        before = wait_until(lambda: standby_pids(proc.pid) and non_sockets(proc.pid), 20,
                            message="a standby")
        for _ in range(100):
            os.kill(pid, signal.SIGKILL)
            while True:
                found = conn.result("worker.info", ["victim"])
                if found["pid"] != pid and found["status"] == LOOPING:
                    break
                time.sleep(0.002)
            pid = found["pid"]
        assert found["restarts"] == 100
        assert conn.result("worker.restart", ["green"]) is True
        # The same descriptors, once the standby used by the last respawn is
        # replaced (forked in the background: on a loaded machine, seconds later).
        wait_until(lambda: standby_pids(proc.pid) and non_sockets(proc.pid) == before, 20,
                   message="same fds as before (%r)" % (before,))
        # Sockets: the listener, our connection (others close as their clients
        # leave) and the fork server's, where there is one.
        wait_until(lambda: fd_count(proc.pid) == len(before) + 2 + len(forkserver_pids(proc.pid)), 20,
                   message="fd count back (%r)" % (fd_targets(proc.pid),))
    # A standby forked a moment ago has not taken its name yet: wait for it.
    wait_until(lambda: zombies(proc.pid) == [] and len(live_children(proc.pid)) == 1, 20,
               message="one worker process, no zombie")
    assert set(os.listdir("/dev/shm")) - shm_before == set()


def test_standby_process(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("green"), looptime=0.05, forever=True)
    """)
    first = wait_looping(proc, "alpha")
    standby = wait_until(lambda: standby_pids(proc.pid), 20, message="a standby process")[0]
    # A respawn activates the standby: the new instance is that very process.
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_looping(proc, "alpha", other_than=first["pid"])
    assert second["pid"] == standby
    assert "spinup %d" % standby in marks(workdir, "alpha")
    assert proc.result("worker.call", ["alpha", "stats"])["pid"] == standby
    # ... which took back the daemon's process name, and is replaced.
    assert standby not in standby_pids(proc.pid)
    replacement = wait_until(lambda: standby_pids(proc.pid), 5, message="a new standby")[0]
    # A standby killed by someone is replaced too.
    os.kill(replacement, signal.SIGKILL)
    wait_until(lambda: standby_pids(proc.pid) and standby_pids(proc.pid) != [replacement], 5,
               message="standby replaced")
    wait_until(lambda: zombies(proc.pid) == [], 5, message="the killed standby reaped")
    assert info(proc, "alpha")["pid"] == standby


def test_install_while_running(start, workdir):
    proc = start("""
        @daemon.rpc.method("test.install", params=[("name", str), ("green", bool)], returns=bool)
        def add(name, green):
            worker = GCounter(name) if green else Counter(name)
            daemon.workers.install(worker, looptime=0.05, forever=True, timeout=1)
            return True
    """)
    assert proc.result("worker.list") == []
    assert proc.result("test.install", ["late", False]) is True
    assert proc.result("test.install", ["glate", True]) is True
    assert error_code(proc.call("test.install", ["late", True])) == -32603  # installed already
    first = wait_looping(proc, "late")
    wait_looping(proc, "glate")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_looping(proc, "late", other_than=first["pid"])
    assert second["restarts"] == 1
    assert proc.result("worker.list") == ["late", "glate"]


def test_first_worker_installed_while_running_is_spawned(start, workdir):
    """A daemon that had no worker when it started makes its worker manager at the
    first install (not at start-up): that worker is spawned and respawned all the same."""
    proc = start("""
        @daemon.rpc.method("test.install", params=[("name", str)], returns=bool)
        def add(name):
            daemon.workers.install(Counter(name), looptime=0.05, forever=True, timeout=1)
            return True
    """)
    assert proc.result("daemon.status")["workers"] == {}
    assert proc.result("test.install", ["late"]) is True
    first = wait_looping(proc, "late")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_looping(proc, "late", other_than=first["pid"])
    assert second["restarts"] == 1
    assert proc.result("daemon.status")["workers"] == {"late": LOOPING}


def test_no_standby_without_forever_processes(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("mortal"), looptime=0.05)
        daemon.workers.install(GCounter("green"), looptime=0.05, forever=True)
    """)
    wait_looping(proc, "mortal")
    wait_looping(proc, "green")
    assert proc.result("worker.restart", ["mortal"]) is True  # forked on demand
    assert standby_pids(proc.pid) == []
    assert len(live_children(proc.pid, standby=True)) == 1


def non_sockets(pid):
    """The sorted fd targets of ``pid`` but its sockets, pipe inodes masked
    (each instance has a new channel, hence new pipes)."""
    return sorted("pipe" if t.startswith("pipe:") else t
                  for t in fd_targets(pid).values() if not t.startswith("socket:"))


# -- restart and reload ------------------------------------------------------------------

def test_worker_restart(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("alpha"), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("beta"), looptime=0.05)
        daemon.workers.install(Crasher("crash"), looptime=0.05, forever=True)
    """, config={"restartintensity": 1, "restartperiod": 30})
    first = wait_looping(proc, "alpha")
    wait_looping(proc, "beta")
    assert proc.result("worker.restart", ["alpha"]) is True
    # true means: the new instance is LOOPING already.
    second = info(proc, "alpha")
    assert second["status"] == LOOPING and second["pid"] != first["pid"]
    assert second["last_exit"] == 0 and second["restarts"] == 1
    assert "spindown %d" % first["pid"] in marks(workdir, "alpha")
    # A greenlet worker, even a non-forever one, restarts without stopping the daemon.
    assert proc.result("worker.restart", ["beta"]) is True
    assert info(proc, "beta")["status"] == LOOPING
    assert marks(workdir, "beta").count("spinup %d" % proc.pid) == 2
    # worker.call / worker.send / worker.pause on a dead worker: -32005.
    for method, params in [("worker.call", ["crash", "stats"]), ("worker.send", ["crash", "note"]),
                           ("worker.pause", ["crash"])]:
        assert error_code(while_down(proc, "crash", method, params)) == -32005, method
    assert proc.result("daemon.status")["workers"]["alpha"] == LOOPING


def while_down(proc, name, method, params):
    """The response to a request made while worker ``name`` was RESTARTING
    (before and after it, with no respawn in between)."""
    for _ in range(200):
        before = info(proc, name)
        if before["status"] != RESTARTING:
            time.sleep(0.005)
            continue
        response = proc.call(method, params)
        after = info(proc, name)
        if after["status"] == RESTARTING and after["restarts"] == before["restarts"]:
            return response
    raise AssertionError("worker %r never stayed down long enough" % name)


def test_sighup_restarts_workers_one_at_a_time(start, workdir):
    proc = start("""
        for i in range(3):
            daemon.workers.install(Counter("p%d" % i), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("g"), looptime=0.05, forever=True)
    """)
    names = ["p0", "p1", "p2", "g"]
    old = {name: wait_looping(proc, name)["pid"] for name in names}
    with proc.connect() as conn:  # opened before the reload, used after it
        assert conn.result("events.subscribe", [["worker.*"]]) is True
        proc.signal(signal.SIGHUP)
        looping = {}
        order = []
        while len(looping) < len(names):
            message = conn.read()
            assert message is not None, "connection closed during the reload"
            event = message["params"]
            order.append(event)
            data = event["data"]
            if event["name"] == "worker.state" and data["status"] == LOOPING:
                looping[data["name"]] = len(order)
        assert conn.result("test.ping") == "pong"
        assert conn.result("worker.status") == dict.fromkeys(names, LOOPING)
    for name in ("p0", "p1", "p2"):
        assert info(proc, name)["pid"] != old[name]
        assert "spindown %d" % old[name] in marks(workdir, name)
    # One at a time: each worker is stopped only once the previous is LOOPING again.
    exits = {e["data"]["name"]: i for i, e in enumerate(order, 1) if e["name"] == "worker.exited"}
    for previous, following in zip(names, names[1:]):
        assert looping[previous] < exits[following], (previous, following, order)
    assert zombies(proc.pid) == []


def test_reload_storm_is_coalesced(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("p"), looptime=0.05, forever=True)
    """)
    wait_looping(proc, "p")
    for _ in range(200):
        proc.signal(signal.SIGHUP)
    wait_until(lambda: info(proc, "p")["status"] == LOOPING and info(proc, "p")["restarts"] >= 1, 10)
    time.sleep(1.0)  # let any queued reloads show up; we then check there were only a few
    restarts = info(proc, "p")["restarts"]
    assert 1 <= restarts <= 3, restarts
    assert proc.result("test.ping") == "pong"


# -- greenlet workers ---------------------------------------------------------------------

def test_greenlet_worker_crash_is_a_worker_exit(start, workdir):
    proc = start("""
        daemon.workers.install(GOnce("once"), looptime=0.05, forever=True)
        daemon.workers.install(GCounter("mortal"), looptime=0.05)
    """, extra='''
        class GOnce(GreenletWorker):
            """Crashes in its third loop, every instance."""
            def spinup(self):
                self.count = 0
                mark(self.name, "spinup")
            def loop(self):
                self.count += 1
                if self.count == 3:
                    raise KeyError("third loop")
            def spindown(self):
                mark(self.name, "spindown")
    ''')
    wait_until(lambda: info(proc, "once")["restarts"] >= 2, 5, message="greenlet respawns")
    found = info(proc, "once")
    assert found["last_exit"] == 1 and found["pid"] == proc.pid
    lines = marks(workdir, "once")
    assert lines.count("spindown") >= 2  # spindown() runs after loop() raised
    assert "KeyError: 'third loop'" in proc.output()
    assert proc.result("test.ping") == "pong"


def test_many_workers(start, workdir):
    proc = start("""
        for i in range(16):
            daemon.workers.install(Counter("p%d" % i), looptime=0.5, forever=True)
        for i in range(300):
            daemon.workers.install(Quiet("g%d" % i), looptime=0.5, forever=True)
    """, extra='''
        class Quiet(GreenletWorker):
            def loop(self):
                pass
    ''')
    wait_until(lambda: set(proc.result("worker.status").values()) == {LOOPING}, 20,
               message="316 workers LOOPING")
    assert len(live_children(proc.pid)) == 16
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    for i in range(16):
        assert any(line.startswith("spindown") for line in marks(workdir, "p%d" % i))
