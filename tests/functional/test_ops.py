"""``--stop`` never leaves a daemon behind (docs/reference/console.rst; issue 7 item 8), on real processes.

A daemon whose hub is blocked by a greenlet (here: an unpatched
``time.sleep`` in an RPC handler) never runs its SIGTERM receiver.  ``--stop``
waits ``shutdowntimeout`` + a grace period, then SIGKILLs the daemon and its
worker processes, says so on stderr and exits 1.
"""

import os
import re
import sys
import time

from support import RawConnection, gone, pid_from_file, run, wait_gone, wait_until
from support.scripts import write_script
from support.workers import live_children

#: Written unpatched on purpose: time.sleep in a handler blocks the hub.
BLOCKING_DAEMON = '''
    class Idle(Worker):
        def loop(self):
            pass


    class Blocking(Daemon):
        def setup(self):
            @self.rpc.method("test.block", returns=bool)
            def block():
                open(os.path.join(HERE, "blocked"), "w").close()
                time.sleep(3600)   # blocks the whole hub: SIGTERM is never handled
                return True


    daemon = Blocking({"description": "Blocking Daemon", "shutdowntimeout": 0.5,
                       "sockethandler": "unix://" + os.path.join(HERE, "daemon.sock")})
    daemon.workers.install(Idle("idle"), looptime=0.1, forever=True)
    daemon.workers.install(Idle("other"), looptime=0.1, forever=True)
    daemon.init()
'''


def write_blocking(workdir):
    return write_script(workdir, BLOCKING_DAEMON, patched=False, name="blocking.py")


def block_the_hub(conn, workdir):
    """Call test.block on ``conn``; return once the handler has blocked the hub."""
    conn.send({"jsonrpc": "2.0", "method": "test.block", "id": 1})
    wait_until(lambda: os.path.exists(os.path.join(workdir, "blocked")), 10,
               message="test.block to block the hub")


def workers_of(pid):
    return wait_until(lambda: len(live_children(pid)) >= 2 and live_children(pid), 20,
                      message="two forked workers")


def test_stop_kills_a_daemon_whose_hub_is_blocked_and_its_workers(workdir):
    script = write_blocking(workdir)
    completed = run([sys.executable, script, "-d"], workdir, timeout=20)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    workers = [child.pid for child in workers_of(pid)]
    conn = RawConnection("unix://" + os.path.join(workdir, "daemon.sock"))
    try:
        block_the_hub(conn, workdir)
        started = time.monotonic()
        stopped = run([sys.executable, script, "--stop"], workdir, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    # shutdowntimeout (0.5 s) + the 3 s grace, then SIGKILL: not the old 10 s
    # more.  The wait is what --stop says it allowed; the wall clock also
    # counts the start of its interpreter, seconds on a loaded machine.
    assert elapsed >= 3.0, elapsed
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1, stopped.stderr
    assert lines[0].startswith("error: Blocking Daemon (pid %d) did not stop within 3.5s:" % pid), lines
    assert "SIGKILL" in lines[0], lines
    children = re.search(r"killed it and its (\d+) child process", lines[0])
    assert children and int(children.group(1)) >= 2, lines   # both workers (and the standby)
    assert "Traceback" not in stopped.stderr
    wait_gone([pid] + workers, 5)
    # The stale pid file and socket were cleaned up: a new start just works.
    assert not os.path.exists(os.path.join(workdir, "daemon.pid"))
    assert not os.path.exists(os.path.join(workdir, "daemon.sock"))
    status = run([sys.executable, script, "--status"], workdir, timeout=20)
    assert status.returncode == 3, status.stdout + status.stderr


def test_stop_of_a_healthy_daemon_with_workers_is_graceful(workdir):
    script = write_blocking(workdir)
    completed = run([sys.executable, script, "-d"], workdir, timeout=20)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    workers = workers_of(pid)
    stopped = run([sys.executable, script, "--stop"], workdir, timeout=30)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped (pid %d)" % pid in stopped.stdout
    assert stopped.stderr == ""
    assert gone(pid)
    wait_gone(workers, 5)


def test_stop_kills_a_foreground_group_leader_and_its_group(workdir, spawn):
    script = write_blocking(workdir)
    proc = spawn([sys.executable, script, "-f"])   # its own session: a group leader
    assert os.getpgid(proc.pid) == proc.pid
    workers = [child.pid for child in workers_of(proc.pid)]
    with proc.connect() as conn:
        block_the_hub(conn, workdir)
        stopped = run([sys.executable, script, "--stop"], workdir, timeout=30)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert re.search(r"killed it and its \d+ child processes with SIGKILL", stopped.stderr), stopped.stderr
    assert proc.wait(5) == -9
    wait_gone(workers, 5)
