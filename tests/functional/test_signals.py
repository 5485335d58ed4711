"""POSIX signals as events on the daemon's bus, default listeners (docs/reference/events.rst).

Each test writes an exec script whose receivers append a line to
``events.txt`` in the work directory, runs it in the foreground and sends it
real signals.  Written from the documentation alone.
"""

import os
import random
import signal
import sys
import time

import pytest

from support import wait_until
from support.scripts import write_script

#: The top of every script body here: ``append(text)`` writes a line to events.txt.
SIGNAL_DAEMON = """
import socket

import gdaemon.listeners

LOG = os.path.join(HERE, "events.txt")


def append(text):
    with open(LOG, "a") as f:
        f.write(text + "\\n")
"""

#: Receivers for the common tests.
RECEIVERS_SCRIPT = """
daemon = EchoDaemon({"description": "Signal Daemon"})


@daemon.on("posix.sigusr1")
def on_usr1(sender, **kw):
    append("sigusr1 signum=%s sender_is_daemon=%s" % (kw.get("signum"), sender is daemon))


def on_usr2(sender, **kw):
    # Cooperative blocking is allowed: we are in a greenlet, not a raw handler.
    gevent.sleep(0.001)
    append("sigusr2 signum=%s" % kw.get("signum"))


daemon.events.signal("posix.sigusr2").connect(on_usr2, weak=False)


@daemon.on("posix.sighup")
def on_hup(sender, **kw):
    append("sighup signum=%s" % kw.get("signum"))


@daemon.on("posix.sigwinch")
def exploding(sender, **kw):
    append("sigwinch exploding")
    raise RuntimeError("receiver-boom")


@daemon.on("posix.sigwinch")
def survivor(sender, **kw):
    append("sigwinch survivor")


@daemon.on("posix.sigquit")
def self_call(sender, **kw):
    # Real socket I/O from a receiver: a call to the daemon's own RPC socket.
    path = daemon.config.sockethandler[len("unix://"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b'{"jsonrpc":"2.0","method":"examples.echo","params":["self"],"id":1}\\n')
    data = b""
    while not data.endswith(b"\\n"):
        data += s.recv(4096)
    s.close()
    append("sigquit selfcall " + data.decode().strip())


for name in ("daemon.start", "daemon.ready", "daemon.reload", "daemon.stop"):
    def lifecycle(sender, _name=name, **kw):
        append("lifecycle " + _name)
    daemon.on(name)(lifecycle)

daemon.init()
"""


def write_sigdaemon(directory, body):
    return write_script(directory, SIGNAL_DAEMON + body, name="sigdaemon.py")


def lines(workdir):
    try:
        with open(os.path.join(workdir, "events.txt")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_line(workdir, predicate, timeout=5, message="a line in events.txt"):
    return wait_until(lambda: [l for l in lines(workdir) if predicate(l)], timeout,
                      message="%s (have %r)" % (message, lines(workdir)[-10:]))


@pytest.fixture
def sigdaemon(workdir, spawn):
    script = write_sigdaemon(workdir, RECEIVERS_SCRIPT)
    return spawn([sys.executable, script, "-f"])


def test_posix_events_reach_receivers_with_signum_and_sender(sigdaemon, workdir):
    sigdaemon.signal(signal.SIGUSR1)
    found = wait_line(workdir, lambda l: l.startswith("sigusr1"))
    assert found[0] == "sigusr1 signum=%d sender_is_daemon=True" % signal.SIGUSR1


def test_receiver_connected_with_weak_false_may_block_cooperatively(sigdaemon, workdir):
    sigdaemon.signal(signal.SIGUSR2)
    found = wait_line(workdir, lambda l: l.startswith("sigusr2"))
    assert found[0] == "sigusr2 signum=%d" % signal.SIGUSR2


def test_receiver_may_do_socket_io_to_its_own_daemon(sigdaemon, workdir):
    sigdaemon.signal(signal.SIGQUIT)
    found = wait_line(workdir, lambda l: l.startswith("sigquit"))
    assert '"result":"self"' in found[0].replace(" ", ""), found
    assert sigdaemon.result("examples.echo", ["ok"]) == "ok"


def test_lifecycle_events_in_order(sigdaemon, workdir):
    # spawn() waited until it serves: start and ready are already recorded.
    life = [l for l in lines(workdir) if l.startswith("lifecycle")]
    assert life == ["lifecycle daemon.start", "lifecycle daemon.ready"]
    sigdaemon.signal(signal.SIGTERM)
    assert sigdaemon.wait(10) == 0, sigdaemon.output()
    life = [l for l in lines(workdir) if l.startswith("lifecycle")]
    assert life == ["lifecycle daemon.start", "lifecycle daemon.ready", "lifecycle daemon.stop"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_repeated_stop_signals_still_exit_0(sigdaemon, workdir, signum):
    """Stopped by SIGTERM/SIGINT -> exit 0 (docs/reference/console.rst), files removed, even when the
    signal is repeated while the daemon is already stopping (systemd, a
    double Ctrl-C, an impatient admin)."""
    deadline = time.monotonic() + 10
    while sigdaemon.proc.poll() is None and time.monotonic() < deadline:
        try:
            sigdaemon.signal(signum)
        except ProcessLookupError:
            break
        time.sleep(0.001)  # the stimulus: one signal per millisecond until it is gone
    assert sigdaemon.wait(10) == 0, sigdaemon.output()[-2000:]
    assert "Traceback" not in sigdaemon.output()
    assert [l for l in lines(workdir) if l == "lifecycle daemon.stop"] == ["lifecycle daemon.stop"]
    assert not os.path.exists(os.path.join(workdir, "daemon.pid"))
    assert not os.path.exists(os.path.join(workdir, "daemon.sock"))


def test_a_failing_receiver_does_not_kill_the_daemon(sigdaemon, workdir):
    sigdaemon.signal(signal.SIGWINCH)
    wait_line(workdir, lambda l: l == "sigwinch exploding")
    # The other receiver of the same event still ran.
    wait_line(workdir, lambda l: l == "sigwinch survivor")
    assert sigdaemon.result("examples.echo", ["alive"]) == "alive"
    assert sigdaemon.proc.poll() is None
    # It was logged, not swallowed.
    wait_until(lambda: "receiver-boom" in sigdaemon.output(), 5, message="the error logged")


def test_sighup_emits_reload_and_keeps_connections(sigdaemon, workdir):
    with sigdaemon.connect() as conn:
        assert conn.result("examples.echo", ["before"]) == "before"
        sigdaemon.signal(signal.SIGHUP)
        wait_line(workdir, lambda l: l == "lifecycle daemon.reload")
        wait_line(workdir, lambda l: l.startswith("sighup"))
        assert conn.result("examples.echo", ["after"]) == "after"
    assert sigdaemon.proc.poll() is None
    # setup() is not run again: a reload is not a restart.
    life = [l for l in lines(workdir) if l.startswith("lifecycle")]
    assert life.count("lifecycle daemon.start") == 1


def test_signal_storm(sigdaemon, workdir):
    kinds = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP]
    rng = random.Random(1234)
    for i in range(1000):   # back to back, as fast as this process sends them
        os.kill(sigdaemon.pid, kinds[i % 3] if i < 3 else rng.choice(kinds))
    for prefix in ("sigusr1", "sigusr2", "sighup"):
        wait_line(workdir, lambda l, p=prefix: l.startswith(p), 10, message=prefix)
    # Still serving, on a fresh connection and repeatedly.
    with sigdaemon.connect() as conn:
        for i in range(20):
            assert conn.result("examples.echo", ["storm %d" % i]) == "storm %d" % i
    assert sigdaemon.proc.poll() is None
    assert "Traceback" not in sigdaemon.output()
    # Every line is whole: receivers never ran inside each other mid-write.
    for l in lines(workdir):
        assert l.split(" ")[0] in ("sigusr1", "sigusr2", "sighup", "lifecycle"), l
    # And it still stops cleanly.
    sigdaemon.signal(signal.SIGTERM)
    assert sigdaemon.wait(10) == 0, sigdaemon.output()[-2000:]


DISCONNECT_SCRIPT = """
daemon = EchoDaemon({"description": "Stubborn Daemon"})
# The default listeners are ordinary receivers a user can disconnect (docs/reference/events.rst).
daemon.events.signal("posix.sigterm").disconnect(gdaemon.listeners.stop_daemon)


@daemon.on("posix.sigterm")
def noted(sender, **kw):
    append("sigterm noted")


# Also from setup(), in case the defaults are connected after construction.
_original_setup = EchoDaemon.setup


def setup(self):
    _original_setup(self)
    self.events.signal("posix.sigterm").disconnect(gdaemon.listeners.stop_daemon)


EchoDaemon.setup = setup
daemon.init()
"""


def test_disconnecting_the_default_sigterm_listener(workdir, spawn):
    script = write_sigdaemon(workdir, DISCONNECT_SCRIPT)
    proc = spawn([sys.executable, script, "-f"])
    proc.signal(signal.SIGTERM)
    wait_line(workdir, lambda l: l == "sigterm noted")
    # It keeps serving: nothing stops it during the next half second.
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert proc.result("examples.echo", ["still"]) == "still"
        assert proc.proc.poll() is None
    # SIGINT still has its default listener.
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 0, proc.output()


def test_default_listeners_are_importable():
    import gdaemon.listeners
    assert callable(gdaemon.listeners.stop_daemon)
