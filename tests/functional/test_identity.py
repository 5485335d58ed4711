"""Who the daemon and its workers run as, and their resource limits (issue 16).

A daemon started as root may run a worker as another user
(``install(..., user=, group=)``), with resource limits of its own
(``rlimits=``); this is checked from outside, in ``/proc/PID/status`` and
``/proc/PID/limits``, and from inside (``os.setuid(0)`` is refused).
"""

import os
import pwd
import signal
import socket
import sys
import time

import pytest

from support import DaemonProcess, pid_from_file, recv_until_closed, rpc, run, wait_gone, wait_until
from support.workers import forkserver_pids, info, standby_pids, wait_looping, write_daemon

from test_recycling import readme_block
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
                "groups": sorted(os.getgroups()), "home": os.environ.get("HOME"),
                "user": os.environ.get("USER")}


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
        ids = proc.result("worker.call", ["who", "ids"])
        assert (ids["euid"], ids["home"], ids["user"]) == (NOBODY.pw_uid, NOBODY.pw_dir, "nobody")
        # "who" LOOPING says nothing of "boss": its spawn may still wait for the
        # fork server (the status is STOPPED until then: one CI run failed so).
        wait_looping(proc, "boss")
        assert proc.result("worker.call", ["boss", "ids"])["home"] == os.environ.get("HOME")
        assert proc.result("worker.call", ["who", "become_root"]) == "refused: Operation not permitted"
        # The daemon and the other worker stay root, with the daemon's limits.
        assert proc_status(proc.pid)["Uid"][0] == 0
        boss = wait_looping(proc, "boss")["pid"]
        assert proc_status(boss)["Uid"][0] == 0
        assert proc_limits(boss)["Max open files"] == proc_limits(proc.pid)["Max open files"]
        # Killed once up a while: the respawn is the pre-forked standby (root
        # until it knows which worker it becomes), which takes them too.
        standby = wait_until(lambda: standby_pids(proc.pid), message="a standby")[0]
        assert proc_status(standby)["Uid"][0] == 0
        wait_until(lambda: time.time() - worker["started_at"] > 1.5, message="up for 1.5s")
        os.kill(pid, signal.SIGKILL)
        respawned = wait_until(lambda: info(proc, "who")["pid"] not in (None, pid) and info(proc, "who"),
                               message="a respawn")
        if attempt == "forked":
            assert respawned["pid"] == standby


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


# -- the daemon drops root itself --------------------------------------------------------

#: install() body of a daemon that drops to nobody: a pool accepting on a
#: privileged port, and an RPC method trying to become root again.
DROPPING = """
@daemon.rpc.method("test.become_root", returns=str)
def become_root():
    try:
        os.setuid(0)
    except OSError as exc:
        return "refused: " + exc.strerror
    return "root again"

daemon.workers.install(Who("web"), looptime=0.1, forever=True, instances=2,
                       listen="tcp://127.0.0.1:%d")
"""


def privileged_port():
    """A free TCP port below 1024: only root can bind it."""
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free privileged port")


@pytest.fixture
def nobody_dir(workdir):
    """``workdir``, handed to nobody: where a daemon running as nobody keeps its files."""
    os.chown(workdir, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(workdir, 0o755)
    return workdir


def owner(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


def test_a_daemon_started_as_root_binds_then_runs_as_nobody(nobody_dir):
    workdir = nobody_dir
    pool_port, http_port = privileged_port(), None
    with socket.socket() as s:
        s.bind(("127.0.0.1", pool_port))  # keep it while we look for the other one
        http_port = privileged_port()
    path = write_daemon(workdir, DROPPING % pool_port, extra=WHO,
                        config={"user": "nobody", "websockethandler": "tcp://127.0.0.1:%d" % http_port})
    started = run([sys.executable, path, "-d"], workdir)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    address = "unix://" + os.path.join(workdir, "daemon.sock")
    try:
        status = proc_status(pid)
        assert status["Uid"] == [NOBODY.pw_uid] * 4
        assert status["Gid"] == [NOBODY.pw_gid] * 4
        assert sorted(status["Groups"]) == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
        ids = (NOBODY.pw_uid, NOBODY.pw_gid)
        for name in ("daemon.pid", "daemon.log", "daemon.sock"):
            assert owner(os.path.join(workdir, name)) == ids, name
        assert rpc(address, "test.become_root")["result"] == "refused: Operation not permitted"
        # Its workers (and the fork server) are nobody's too, and the pool
        # accepts on the privileged port the daemon bound as root.
        for name in ("web.0", "web.1"):
            worker = wait_looping_at(address, name)
            assert proc_status(worker["pid"])["Uid"] == [NOBODY.pw_uid] * 4
        for server in forkserver_pids(pid):
            assert proc_status(server)["Uid"] == [NOBODY.pw_uid] * 4
        socket.create_connection(("127.0.0.1", pool_port), timeout=5).close()
        socket.create_connection(("127.0.0.1", http_port), timeout=5).close()

        # logrotate: the file moves away, SIGUSR1 reopens a new one, nobody's.
        log = os.path.join(workdir, "daemon.log")
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGUSR1)
        wait_until(lambda: os.path.exists(log), message="a new daemon.log")
        assert owner(log) == ids
        # A reload still works: every worker restarted, still as nobody.
        before = {name: wait_looping_at(address, name)["pid"] for name in ("web.0", "web.1")}
        assert rpc(address, "daemon.reload")["result"] is True
        for name in ("web.0", "web.1"):
            worker = wait_looping_at(address, name, other_than=before[name])
            assert proc_status(worker["pid"])["Uid"] == [NOBODY.pw_uid] * 4
        wait_until(lambda: "reloading" in open(log).read(), message="the reload logged in the new file")
    finally:
        stopped = run([sys.executable, path, "--stop"], workdir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_gone(pid)
    # It cleaned up after itself, as nobody, in nobody's directory.
    assert not os.path.exists(os.path.join(workdir, "daemon.pid"))
    assert not os.path.exists(os.path.join(workdir, "daemon.sock"))


def wait_looping_at(address, name, other_than=None):
    def looping():
        found = rpc(address, "worker.info", [name])["result"]
        if found["status"] == 1 and found["pid"] and found["pid"] != other_than:
            return found
        return None
    return wait_until(looping, 15, message="worker %r LOOPING" % name)


@pytest.mark.parametrize("config, install, message", [
    ({"user": "no-such-user"}, "", "user: unknown user 'no-such-user'"),
    ({"user": "nobody", "group": "no-such-group"}, "", "group: unknown group 'no-such-group'"),
    ({"user": "nobody"}, 'daemon.workers.install(Who("w"), user="root")',
     "worker 'w': cannot switch to user root: the daemon runs as uid %d, not root" % NOBODY.pw_uid),
])
def test_what_a_daemon_cannot_become_is_a_one_line_start_up_error(nobody_dir, config, install, message):
    path = write_daemon(nobody_dir, install or "pass", extra=WHO, config=config)
    result = run([sys.executable, path, "-d"], nobody_dir)
    assert result.returncode == 1, result
    assert result.stdout + result.stderr == "error: %s\n" % message


def test_the_readme_recipe_serves_port_80_style_sockets_as_nobody(nobody_dir):
    port = privileged_port()
    source = readme_block("Running as an unprivileged user")
    assert 'listen="tcp://127.0.0.1:80"' in source
    path = os.path.join(nobody_dir, "web.py")
    with open(path, "w") as f:
        f.write(source.replace("127.0.0.1:80", "127.0.0.1:%d" % port))
    proc = DaemonProcess([sys.executable, path, "-f"], nobody_dir).start()
    try:
        assert proc_status(proc.pid)["Uid"] == [NOBODY.pw_uid] * 4
        for name in ("web.0", "web.1"):
            pid = wait_looping_at(proc.address, name)["pid"]
            assert proc_status(pid)["Uid"] == [NOBODY.pw_uid] * 4
            assert proc_limits(pid)["Max open files"] == ("4096", "4096")
            assert proc_limits(pid)["Max core file size"] == ("0", "0")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            reply = recv_until_closed(conn, timeout=5)
        assert reply.endswith(b"hello\n"), reply
    finally:
        proc.stop()


def test_a_worker_running_as_nobody_survives_a_log_rotation(workdir):
    """The daemon (root) reopens its log; the worker (nobody) cannot open root's
    new file, says so once and writes on: it is not lost over a logrotate."""
    path = write_daemon(workdir, 'daemon.workers.install(Who("who"), looptime=0.1, forever=True, '
                        'user="nobody")', extra=WHO)
    started = run([sys.executable, path, "-d"], workdir)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
    address = "unix://" + os.path.join(workdir, "daemon.sock")
    try:
        worker = wait_looping_at(address, "who")
        log = os.path.join(workdir, "daemon.log")
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGUSR1)
        wait_until(lambda: os.path.exists(log), message="a new daemon.log")
        wait_until(lambda: "cannot reopen" in open(log + ".1").read() + open(log).read(),
                   message="the worker's warning")
        assert rpc(address, "worker.call", ["who", "ids"])["result"]["euid"] == NOBODY.pw_uid
        assert rpc(address, "worker.info", ["who"])["result"]["pid"] == worker["pid"]
        assert not [e for e in open(log).read().splitlines() if "Traceback" in e]
    finally:
        stopped = run([sys.executable, path, "--stop"], workdir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_gone(pid)


def test_a_daemon_that_dropped_root_stops_cleanly_in_a_directory_it_may_not_write(workdir):
    """Its pid file and socket stay behind (it cannot unlink them): the stop is
    still clean, exit 0, and the next start (with -s for the socket) works."""
    os.chmod(workdir, 0o755)  # root's: nobody may read it, not write it
    path = write_daemon(workdir, "pass", extra=WHO, config={"user": "nobody"})
    for attempt in range(2):
        started = run([sys.executable, path, "-s", "-d"] if attempt else [sys.executable, path, "-d"],
                      workdir)
        assert started.returncode == 0, started.stdout + started.stderr
        pid = pid_from_file(os.path.join(workdir, "daemon.pid"))
        assert proc_status(pid)["Uid"][0] == NOBODY.pw_uid
        stopped = run([sys.executable, path, "--stop"], workdir)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        wait_gone(pid)
        log = open(os.path.join(workdir, "daemon.log")).read()
        assert "Traceback" not in log, log
        assert "cannot remove %s" % os.path.join(workdir, "daemon.sock") in log
        assert "stopped (exit 0)" in log.splitlines()[-1], log
        status = run([sys.executable, path, "--status"], workdir)
        assert status.returncode == 3, status.stdout + status.stderr
