"""Who the daemon and its workers run as, and their resource limits (issue 16).

A daemon started as root may run a worker as another user
(``install(..., user=, group=)``), with resource limits of its own
(``rlimits=``); this is checked from outside, in ``/proc/PID/status`` and
``/proc/PID/limits``, and from inside (``os.setuid(0)`` is refused).
"""

import os
import pwd
import signal
import sys

import pytest

from support import run, wait_until
from support.workers import info, wait_looping, write_daemon

from test_workers import stop_gracefully

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")

NOBODY = pwd.getpwnam("nobody")

#: A worker that tells who it is and whether it can become root again.
WHO = '''
class Who(Worker):
    def loop(self):
        pass

    @exposed
    def become_root(self):
        try:
            os.setuid(0)
        except OSError as exc:
            return "refused: %s" % exc.strerror
        return "root again"

    @exposed
    def ids(self):
        return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                "groups": sorted(os.getgroups())}


class GWho(GreenletWorker):
    def loop(self):
        pass
'''


@pytest.fixture
def start(spawn, workdir):
    started = []

    def _start(install, **kw):
        path = write_daemon(workdir, install, extra=WHO, **kw)
        proc = spawn([sys.executable, path, "-f"])
        started.append(proc)
        return proc

    yield _start
    stop_gracefully(started)


def proc_status(pid):
    """``{"Uid": [...], "Gid": [...], "Groups": [...]}`` of process ``pid``, as ints."""
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                found[key] = [int(v) for v in value.split()]
    return found


def proc_limits(pid):
    """``{"Max open files": ("1000", "1000"), ...}`` from ``/proc/PID/limits``."""
    found = {}
    with open("/proc/%d/limits" % pid) as f:
        next(f)
        for line in f:
            name = line[:26].strip()
            soft, hard = line[26:].split()[:2]
            found[name] = (soft, hard)
    return found


def test_a_root_daemon_runs_a_worker_as_nobody_with_its_limits(start):
    proc = start('daemon.workers.install(Who("who"), looptime=0.1, forever=True, user="nobody", '
                 'rlimits={"nofile": 1000, "core": 0, "nproc": (500, 600)})\n'
                 'daemon.workers.install(Who("boss"), looptime=0.1, forever=True)')
    for attempt in ("forked", "from the standby"):
        worker = wait_looping(proc, "who")
        pid = worker["pid"]
        status = proc_status(pid)
        assert status["Uid"] == [NOBODY.pw_uid] * 4, attempt
        assert status["Gid"] == [NOBODY.pw_gid] * 4, attempt
        assert sorted(status["Groups"]) == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
        limits = proc_limits(pid)
        assert limits["Max open files"] == ("1000", "1000"), attempt
        assert limits["Max core file size"] == ("0", "0"), attempt
        assert limits["Max processes"] == ("500", "600"), attempt
        assert proc.result("worker.call", ["who", "ids"])["euid"] == NOBODY.pw_uid
        assert proc.result("worker.call", ["who", "become_root"]) == "refused: Operation not permitted"
        # The daemon and the other worker stay root, with the daemon's limits.
        assert proc_status(proc.pid)["Uid"][0] == 0
        boss = wait_looping(proc, "boss")["pid"]
        assert proc_status(boss)["Uid"][0] == 0
        assert proc_limits(boss)["Max open files"] == proc_limits(proc.pid)["Max open files"]
        # Killed: the respawn (the pre-forked standby, root until it knows
        # which worker it becomes) takes the identity and limits again.
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: info(proc, "who")["pid"] not in (None, pid), message="a respawn")


@pytest.mark.parametrize("options, message", [
    ('user="no-such-user"', "worker 'w': unknown user 'no-such-user'"),
    ('user="nobody", group="no-such-group"', "worker 'w': unknown group 'no-such-group'"),
    ('rlimits={"files": 1}', "worker 'w': unknown rlimit 'files'"),
    ('rlimits={"nofile": (10, 5)}', "worker 'w': rlimit nofile: soft limit 10 is above the hard limit 5"),
])
def test_bad_identities_and_limits_are_one_line_start_up_errors(workdir, options, message):
    path = write_daemon(workdir, 'daemon.workers.install(Who("w"), %s)' % options, extra=WHO)
    result = run([sys.executable, path, "-f"], workdir)
    assert result.returncode == 1, result
    assert result.stderr.strip().startswith("error: " + message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_greenlet_worker_cannot_change_identity(workdir):
    path = write_daemon(workdir, 'daemon.workers.install(GWho("g"), user="nobody")', extra=WHO)
    result = run([sys.executable, path, "-f"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: worker 'g': user, group and rlimits are for forked "
                                     "workers; a greenlet worker runs in the daemon's process")
