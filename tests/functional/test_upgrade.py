"""Zero-downtime upgrade of the daemon itself (issue 16), on real processes.

A daemon serving RPC on a unix socket, HTTP, and a prefork pool on a shared
TCP listener is replaced by a new one started from its own command line,
while client threads connect in a loop to the three sockets: every
connection must be answered, by the old daemon or the new one, and the pid
file must be locked at every moment.  The new code is told apart by
the version string each daemon reads from ``version.txt`` at start, which the
test rewrites before upgrading.
"""

import os
import socket
import sys
import threading
import time

import psutil
import pytest

from support import (RawConnection, command, free_port, gone, pid_from_file, recv_until_closed, rpc, run,
                     wait_gone, wait_until)
from support.scripts import write_script

UPGRADE_DAEMON = """
from gevent.pool import Pool
from gevent.server import StreamServer

VERSION_FILE = os.path.join(HERE, "version.txt")


def read_version():
    with open(VERSION_FILE) as f:
        return f.read().strip()


class EchoWorker(Worker):
    \"\"\"One instance of the pool: answers each line with "VERSION LINE".\"\"\"

    def spinup(self):
        self.version = read_version()
        if self.version == "hang":
            gevent.sleep(3600)  # never ready
        # A pool: stop() then waits for the connections in flight.
        self.server = StreamServer(self.listener, self.handle, spawn=Pool())
        self.server.start()

    def handle(self, sock, address):
        with sock:
            for line in sock.makefile("rb"):
                sock.sendall(self.version.encode() + b" " + line)

    def loop(self):
        pass

    def spindown(self):
        self.server.stop(timeout=2)


class UpgradeDaemon(EchoDaemon):
    def setup(self):
        super().setup()
        self.version = read_version()
        if self.version == "fail-setup":
            raise RuntimeError("setup() refuses version fail-setup")

        @self.rpc.method("test.version", returns=str)
        def version():
            return self.version

        @self.rpc.method("test.slow", params=[("seconds", float)], returns=str)
        def slow(seconds):
            gevent.sleep(seconds)
            return self.version


if read_version() == "exit":
    sys.exit(7)   # a new daemon that dies before it even starts
if read_version() == "mute":
    # A new daemon that closes its ready pipe without a word and lives on.
    # (closerange: gevent's patched os.close defers the close to a check
    # watcher, which before gevent 26.9 waits for the loop's next wake-up,
    # here an hour away.)
    fd = int(os.environ["GDAEMON_UPGRADE_FD"])
    os.closerange(fd, fd + 1)
    time.sleep(3600)

daemon = UpgradeDaemon({"description": "Upgrade Daemon",
                        "upgradetimeout": float(os.environ.get("UPGRADE_TIMEOUT", "30")),
                        "websockethandler": os.environ.get("HTTP")})
daemon.workers.install(EchoWorker("echo"), looptime=1, forever=True, instances=2,
                       listen="tcp://127.0.0.1:%s" % os.environ["ECHO_PORT"])
daemon.init()
"""


def set_version(workdir, version):
    with open(os.path.join(workdir, "version.txt"), "w") as f:
        f.write(version + "\n")


@pytest.fixture
def upgradable(workdir):
    """``(script, env)`` of the upgrade daemon, version v1."""
    set_version(workdir, "v1")
    return write_script(workdir, UPGRADE_DAEMON), {"ECHO_PORT": str(free_port())}


def address(workdir):
    return "unix://" + os.path.join(workdir, "daemon.sock")


def echo_line(port, text, timeout=10.0):
    """One connection to the pool: send a line, return the answer line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(text.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode()


def wait_all_looping(proc):
    """Wait until every worker is LOOPING (they read version.txt as they start)."""
    wait_until(lambda: set(proc.result("daemon.status")["workers"].values()) == {1}, 15,
               message="every worker LOOPING")


class Hammer(threading.Thread):
    """Connects in a loop; counts answered connections and every failure.

    A refused or reset connection, a timeout or one closed without its
    answer is a failure.
    """

    def __init__(self, attempt, name):
        super().__init__(daemon=True)
        self.attempt = attempt
        self.label = name
        self.stopping = threading.Event()
        self.answered = []   # monotonic times of answered connections
        self.failures = []

    def run(self):
        while not self.stopping.is_set():
            try:
                ok = self.attempt()
            except OSError as exc:
                self.failures.append("%s: %r at %.3f" % (self.label, exc, time.monotonic()))
                continue
            if ok:
                self.answered.append(time.monotonic())
            else:
                self.failures.append("%s: unanswered at %.3f" % (self.label, time.monotonic()))

    def stop(self):
        self.stopping.set()
        self.join(30)


def rpc_attempt(workdir):
    def attempt():
        with RawConnection(address(workdir), timeout=10) as conn:
            response = conn.call("examples.echo", {"message": "hi"})
        return response is not None and response.get("result") == "hi"
    return attempt


def pidfile_probe(workdir):
    """What --status and --stop look at: a live daemon holds the pid file's lock."""
    from gdaemon.process import pidfile_owner
    path = os.path.join(workdir, "daemon.pid")

    def attempt():
        time.sleep(0.001)
        return pidfile_owner(path) is not None
    return attempt


def http_attempt(port):
    body = b'{"jsonrpc":"2.0","method":"examples.echo","params":{"message":"hi"},"id":1}'
    request = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def attempt():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            data = recv_until_closed(sock)
        return data.startswith(b"HTTP/1.1 200") and b'"result":"hi"' in data
    return attempt


def pool_attempt(port):
    def attempt():
        answer = echo_line(port, "hi")
        return answer.endswith(" hi\n")
    return attempt


def test_upgrade_refuses_no_connection_and_runs_the_new_code(upgradable, workdir, spawn):
    script, env = upgradable
    port = int(env["ECHO_PORT"])
    http_port = free_port()
    env = dict(env, HTTP="tcp://127.0.0.1:%d" % http_port)
    old = spawn([sys.executable, script, "-f"], env=env)
    wait_all_looping(old)
    assert echo_line(port, "x") == "v1 x\n"
    old_pid = old.result("daemon.status")["pid"]
    hammers = ([Hammer(rpc_attempt(workdir), "rpc") for _ in range(2)]
               + [Hammer(pool_attempt(port), "pool") for _ in range(2)]
               + [Hammer(http_attempt(http_port), "http") for _ in range(2)]
               + [Hammer(pidfile_probe(workdir), "pid file")])
    for hammer in hammers:
        hammer.start()
    try:
        wait_until(lambda: all(h.answered for h in hammers), 10, message="every client to be answered")
        set_version(workdir, "v2")
        began = time.monotonic()
        response = rpc(address(workdir), "daemon.upgrade", timeout=60)
        assert response.get("result") is True, response
        assert old.wait(30) == 0, old.output()   # the old daemon handed over and exited 0
        ended = time.monotonic()
        # Some more connections to the new daemon alone.
        count = sum(len(h.answered) for h in hammers)
        wait_until(lambda: sum(len(h.answered) for h in hammers) > count + 20, 10,
                   message="connections answered after the upgrade")
    finally:
        for hammer in hammers:
            hammer.stop()
    failures = [f for h in hammers for f in h.failures]
    assert failures == [], "%d connections failed: %s (upgrade from %.3f to %.3f)" % (
        len(failures), failures[:5], began, ended)
    during = [t for h in hammers for t in h.answered if began <= t <= ended]
    assert during, "no connection was answered during the upgrade"
    # The new code answers, on both sockets.
    assert rpc(address(workdir), "test.version")["result"] == "v2"
    assert echo_line(port, "y") == "v2 y\n"
    status = rpc(address(workdir), "daemon.status")["result"]
    assert status["pid"] != old_pid and status["replaced_pid"] == old_pid and status["upgrades"] == 1
    # The pid file names the new daemon, and the console finds it.
    wait_until(lambda: pid_from_file(os.path.join(workdir, "daemon.pid")) == status["pid"], 10,
               message="the new pid in the pid file")
    completed = run([sys.executable, script, "--status"], workdir, env=env)
    assert completed.returncode == 0 and str(status["pid"]) in completed.stdout, completed.stdout
    completed = run([sys.executable, script, "--stop"], workdir, env=env, timeout=40)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert gone(status["pid"])
    assert not os.path.exists(os.path.join(workdir, "daemon.sock"))
    assert not os.path.exists(os.path.join(workdir, "daemon.pid"))


@pytest.mark.parametrize("version,timeout,reason", [
    ("fail-setup", "30", "setup() refuses version fail-setup"),
    ("hang", "2", "not ready within 2s"),
    ("exit", "30", "exited during start-up (exit status 7)"),
    # Told apart from "not ready" only if it closes its pipe within
    # upgradetimeout: its interpreter's start takes 0.4 s, several on a loaded
    # machine.  (The old daemon then waits out the timeout for it to exit.)
    ("mute", "6", "closed its pipe without a word"),
])
def test_failed_upgrade_leaves_the_old_daemon_serving(upgradable, workdir, spawn, version, timeout, reason):
    script, env = upgradable
    env = dict(env, UPGRADE_TIMEOUT=timeout)
    port = int(env["ECHO_PORT"])
    old = spawn([sys.executable, script, "-f"], env=env)
    wait_all_looping(old)
    assert echo_line(port, "x") == "v1 x\n"
    before = old.result("daemon.status")
    workers_before = set(before["workers"])
    set_version(workdir, version)
    response = rpc(address(workdir), "daemon.upgrade", timeout=60)
    assert response["error"]["code"] == -32010, response
    assert reason in response["error"]["message"], response
    # Unchanged: same pid, same code, same workers, same pid file; the new one is gone.
    status = old.result("daemon.status")
    assert status["pid"] == before["pid"] and status["upgrades"] == 0 and set(status["workers"]) == workers_before
    assert os.path.exists(os.path.join(workdir, "daemon.sock"))
    assert rpc(address(workdir), "test.version")["result"] == "v1"
    assert echo_line(port, "z") == "v1 z\n"
    assert pid_from_file(os.path.join(workdir, "daemon.pid")) == before["pid"]
    wait_until(lambda: not [p for p in psutil.Process(before["pid"]).children(recursive=True)
                            if "GDAEMON_UPGRADE_FD" in p.environ()], 10, message="the new daemon to be gone")
    assert "upgrade failed" in old.output()
    # It can still be upgraded, then stopped.
    set_version(workdir, "v3")
    assert rpc(address(workdir), "daemon.upgrade", timeout=60)["result"] is True
    assert old.wait(30) == 0
    assert rpc(address(workdir), "test.version")["result"] == "v3"
    completed = run([sys.executable, script, "--stop"], workdir, env=env, timeout=40)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_console_upgrade_of_a_detached_daemon(upgradable, workdir):
    script, env = upgradable
    port = int(env["ECHO_PORT"])
    completed = run([sys.executable, script, "-d"], workdir, env=env, timeout=30)
    assert completed.returncode == 0, completed.stderr
    first = pid_from_file(os.path.join(workdir, "daemon.pid"))
    set_version(workdir, "v2")
    completed = run([sys.executable, script, "--upgrade"], workdir, env=env, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    second = pid_from_file(os.path.join(workdir, "daemon.pid"))
    assert second != first and gone(first)
    assert "%d replaced pid %d" % (second, first) in completed.stdout
    assert echo_line(port, "d") == "v2 d\n"
    assert rpc(address(workdir), "test.version")["result"] == "v2"
    # Detached like any -d daemon: its own session, no terminal, cwd /.
    proc = psutil.Process(second)
    assert proc.cwd() == "/" and os.getsid(second) != os.getsid(0)
    completed = run([sys.executable, script, "--status"], workdir, env=env)
    assert completed.returncode == 0 and str(second) in completed.stdout
    # gdaemon-ctl does the same.
    set_version(workdir, "v3")
    completed = run([command("gdaemon-ctl"), "-a", address(workdir), "upgrade"], workdir, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    third = wait_until(lambda: pid_from_file(os.path.join(workdir, "daemon.pid")) != second and
                       pid_from_file(os.path.join(workdir, "daemon.pid")), 10, message="the third pid")
    assert "pid %d replaced pid %d" % (third, second) in completed.stdout
    wait_gone([second], 30)
    assert rpc(address(workdir), "test.version")["result"] == "v3"
    completed = run([sys.executable, script, "--stop"], workdir, env=env, timeout=40)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert gone(third)
    completed = run([sys.executable, script, "--upgrade"], workdir, env=env)
    assert completed.returncode == 3 and "not running" in completed.stderr


EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "prefork_echo.py")


def test_readme_recipe_upgrades_the_prefork_example(workdir):
    """README, "An upgrade without downtime": -d, --upgrade, --status, --stop."""
    port = free_port()
    env = {"ECHO_LISTEN": "tcp://127.0.0.1:%d" % port}
    argv = [sys.executable, os.path.abspath(EXAMPLE)]
    assert run(argv + ["-d"], workdir, env=env, timeout=30).returncode == 0
    first = pid_from_file(os.path.join(workdir, "daemon.pid"))
    assert echo_line(port, "a").endswith(" says a\n")
    completed = run(argv + ["--upgrade"], workdir, env=env, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    second = pid_from_file(os.path.join(workdir, "daemon.pid"))
    assert second != first
    completed = run(argv + ["--status"], workdir, env=env)
    assert completed.returncode == 0 and "(pid %d)" % second in completed.stdout
    assert echo_line(port, "b").endswith(" says b\n")
    assert run(argv + ["--stop"], workdir, env=env, timeout=40).returncode == 0


def test_a_request_that_reached_the_old_daemon_is_answered_by_it(upgradable, workdir, spawn):
    script, env = upgradable
    old = spawn([sys.executable, script, "-f"], env=env)
    wait_all_looping(old)
    answers = []
    conn = RawConnection(address(workdir), timeout=30)
    try:
        conn.send({"jsonrpc": "2.0", "method": "test.slow", "params": {"seconds": 2.0}, "id": 1})
        reader = threading.Thread(target=lambda: answers.append(conn.read()))
        reader.start()
        # The old daemon holds that connection (the request is in its hands).
        wait_until(lambda: old.result("daemon.status")["connections"] >= 2, 10, message="the slow call's connection")
        set_version(workdir, "v2")
        assert rpc(address(workdir), "daemon.upgrade", timeout=60)["result"] is True
        reader.join(30)
    finally:
        conn.close()
    assert answers == [{"jsonrpc": "2.0", "result": "v1", "id": 1}]
    assert old.wait(30) == 0
    assert rpc(address(workdir), "test.version")["result"] == "v2"
