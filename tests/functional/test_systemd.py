"""sd_notify messages of a foreground daemon (docs/howto/systemd.rst).

A real ``AF_UNIX``/``SOCK_DGRAM`` socket bound in the work directory plays
systemd's ``NOTIFY_SOCKET``; ``gdaemon-echo -f`` is started with it in its
environment.  Written from the documentation alone.
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


def test_upgrade_hands_the_service_over_with_mainpid(spawn, notify, workdir):
    """The new daemon sends MAINPID=<its pid> and READY=1 before the old one exits
    (before the old one even answers daemon.upgrade), and nobody says STOPPING=1."""
    proc = spawn([ECHO, "-f"], env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1")
    old_pid = proc.result("daemon.status")["pid"]
    address = "unix://" + os.path.join(workdir, "daemon.sock")
    assert rpc(address, "daemon.upgrade", timeout=60)["result"] is True
    # Already sent: a short wait only covers the datagram's way through the socket.
    handover = [i for i, message in enumerate(notify.messages) if any(a.startswith("MAINPID=") for a in message)]
    if not handover:
        handover = [notify.index_after("READY=1", len(notify.messages) - 1, timeout=1.0)]
    message = notify.messages[handover[0]]
    assert "READY=1" in message, message
    new_pid = int([a for a in message if a.startswith("MAINPID=")][0].split("=", 1)[1])
    assert new_pid != old_pid
    assert proc.wait(30) == 0
    assert rpc(address, "daemon.status")["result"]["pid"] == new_pid
    assert not any("STOPPING=1" in message for message in notify.messages)
    os.kill(new_pid, signal.SIGTERM)
    notify.index_after("STOPPING=1", len(notify.messages) - 1)


# -- the shipped deployment files (issue 16) ------------------------------------------

import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
EXAMPLES = os.path.join(ROOT, "examples")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def installed_units(workdir):
    """The shipped units in ``workdir``, ExecStart pointing at this virtualenv's gdaemon-echo."""
    with open(os.path.join(EXAMPLES, "gdaemon-echo.service")) as f:
        unit = f.read()
    assert "\nExecStart=/usr/local/bin/gdaemon-echo -f\n" in unit
    unit = unit.replace("ExecStart=/usr/local/bin/gdaemon-echo", "ExecStart=" + ECHO)
    service = os.path.join(workdir, "gdaemon-echo.service")
    with open(service, "w") as f:
        f.write(unit)
    socket_unit = os.path.join(workdir, "gdaemon-echo.socket")
    shutil.copy(os.path.join(EXAMPLES, "gdaemon-echo.socket"), socket_unit)
    return service, socket_unit


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_units_pass_systemd_analyze_verify(installed_units):
    done = subprocess.run([SYSTEMD_ANALYZE, "verify"] + list(installed_units),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_service_is_hardened(installed_units):
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", installed_units[0]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert exposure, done.stdout[-2000:]
    assert float(exposure.group(1)) <= 5.0, done.stdout


def test_service_fits_upgrades_and_socket_activation():
    with open(os.path.join(EXAMPLES, "gdaemon-echo.service")) as f:
        unit = f.read()
    with open(os.path.join(EXAMPLES, "gdaemon-echo.socket")) as f:
        socket_unit = f.read()
    for line in ("Type=notify", "NotifyAccess=all", "RuntimeDirectory=gdaemon-echo", "DynamicUser=yes",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"):
        assert line in unit, line
    # The daemon's default socket in its working directory is the one systemd listens on.
    assert "WorkingDirectory=/run/gdaemon-echo" in unit
    assert "ListenStream=/run/gdaemon-echo/daemon.sock" in socket_unit


def test_container_image_runs_as_a_numeric_non_root_user():
    with open(os.path.join(EXAMPLES, "Containerfile")) as f:
        users = re.findall(r"^USER\s+(\S+)", f.read(), re.M)
    assert users, "no USER in the Containerfile"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or (gid.isdigit() and int(gid) != 0)), users[-1]
    with open(os.path.join(EXAMPLES, "kubernetes.yaml")) as f:
        manifest = f.read()
    assert re.search(r"runAsNonRoot:\s*true", manifest)
    assert re.search(r"runAsUser:\s*%s\b" % uid, manifest), "kubernetes.yaml must run as the image's user"
    with open(os.path.join(ROOT, ".containerignore")) as f:
        ignored = f.read().split()
    assert {".git", ".venv"} <= set(ignored) and any("__pycache__" in entry for entry in ignored)
