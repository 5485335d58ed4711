"""Issue 11: worker pools, worker.scale, start order, shared listeners (docs/reference/workers.rst).

Real daemons, real processes: instances are checked by pid, spindown and start
order by the marker files the workers write, the shared listener by a client
that keeps connecting while every instance is SIGKILLed in turn.
"""

import os
import signal
import socket
import sys
import threading
import time

import pytest

from support import rpc, run, wait_until
from support.workers import events, info, marks, wait_looping, write_daemon

pytestmark = pytest.mark.timeout(90)
SPINUP, LOOPING = 0, 1

POOL_WORKERS = '''
from gevent.server import StreamServer


class Member(Counter):
    @exposed
    def whoami(self):
        return {"name": self.name, "instance": self.instance, "pool": self.pool, "pid": os.getpid()}


class GMember(GCounter):
    @exposed
    def whoami(self):
        return {"name": self.name, "instance": self.instance, "pool": self.pool, "pid": os.getpid()}


class Stage(Worker):
    """Writes spinup/spindown lines with a clock to order.log; slow to start if asked."""
    slow = 0.0

    def spinup(self):
        gevent.sleep(self.slow)
        with open(os.path.join(HERE, "order.log"), "a") as f:
            f.write("%s up %.6f\\n" % (self.name, time.time()))

    def loop(self):
        pass

    def spindown(self):
        gevent.sleep(self.slow)
        with open(os.path.join(HERE, "order.log"), "a") as f:
            f.write("%s down %.6f\\n" % (self.name, time.time()))


class SlowStage(Stage):
    slow = 0.5


class Echo(Worker):
    """A prefork echo server on the pool's listener."""

    def spinup(self):
        self.server = StreamServer(self.listener, self.handle)
        self.server.start()

    def handle(self, sock, address):
        data = sock.recv(1024)
        sock.sendall(b"%d %s" % (os.getpid(), data))
        sock.close()

    def loop(self):
        pass

    def spindown(self):
        self.server.stop(timeout=1)
'''


@pytest.fixture
def start(spawn, workdir):
    def _start(install, **kw):
        path = write_daemon(workdir, install, extra=POOL_WORKERS, **kw)
        return spawn([sys.executable, path, "-f"])
    return _start


def all_looping(proc, names):
    return all(info(proc, name)["status"] == LOOPING for name in names)


@pytest.mark.parametrize("cls", ["Member", "GMember"])
def test_pool_instances_are_workers_of_their_own(start, cls):
    proc = start("""
        daemon.workers.install(%s("web"), looptime=0.2, forever=True, instances=3)
        daemon.workers.install(%s("single"), looptime=0.2, forever=True)
    """ % (cls, cls))
    names = ["web.0", "web.1", "web.2"]
    wait_until(lambda: all_looping(proc, names + ["single"]), 15, message="all looping")
    assert proc.result("worker.list") == names + ["single"]
    assert set(proc.result("daemon.status")["workers"]) == set(names + ["single"])
    who = [proc.result("worker.call", [name, "whoami"]) for name in names]
    assert [w["name"] for w in who] == names
    assert [w["instance"] for w in who] == [0, 1, 2]
    assert {w["pool"] for w in who} == {"web"}
    assert proc.result("worker.call", ["single", "whoami"])["name"] == "single"
    pids = [w["pid"] for w in who]
    if cls == "Member":
        assert len(set(pids)) == 3
        # A killed instance is respawned alone.
        os.kill(pids[1], signal.SIGKILL)
        wait_until(lambda: info(proc, "web.1")["pid"] not in (None, pids[1])
                   and info(proc, "web.1")["status"] == LOOPING, 10, message="web.1 back")
        assert info(proc, "web.0")["pid"] == pids[0] and info(proc, "web.2")["pid"] == pids[2]
        assert info(proc, "web.1")["restarts"] == 1 and info(proc, "web.0")["restarts"] == 0
    # Commands reach one instance.
    assert proc.result("worker.send", ["web.2", "note", "only-two"]) > 0
    wait_until(lambda: any("only-two" in line for line in marks(proc.cwd, "web.2")), 5,
               message="note delivered")
    assert not any("only-two" in line for line in marks(proc.cwd, "web.0"))


def test_scale_up_and_down(start, workdir):
    proc = start('daemon.workers.install(Member("pool"), looptime=0.2, forever=True, instances=2)')
    wait_until(lambda: all_looping(proc, ["pool.0", "pool.1"]), 15, message="looping")
    assert proc.result("worker.scale", ["pool", 5]) == ["pool.0", "pool.1", "pool.2", "pool.3", "pool.4"]
    # Once it answered, the new instances are LOOPING.
    assert all(info(proc, "pool.%d" % i)["status"] == LOOPING for i in range(5))
    assert proc.result("worker.list") == ["pool.%d" % i for i in range(5)]
    pids = {i: info(proc, "pool.%d" % i)["pid"] for i in range(5)}
    assert len(set(pids.values())) == 5

    assert proc.result("worker.scale", {"name": "pool", "instances": 2}) == ["pool.0", "pool.1"]
    assert proc.result("worker.list") == ["pool.0", "pool.1"]
    assert set(proc.result("daemon.status")["workers"]) == {"pool.0", "pool.1"}
    for i in (2, 3, 4):   # spun down gracefully, not killed
        assert "spindown %d" % pids[i] in marks(workdir, "pool.%d" % i)
    stopped = [e["data"]["name"] for e in events(workdir, "worker.state")
               if e["data"]["status"] == 3 and e["data"]["name"] in ("pool.2", "pool.3", "pool.4")]
    assert stopped[:3] == ["pool.4", "pool.3", "pool.2"], stopped   # highest index first
    assert info(proc, "pool.0")["pid"] == pids[0]

    # Errors: unknown pool, bad counts; a scale to 0 and back.
    assert proc.call("worker.scale", ["nope", 2])["error"]["code"] == -32002
    assert proc.call("worker.scale", ["pool", -1])["error"]["code"] == -32602
    assert proc.call("worker.scale", ["pool", "3"])["error"]["code"] == -32602
    assert proc.result("worker.scale", ["pool", 0]) == []
    assert proc.result("worker.list") == []
    assert proc.result("worker.scale", ["pool", 1]) == ["pool.0"]


def test_scale_starts_at_most_one_process_per_spare_cpu_at_once(start):
    """``worker.scale`` spawns a new forked instance only once fewer than
    ``starting_limit`` (the CPUs less one, at least one) are starting: each
    takes a core for its start, and the daemon needs one to answer."""
    limit = max(1, (os.cpu_count() or 2) - 1)
    proc = start('daemon.workers.install(Member("pool"), looptime=0.2, forever=True, instances=1)')
    wait_until(lambda: all_looping(proc, ["pool"]), 15, message="looping")
    result = {}
    scaler = threading.Thread(target=lambda: result.update(names=proc.result("worker.scale", ["pool", 12])))
    scaler.start()
    most = 0
    while scaler.is_alive():
        codes = proc.result("daemon.status")["workers"]
        most = max(most, sum(1 for code in codes.values() if code == SPINUP))
    scaler.join()
    assert result["names"] == ["pool"] + ["pool.%d" % i for i in range(1, 12)]
    assert all_looping(proc, result["names"])
    assert 1 <= most <= limit


def test_reload_keeps_the_scaled_size(start):
    proc = start('daemon.workers.install(Member("p"), looptime=0.2, forever=True, instances=1)')
    wait_looping(proc, "p")
    assert proc.result("worker.scale", ["p", 3]) == ["p", "p.1", "p.2"]
    before = {name: info(proc, name)["pid"] for name in ("p", "p.1", "p.2")}
    proc.signal(signal.SIGHUP)
    wait_until(lambda: all(info(proc, n)["pid"] not in (None, before[n]) and info(proc, n)["status"] == LOOPING
                           for n in before), 20, message="rolling reload")
    assert proc.result("worker.list") == ["p", "p.1", "p.2"]


def read_order(workdir):
    try:
        with open(os.path.join(workdir, "order.log")) as f:
            return [line.split() for line in f.read().splitlines()]
    except FileNotFoundError:
        return []


def test_start_and_stop_order(start, workdir):
    proc = start("""
        daemon.workers.install(Stage("web"), looptime=0.2, forever=True, instances=2, after=["db"])
        daemon.workers.install(SlowStage("db"), looptime=0.2, forever=True)
        daemon.workers.install(Stage("cache"), looptime=0.2, forever=True, after=["db"])
    """)
    wait_until(lambda: all_looping(proc, ["db", "web.0", "web.1", "cache"]), 20, message="all looping")
    order = read_order(workdir)
    ups = {name: float(when) for name, what, when in order if what == "up"}
    assert ups["db"] < ups["web.0"] and ups["db"] < ups["web.1"] and ups["db"] < ups["cache"], order
    # db was LOOPING (as an event) before web was even spawned.
    states = events(workdir, "worker.")
    db_looping = min(e["time"] for e in states if e["name"] == "worker.state"
                     and e["data"]["name"] == "db" and e["data"]["status"] == LOOPING)
    web_spawned = min(e["time"] for e in states if e["name"] == "worker.spawned"
                      and e["data"]["name"] == "web.0")
    assert db_looping <= web_spawned
    # A respawn waits for nothing: kill db, web stays up.
    os.kill(info(proc, "db")["pid"], signal.SIGKILL)
    wait_until(lambda: info(proc, "db")["restarts"] == 1 and info(proc, "db")["status"] == LOOPING, 10,
               message="db back")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    downs = {name: float(when) for name, what, when in read_order(workdir) if what == "down"}
    assert downs["web.0"] < downs["db"] and downs["web.1"] < downs["db"] and downs["cache"] < downs["db"]


def test_bad_after(workdir):
    unknown = write_daemon(workdir, 'daemon.workers.install(Member("web"), after=["ghost"])',
                           extra=POOL_WORKERS, name="unknown.py")
    completed = run([sys.executable, unknown, "-f"], workdir, timeout=30)
    assert completed.returncode == 1
    assert "web" in completed.stderr and "ghost" in completed.stderr and "Traceback" not in completed.stderr
    cycle = write_daemon(workdir, """
        daemon.workers.install(Member("a"), after=["c"])
        daemon.workers.install(Member("b"), after=["a"])
        daemon.workers.install(Member("c"), after=["b"])
    """, extra=POOL_WORKERS, name="cycle.py")
    completed = run([sys.executable, cycle, "-f"], workdir, timeout=30)
    assert completed.returncode == 1
    assert "cycle" in completed.stderr and all(n in completed.stderr for n in ("'a'", "'b'", "'c'"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(port, text, timeout=10.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(text)
        return sock.recv(1024)


@pytest.mark.parametrize("mode", ["-f", "-d"])
def test_listening_pool_refuses_no_connection_while_instances_die(spawn, workdir, mode):
    port = free_port()
    path = write_daemon(workdir, """
        daemon.workers.install(Echo("echo"), looptime=1, forever=True, instances=3,
                               listen="tcp://127.0.0.1:%d")
    """ % port, extra=POOL_WORKERS)
    if mode == "-d":
        assert run([sys.executable, path, "-d"], workdir).returncode == 0
    else:
        spawn([sys.executable, path, "-f"])
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    names = ["echo.0", "echo.1", "echo.2"]
    wait_until(lambda: all(rpc(sock, "worker.info", [n])["result"]["status"] == LOOPING for n in names),
               15, message="echo pool looping")
    served_by = set()
    answered = 0
    for name in names:
        victim = rpc(sock, "worker.info", [name])["result"]["pid"]
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:   # keep connecting while it dies and comes back
            reply = ask(port, b"hi")
            assert reply.endswith(b" hi"), reply
            served_by.add(int(reply.split()[0]))
            answered += 1
    assert answered > 10 and len(served_by) >= 2
    # A scale and a reload refuse nothing either.
    assert rpc(sock, "worker.scale", ["echo", 1])["result"] == ["echo.0"]
    assert ask(port, b"after-scale").endswith(b" after-scale")
    if mode == "-d":
        assert run([sys.executable, path, "--stop"], workdir, timeout=40).returncode == 0


EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "prefork_echo.py")


@pytest.mark.parametrize("mode", ["-d", "-f"])
def test_prefork_example(spawn, workdir, mode):
    port = free_port()
    env = {"ECHO_LISTEN": "tcp://127.0.0.1:%d" % port}
    argv = [sys.executable, os.path.abspath(EXAMPLE)]
    if mode == "-d":
        completed = run(argv + ["-d"], workdir, env=env)
        assert completed.returncode == 0, completed.stderr
    else:
        spawn(argv + ["-f"], env=env)
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    wait_until(lambda: len(rpc(sock, "worker.list")["result"]) == 4 and all(
        rpc(sock, "worker.info", [n])["result"]["status"] == LOOPING for n in rpc(sock, "worker.list")["result"]),
        15, message="4 echo instances")
    speakers = set()
    for i in range(20):
        reply = ask(port, b"line %d\n" % i)
        assert reply.endswith(b" says line %d\n" % i), reply
        speakers.add(reply.split()[0])
    assert speakers <= {b"echo.0", b"echo.1", b"echo.2", b"echo.3"}
    assert rpc(sock, "worker.scale", ["echo", 6])["result"] == ["echo.%d" % i for i in range(6)]
    served = sum(rpc(sock, "worker.call", ["echo.%d" % i, "stats"])["result"]["served"] for i in range(4))
    assert served == 20
    if mode == "-d":
        assert run(argv + ["--stop"], workdir, timeout=40).returncode == 0
