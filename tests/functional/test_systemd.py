"""SPEC 7b: sd_notify messages of a foreground daemon.

A real ``AF_UNIX``/``SOCK_DGRAM`` socket bound in the work directory plays
systemd's ``NOTIFY_SOCKET``; ``gdaemon-echo -f`` is started with it in its
environment.  Written from SPEC.md alone.
"""

import os
import signal
import socket
import time

import pytest

from support import command, rpc

ECHO = command("gdaemon-echo")


class NotifySocket:
    """The receiving end of sd_notify: collects ``KEY=VALUE`` assignments in order."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # one list of assignments per datagram

    def wait_for(self, assignment, timeout=10.0):
        """Receive until a datagram holds ``assignment``; return its index."""
        for index, message in enumerate(self.messages):
            if assignment in message:
                return index
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no %s within %.1fs; got %r" % (assignment, timeout, self.messages))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.messages.append(data.decode().strip("\n").split("\n"))
            if assignment in self.messages[-1]:
                return len(self.messages) - 1

    def index_after(self, assignment, start, timeout=10.0):
        """Index of the first datagram after ``start`` holding ``assignment``."""
        for index in range(start + 1, len(self.messages)):
            if assignment in self.messages[index]:
                return index
        deadline = time.monotonic() + timeout
        while True:
            index = self.wait_for_new(deadline)
            if assignment in self.messages[index]:
                return index

    def wait_for_new(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out; got %r" % (self.messages,))
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        self.messages.append(data.decode().strip("\n").split("\n"))
        return len(self.messages) - 1

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(workdir):
    ns = NotifySocket(os.path.join(workdir, "notify.sock"))
    yield ns
    ns.close()


def test_ready_once_serving(spawn, notify, workdir):
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path}, wait=False)
    notify.wait_for("READY=1")
    # READY=1 means serving: a call right now succeeds.
    response = rpc(proc.address, "examples.echo", ["ready"], timeout=5)
    assert response["result"] == "ready"
    assert not any("STOPPING=1" in m for m in notify.messages)


def test_stopping_on_sigterm(spawn, notify):
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait_for("READY=1")
    proc.signal(signal.SIGTERM)
    stopping = notify.index_after("STOPPING=1", ready)
    assert stopping > ready
    assert proc.wait(10) == 0


def test_reloading_then_ready_around_sighup(spawn, notify):
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait_for("READY=1")
    proc.signal(signal.SIGHUP)
    reloading = notify.index_after("RELOADING=1", ready)
    ready_again = notify.index_after("READY=1", reloading)
    assert ready < reloading < ready_again
    assert proc.result("examples.echo", ["after reload"]) == "after reload"
    assert proc.proc.poll() is None


def test_watchdog_pings(spawn, notify):
    spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    first = notify.wait_for("WATCHDOG=1", timeout=5)
    start = time.monotonic()
    second = notify.index_after("WATCHDOG=1", first, timeout=2)
    third = notify.index_after("WATCHDOG=1", second, timeout=2)
    # Every half of WATCHDOG_USEC (0.1 s): two more within well under a second.
    assert time.monotonic() - start < 1.5
    assert first < second < third


def test_no_watchdog_without_watchdog_usec(spawn, notify):
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1")
    proc.signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1")
    assert proc.wait(10) == 0
    assert not any("WATCHDOG=1" in m for m in notify.messages)


def test_stopping_on_daemon_stop_rpc(spawn, notify):
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait_for("READY=1")
    assert proc.result("daemon.stop") is True
    notify.index_after("STOPPING=1", ready)
    assert proc.wait(10) == 0
