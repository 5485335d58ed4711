"""The fork server (issue 15): the daemon's hub never forks a worker.

Real daemons in temporary directories; the daemon's own fork count comes
from a test method (``test.forks``: ``daemon.forking.forks``), everything
else from ``/proc`` and the RPC.
"""

import os
import signal
import sys
import time

import psutil
import pytest

from support import gone, pid_from_file, run, wait_gone, wait_until
from support.workers import (FORKSERVER_COMM, fd_targets, forkserver_pids, info, live_children, standby_pids,
                             wait_looping, write_daemon)

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

#: Counts the daemon's own forks, and a worker that dies 50 ms after each start.
EXTRA = '''
class ForkCountingDaemon(TestDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.forks", returns=int)
        def forks():
            return self.forking.forks


TestDaemon = ForkCountingDaemon


class DiesSoon(Worker):
    def spinup(self):
        self.born = time.monotonic()

    def loop(self):
        if time.monotonic() - self.born > 0.05:
            os._exit(1)
'''


@pytest.fixture
def start(spawn, workdir):
    """``start(install, **kw)``: a worker daemon with ``-f``; SIGTERM first at teardown."""
    started = []

    def _start(install, **kw):
        kw.setdefault("extra", EXTRA)
        proc = spawn([sys.executable, write_daemon(workdir, install, **kw), "-f"])
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        if proc.proc.poll() is None:
            proc.remember_children()
            proc.signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except Exception:
                pass  # the spawn fixture kills what is left


def respawned(proc, name, old_pid):
    return wait_looping(proc, name, other_than=old_pid)["pid"]


def test_respawns_scaling_and_restarts_never_fork_the_daemon(start):
    proc = start("""
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("pool"), looptime=0.05, forever=True, instances=2)
    """, config={"restartintensity": 1000})
    pid = wait_looping(proc, "a")["pid"]
    wait_looping(proc, "pool.1")
    server = wait_until(lambda: forkserver_pids(proc.pid), 5, message="a fork server")[0]
    assert psutil.Process(server).ppid() == proc.pid
    forks = proc.result("test.forks")
    for _ in range(10):
        os.kill(pid, signal.SIGKILL)
        pid = respawned(proc, "a", pid)
        assert psutil.Process(pid).ppid() == proc.pid  # the daemon's own child, not the server's
    assert proc.result("worker.restart", ["pool.0"]) is True
    # Ten respawns and a restart: not one fork of the daemon itself.
    assert proc.result("test.forks") == forks
    # (A standby just forked carries the server's name for a moment.)
    wait_until(lambda: forkserver_pids(proc.pid) == [server], 5, message="one fork server")
    # Scaling up forks no new server either: the server makes the new
    # instances in its copy of the daemon, as the daemon made them.
    assert proc.result("worker.scale", ["pool", 8]) == ["pool.%d" % i for i in range(8)]
    assert proc.result("test.forks") == forks
    for name in ("pool.%d" % i for i in range(8)):
        assert psutil.Process(info(proc, name)["pid"]).ppid() == proc.pid
    assert forkserver_pids(proc.pid) == [server]


def test_instances_added_by_scaling_start_and_respawn_from_standbys(start):
    """A standby forked before a pool was scaled up becomes the first new
    instance (made from the pool's worker in its copy of the daemon, as in
    the daemon); the next one, forked by the fork server, has the new
    instances too: a killed one comes back from it.  The daemon never forks."""
    proc = start("""
        daemon.workers.install(Counter("pool"), looptime=0.05, forever=True, instances=2)
    """, config={"restartintensity": 1000})
    wait_looping(proc, "pool.1")
    standby = wait_until(lambda: standby_pids(proc.pid), 5, message="a standby")[0]
    forks = proc.result("test.forks")
    assert proc.result("worker.scale", ["pool", 5]) == ["pool.%d" % i for i in range(5)]
    assert info(proc, "pool.2")["pid"] == standby
    # It runs as pool.2: its name in its title, its own loops, its calls.
    assert "pool.2" in " ".join(psutil.Process(standby).cmdline())
    wait_until(lambda: proc.result("worker.call", ["pool.2", "stats"])["count"] > 2, 5,
               message="pool.2 looping")
    assert proc.result("worker.call", ["pool.2", "stats"])["pid"] == standby
    later = wait_until(lambda: standby_pids(proc.pid), 5, message="a new standby")[0]
    first = wait_looping(proc, "pool.4")
    os.kill(first["pid"], signal.SIGKILL)
    second = wait_looping(proc, "pool.4", other_than=first["pid"])
    assert second["pid"] == later and second["restarts"] == 1
    assert proc.result("test.forks") == forks


def test_a_crash_loop_leaves_the_standby_to_a_killed_worker(start):
    """Instances that end by themselves right after their start are respawned by
    fresh forks from the fork server; the standby waits for the others: a worker
    SIGKILLed from outside comes back from it (as fast as on an idle daemon)."""
    proc = start("""
        daemon.workers.install(Counter("ok"), looptime=0.05, forever=True)
        for i in range(3):
            daemon.workers.install(DiesSoon("c%d" % i), looptime=0.01, forever=True)
    """, config={"restartintensity": 100000})
    pid = wait_looping(proc, "ok")["pid"]
    for _ in range(2):
        standby = wait_until(lambda: standby_pids(proc.pid), 5, message="a standby")[0]
        restarts = sum(info(proc, "c%d" % i)["restarts"] for i in range(3))
        time.sleep(0.5)  # the crash loop goes on meanwhile
        assert sum(info(proc, "c%d" % i)["restarts"] for i in range(3)) >= restarts + 3
        assert standby_pids(proc.pid) == [standby], "a crash-looping worker took the standby"
        os.kill(pid, signal.SIGKILL)
        pid = respawned(proc, "ok", pid)
        assert pid == standby
    assert proc.result("test.ping") == "pong"


def test_fork_server_holds_only_its_socket_and_listeners(start, workdir):
    port_path = os.path.join(workdir, "pool.sock")
    proc = start("""
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("web"), looptime=0.05, forever=True, listen="unix://%s")
    """ % port_path)
    wait_looping(proc, "a")
    wait_looping(proc, "web")
    server = wait_until(lambda: forkserver_pids(proc.pid), 5, message="a fork server")[0]
    assert psutil.Process(server).name() == FORKSERVER_COMM
    def held():
        return {fd: target for fd, target in fd_targets(server).items()
                if fd > 2 and not target.endswith("daemon.log")}

    def only_sockets():
        found = held()
        sockets = [t for t in found.values() if t.startswith("socket:")]
        others = [t for t in found.values() if not t.startswith("socket:") and t != "/dev/null"]
        return len(sockets) == 2 and not others

    # Between two requests (while serving one it holds that child's memfd and
    # pipes for a moment): its end of the daemon's socket and the pool's
    # listener; no pipe, no memfd, no RPC connection, no event loop of the daemon's.
    wait_until(only_sockets, 5, message="only its two sockets (%r)" % (held(),))


def test_a_killed_fork_server_is_replaced(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("b"), looptime=0.05, forever=True)
    """, config={"restartintensity": 1000})
    a = wait_looping(proc, "a")["pid"]
    b = wait_looping(proc, "b")["pid"]
    server = wait_until(lambda: forkserver_pids(proc.pid), 5, message="a fork server")[0]
    os.kill(server, signal.SIGKILL)
    wait_gone([server], 5)
    # Both die at once: one gets the standby, the other needs a fork: a new server.
    os.kill(a, signal.SIGKILL)
    os.kill(b, signal.SIGKILL)
    respawned(proc, "a", a)
    respawned(proc, "b", b)
    assert [p for p in forkserver_pids(proc.pid) if p != server]
    assert proc.result("test.ping") == "pong"
    assert "Traceback" not in proc.output()


def test_reload_takes_a_fresh_fork_server(start, workdir):
    proc = start("""
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
    """)
    wait_looping(proc, "a")
    old = wait_until(lambda: forkserver_pids(proc.pid), 5, message="a fork server")[0]
    proc.signal(signal.SIGHUP)
    wait_until(lambda: [p for p in forkserver_pids(proc.pid) if p != old], 10,
               message="a new fork server after the reload")
    wait_gone([old], 5)
    assert wait_looping(proc, "a")["status"] == 1


def test_crash_loop_lines_are_rate_limited(start, workdir):
    """A crash loop (no backoff) writes one line per worker per interval, then a count."""
    proc = start("""
        daemon.workers.install(DiesSoon("flaky"), looptime=0.01, forever=True)
        daemon.workers.install(Counter("steady"), looptime=0.05, forever=True)
    """, config={"restartintensity": 1000000})
    wait_until(lambda: info(proc, "flaky")["restarts"] >= 10, 20, message="ten crashes")
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    lines = [line for line in proc.output().splitlines()
             if "worker 'flaky'" in line and "respawn" in line]
    # The first crash at once, the rest as one summary line written at stop.
    assert 1 <= len(lines) <= 3, lines
    assert any("similar lines in the last" in line for line in lines), lines


def test_a_failure_in_a_child_never_unwinds_into_the_daemon(spawn, workdir):
    """The child side of a fork is fenced (docs/reference/events.rst, Inside a worker).

    Sabotage what a child does first (dropping the inherited hub raises) and
    the daemon's pid file, socket and state survive every child that fails;
    each failure is one log line."""
    script = write_daemon(workdir, """
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
        # What every child does first now fails (the daemon itself never calls it).
        def sabotaged():
            raise RuntimeError("hub registry sabotaged")
        gdaemon.compat.gevent_hub.existing_hub = sabotaged
    """)
    # -f: with -d the start itself would fail, its worker never reaching LOOPING.
    proc = spawn([sys.executable, script, "-f"], address="unix://" + os.path.join(workdir, "daemon.sock"))
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    assert pid == proc.pid

    def failures():
        return [line for line in proc.output().splitlines() if "failed before it could run" in line]
    wait_until(lambda: len(failures()) >= 2, 15, message="children failing")
    assert not gone(pid)
    assert pid_from_file(os.path.join(workdir, "daemon.pid")) == pid
    status = run([sys.executable, script, "--status"], cwd=workdir)
    assert status.returncode == 0, status
    assert "Traceback" not in proc.output()
    assert "hub registry sabotaged" in failures()[0]
    stop = run([sys.executable, script, "--stop"], cwd=workdir)
    assert stop.returncode == 0, stop
    wait_gone([pid], 10)
    assert not live_children(pid, standby=True, forkserver=True)


def test_double_fork_where_clone_is_not_known(start):
    """Without clone(CLONE_PARENT) the server double-forks and the daemon, a child
    subreaper, adopts each worker: the same daemon's-own-child workers."""
    proc = start("""
        import gdaemon.workers.forkserver
        gdaemon.workers.forkserver._sibling_cloner = lambda: None
        daemon.workers.install(Counter("a"), looptime=0.05, forever=True)
        daemon.workers.install(Counter("b"), looptime=0.05, forever=True)
    """, config={"restartintensity": 1000})
    a = wait_looping(proc, "a")["pid"]
    b = wait_looping(proc, "b")["pid"]
    for _ in range(3):
        os.kill(a, signal.SIGKILL)
        os.kill(b, signal.SIGKILL)  # one of them is forked on demand
        a = respawned(proc, "a", a)
        b = respawned(proc, "b", b)
        assert psutil.Process(a).ppid() == proc.pid
        assert psutil.Process(b).ppid() == proc.pid
    assert forkserver_pids(proc.pid)
    assert "Traceback" not in proc.output()
