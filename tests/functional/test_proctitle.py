"""Every process of a daemon has a title ``ps`` shows (issue 16), read from /proc/PID/cmdline."""

import os
import signal
import sys
import time

import pytest

from support import wait_until
from support.workers import forkserver_pids, standby_pids, wait_looping, write_daemon

from test_workers import stop_gracefully


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().rstrip(b"\0").decode()


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


@pytest.fixture
def proc(spawn, workdir):
    path = write_daemon(workdir, '''
        daemon.workers.install(Counter("copier"), looptime=0.2, forever=True)
        daemon.workers.install(Counter("web"), looptime=0.2, forever=True, instances=2)
    ''', config={"description": "Title Test"})
    started = spawn([sys.executable, path, "-f"])
    yield started
    stop_gracefully([started])


def test_the_daemon_its_workers_standby_and_fork_server_say_what_they_are(proc):
    name = comm(proc.pid)
    assert cmdline(proc.pid) == "gdaemon: Title Test [daemon]"
    for worker in ("copier", "web.0", "web.1"):
        pid = wait_looping(proc, worker)["pid"]
        assert cmdline(pid) == "gdaemon: Title Test [worker %s]" % worker
        assert comm(pid) == name  # pgrep and killall still know it
    standby = wait_until(lambda: standby_pids(proc.pid), message="a standby")[0]
    assert cmdline(standby) == "gdaemon: Title Test [standby]"
    server = wait_until(lambda: forkserver_pids(proc.pid), message="a fork server")[0]
    assert cmdline(server) == "gdaemon: Title Test [fork server]"
    # A standby that becomes a worker takes that worker's title.
    found = wait_looping(proc, "copier")
    copier = found["pid"]
    # Only an instance that was up a while gets the standby (a crash loop forks).
    wait_until(lambda: time.time() - found["started_at"] > 1.5, message="copier up for 1.5s")
    os.kill(copier, signal.SIGKILL)
    respawned = wait_looping(proc, "copier", other_than=copier)["pid"]
    assert respawned == standby
    assert cmdline(respawned) == "gdaemon: Title Test [worker copier]"
    assert comm(respawned) == name
