"""Socket activation (issue 16): a daemon given its listening sockets by its parent.

A real parent process binds the sockets, puts them at descriptors 3, 4...,
sets systemd's ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` and execs the
daemon (what systemd does for a ``.socket`` unit); systemd's own
``systemd-socket-activate`` is used too where it is installed.
"""

import os
import shutil
import socket
import sys

import psutil
import pytest

from support import DaemonProcess, free_port, rpc, run, wait_until
from support.scripts import write_script

ACTIVATED_DAEMON = """
from gevent.server import StreamServer


class EchoWorker(Worker):
    def spinup(self):
        self.server = StreamServer(self.listener, self.handle)
        self.server.start()

    def handle(self, sock, address):
        with sock:
            for line in sock.makefile("rb"):
                sock.sendall(b"pool says " + line)

    def loop(self):
        pass


class ActivatedDaemon(EchoDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.environment", returns=list)
        def environment():
            return sorted(key for key in os.environ if key.startswith(("LISTEN_", "GDAEMON_FDS")))

        @self.rpc.method("test.worker_environment", returns=list)
        def worker_environment():
            return self.workers.get("echo").call("environment")


class EnvWorker(EchoWorker):
    @exposed
    def environment(self):
        return sorted(key for key in os.environ if key.startswith(("LISTEN_", "GDAEMON_FDS")))


daemon = ActivatedDaemon({"description": "Activated Daemon"})
daemon.workers.install(EnvWorker("echo"), looptime=1, forever=True,
                       listen="tcp://127.0.0.1:%s" % os.environ["ECHO_PORT"])
daemon.init()
"""

#: The parent: binds what SOCKETS names ("unix:PATH" or "tcp:PORT", comma-separated),
#: moves the sockets to fds 3, 4... and execs the daemon as systemd would.
LAUNCHER = r'''
import os, socket, sys

socks = []
for spec in os.environ.pop("SOCKETS").split(","):
    kind, _, where = spec.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(where)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(where)))
    sock.listen(64)
    socks.append(sock)
# Out of the way first: a socket may already sit at 3 or 4.
high = [os.dup2(sock.fileno(), 100 + index) for index, sock in enumerate(socks)]
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index, inheritable=True)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())   # exec keeps the pid
os.environ["LISTEN_FDS"] = str(len(socks))
os.execv(sys.argv[1], sys.argv[1:])
'''


@pytest.fixture
def activated(workdir):
    """``start(sockets, names=None)``: the daemon under the launcher, its sockets bound by it."""
    script = write_script(workdir, ACTIVATED_DAEMON)
    launcher = os.path.join(workdir, "launcher.py")
    with open(launcher, "w") as f:
        f.write(LAUNCHER)
    started = []

    def start(sockets, names=None, port=None, wait=True):
        env = {"SOCKETS": ",".join(sockets), "ECHO_PORT": str(port)}
        if names is not None:
            env["LISTEN_FDNAMES"] = names
        proc = DaemonProcess([sys.executable, launcher, sys.executable, script, "-f"], workdir, env=env)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()


def echo_line(port, text):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(text + b"\n")
        return sock.makefile("rb").readline()


@pytest.mark.parametrize("names", ["rpc:pool:echo", None, "gdaemon-echo.socket:gdaemon-echo.socket"],
                         ids=["named", "unnamed", "unit-names"])
def test_daemon_serves_on_the_sockets_it_was_given(activated, workdir, names):
    path = os.path.join(workdir, "daemon.sock")
    port = free_port()
    proc = activated(["unix:" + path, "tcp:%d" % port], names, port=port)
    inode = os.stat(path).st_ino
    assert proc.result("examples.echo", {"message": "hi"}) == "hi"
    assert echo_line(port, b"x") == b"pool says x\n"
    # The socket file the parent made was used as it is, never bound again.
    assert os.stat(path).st_ino == inode
    # Nobody below the daemon sees the variables.
    assert proc.result("test.environment") == []
    assert proc.result("test.worker_environment") == []
    proc.signal(15)
    assert proc.wait(20) == 0
    # The socket file belongs to whoever passed it: left in place.
    assert os.path.exists(path) and os.stat(path).st_ino == inode


def test_a_passed_socket_matching_nothing_is_a_one_line_error(activated, workdir):
    path = os.path.join(workdir, "daemon.sock")
    port, stray = free_port(), free_port()
    proc = activated(["unix:" + path, "tcp:%d" % port, "tcp:%d" % stray], port=port, wait=False)
    assert proc.wait(20) == 1
    lines = [line for line in proc.output().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "tcp://127.0.0.1:%d" % stray in lines[0] and "Traceback" not in lines[0]


def test_variables_for_another_pid_are_ignored(workdir, spawn):
    """LISTEN_PID naming another process (a parent's): the daemon binds as usual."""
    port = free_port()
    script = write_script(workdir, ACTIVATED_DAEMON)
    proc = spawn([sys.executable, script, "-f"],
                 env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "ECHO_PORT": str(port)})
    assert proc.result("examples.echo", {"message": "hi"}) == "hi"
    assert echo_line(port, b"y") == b"pool says y\n"


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_under_systemd_socket_activate(workdir):
    """systemd's tool listens, and starts the daemon on the first connection."""
    path = os.path.join(workdir, "daemon.sock")
    from support import command
    proc = DaemonProcess(["systemd-socket-activate", "-l", path, "--fdname=rpc", command("gdaemon-echo"), "-f"],
                         workdir)
    try:
        proc.start(wait=False)
        wait_until(lambda: os.path.exists(path), 10, message="the socket")

        def first_call():
            try:
                return rpc("unix://" + path, "examples.echo", {"message": "activated"}, timeout=20)
            except ConnectionRefusedError:
                return None  # bound (the file is there), not listening yet
        # This connection starts the daemon; it waits in the backlog meanwhile.
        assert wait_until(first_call, 20, message="the first call")["result"] == "activated"
        status = rpc("unix://" + path, "daemon.status")["result"]
        assert status["pid"] == proc.pid      # exec'd in place of the tool
        assert rpc("unix://" + path, "daemon.stop")["result"] is True
        assert proc.wait(20) == 0
        assert os.path.exists(path)
        completed = run([command("gdaemon-echo"), "--status"], workdir)
        assert completed.returncode == 3
    finally:
        proc.stop()


def test_an_upgraded_daemon_leaves_the_activated_socket_file_too(activated, workdir):
    path = os.path.join(workdir, "daemon.sock")
    port = free_port()
    proc = activated(["unix:" + path, "tcp:%d" % port], "rpc:pool:echo", port=port)
    inode = os.stat(path).st_ino
    wait_until(lambda: proc.result("daemon.status")["started_at"], 15, message="the daemon ready")
    assert proc.result("daemon.upgrade") is True
    assert proc.wait(30) == 0
    new_pid = rpc(proc.address, "daemon.status")["result"]["pid"]
    assert new_pid != proc.pid
    assert echo_line(port, b"z") == b"pool says z\n"
    assert rpc(proc.address, "daemon.stop")["result"] is True
    wait_until(lambda: not psutil.pid_exists(new_pid) or psutil.Process(new_pid).status() == psutil.STATUS_ZOMBIE,
               20, message="the new daemon to stop")
    assert os.path.exists(path) and os.stat(path).st_ino == inode
