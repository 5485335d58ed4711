"""The container recipe's behaviour: a daemon in ``-f`` as PID 1 (examples/Containerfile).

The daemon runs as PID 1 of a new PID namespace (``unshare --pid --fork
--mount-proc``), as ``ENTRYPOINT ["gdaemon-echo", "-f", ...]`` makes it in a
container: SIGTERM (what ``docker stop`` and the kubelet send) stops it with
exit status 0, and orphans re-parented to it (a grandchild whose parent
exited) are reaped instead of piling up as zombies.  Skipped, saying why,
where the machine does not allow a new PID namespace.
"""

import os
import shutil
import signal
import subprocess
import sys

import psutil
import pytest

from support import RawConnection, is_serving, short_tmpdir, wait_until
from support.scripts import write_script


def _unshare_works():
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    try:
        done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "unshare failed: %s" % exc
    if done.returncode != 0:
        return "no new PID namespace here (needs root or user namespaces): %s" % done.stderr.strip()
    return None


SKIP = _unshare_works()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

PID1_DAEMON = '''
    import subprocess


    class Pid1(Daemon):
        def setup(self):
            @self.rpc.method("test.pid", returns=int)
            def pid():
                return os.getpid()

            @self.rpc.method("test.orphan", returns=int)
            def orphan():
                # sh starts a short sleep in the background and exits at once:
                # the sleep is re-parented to PID 1, the daemon.
                out = subprocess.run(["sh", "-c", "sleep 0.2 >/dev/null 2>&1 & echo $!"],
                                     capture_output=True, text=True, check=True).stdout
                return int(out)

            @self.rpc.method("test.state", params=[("pid", int)])
            def state(pid):
                try:
                    with open("/proc/%d/stat" % pid) as f:
                        data = f.read()
                except OSError:
                    return None
                fields = data[data.rfind(")") + 2:].split()
                return {"state": fields[0], "ppid": int(fields[1])}


    Pid1({"description": "PID 1", "sockethandler": "unix://" + os.path.join(HERE, "daemon.sock"),
          "pidfile": os.path.join(HERE, "pid1-in-namespace.pid")}).init()
'''


@pytest.fixture
def pid1():
    # Not the ``workdir`` fixture: its finalizer SIGKILLs the process tree of
    # the pid in daemon.pid, and a PID 1 daemon writes its namespace pid, 1,
    # which outside the namespace is the machine's init.  The pid file gets
    # another name too, so nothing ever reads that 1 from outside.
    workdir = short_tmpdir()
    path = write_script(workdir, PID1_DAEMON, name="pid1.py")
    log = open(os.path.join(workdir, "output.txt"), "wb")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, path, "-f"],
                            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.address = "unix://" + os.path.join(workdir, "daemon.sock")
    proc.log_path = log.name
    try:
        wait_until(lambda: proc.poll() is None and is_serving(proc.address), 15,
                   message="the PID 1 daemon to serve")
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # unshare and, with it, the namespace
        except ProcessLookupError:
            pass
        proc.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def output(proc):
    with open(proc.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def test_daemon_is_pid_1_and_reaps_orphaned_grandchildren(pid1):
    with RawConnection(pid1.address) as conn:
        assert conn.result("test.pid") == 1
        orphans = [conn.result("test.orphan") for _ in range(3)]
        for orphan in orphans:
            info = conn.result("test.state", [orphan])
            # Re-parented to the daemon (or already gone): never someone else's.
            assert info is None or info["ppid"] == 1, info
        # Once each sleep ends, PID 1 must collect it: no zombie left behind.
        wait_until(lambda: all(conn.result("test.state", [pid]) is None for pid in orphans), 10,
                   message="orphans reaped by PID 1 (states: %r)"
                   % [conn.result("test.state", [pid]) for pid in orphans])
        assert conn.result("test.pid") == 1


def test_sigterm_stops_pid_1_with_exit_0(pid1):
    daemon = wait_until(lambda: psutil.Process(pid1.pid).children(), 5, message="the daemon under unshare")[0]
    os.kill(daemon.pid, signal.SIGTERM)   # from outside the namespace, like a container runtime
    assert pid1.wait(15) == 0, output(pid1)
    assert "stopped (exit 0)" in output(pid1)


def test_upgrade_as_pid_1_is_refused(pid1):
    """PID 1 cannot hand over to a successor: the container would end with it (issue 16)."""
    with RawConnection(pid1.address) as conn:
        response = conn.call("daemon.upgrade")
        assert response["error"]["code"] == -32010, response
        assert response["error"]["message"] == "PID 1 cannot hand over; let the orchestrator roll the pod"
        assert conn.result("test.pid") == 1
