"""Helpers for worker tests: daemon scripts with workers, /proc inspection.

A test writes a small exec script into its work directory with
:func:`write_daemon` (a :func:`support.scripts.write_script` script holding
the common worker classes of :data:`HEAD` plus its own ``install`` lines) and
starts it with ``spawn([sys.executable, path, "-f"])``.
The workers leave marker lines in ``<name>.log`` files (``spinup PID``,
``loop N PID``, ``spindown PID``...) and the daemon appends every ``worker.*``
event to ``events.jsonl``, so tests can check what happened from outside.
"""

import json
import os
import textwrap
import time

import psutil

from . import wait_until
from .scripts import write_script

#: The worker library of every worker test daemon (after the
#: :data:`support.scripts.PRELUDE`): marker helpers, worker classes,
#: ``TestDaemon`` and the event recorder.
HEAD = '''\
def mark(name, text):
    with open(os.path.join(HERE, name + ".log"), "a") as f:
        f.write(text + "\\n")


class CounterMixin:
    """Counts its loops; logs spinup/loop/spindown; answers a few calls."""

    log_loops = True

    def spinup(self):
        self.count = 0
        self.notes = 0
        self.events.signal("daemon.worker.note").connect(self.on_note, weak=False)
        mark(self.name, "spinup %d" % os.getpid())

    def loop(self):
        self.count += 1
        if self.log_loops:
            mark(self.name, "loop %d %d" % (self.count, os.getpid()))

    def spindown(self):
        mark(self.name, "spindown %d" % os.getpid())

    def on_note(self, sender, payload=None, **kw):
        self.notes += 1
        mark(self.name, "note %s" % json.dumps(payload))
        self.send("noted", payload)

    @exposed
    def stats(self, verbose=False):
        return {"count": self.count, "pid": os.getpid(), "verbose": verbose, "notes": self.notes}

    @exposed
    def add(self, a, b=0):
        return a + b

    @exposed
    def boom(self):
        raise ValueError("boom")

    @exposed
    def refuse(self):
        raise RpcError(-32050, "refused", {"why": "testing"})

    @exposed
    def big(self, size):
        return "x" * size

    def _secret(self):
        return "hidden"

    def not_exposed(self):
        return "hidden"


class Counter(CounterMixin, Worker):
    pass


class GCounter(CounterMixin, GreenletWorker):
    pass


class Crasher(Worker):
    """Dies at once, every time."""

    def spinup(self):
        mark(self.name, "spinup %d" % os.getpid())

    def loop(self):
        raise RuntimeError("crash on purpose")


class GCrasher(GreenletWorker):
    def spinup(self):
        mark(self.name, "spinup %d" % os.getpid())

    def loop(self):
        raise RuntimeError("crash on purpose")


class Hanger(Worker):
    """Its second loop hangs forever (cooperatively), stalling its heartbeat."""

    def spinup(self):
        self.count = 0
        mark(self.name, "spinup %d" % os.getpid())

    def loop(self):
        self.count += 1
        if self.count >= 2:
            mark(self.name, "hang %d" % os.getpid())
            gevent.sleep(3600)


class GHanger(GreenletWorker):
    def spinup(self):
        self.count = 0
        mark(self.name, "spinup")

    def loop(self):
        self.count += 1
        if self.count >= 2:
            mark(self.name, "hang")
            gevent.sleep(3600)


class TestDaemon(EchoDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.ping", returns=str)
        def ping():
            return "pong"


def record(name, data, when):
    if name.startswith("worker.") or name == "posix.sigchld":
        with open(os.path.join(HERE, "events.jsonl"), "a") as f:
            f.write(json.dumps({"name": name, "data": data, "time": when}) + "\\n")
'''

#: The bottom of every script: build the daemon, install, run.
TAIL = '''
config = {"description": "Worker Test", "sockethandler": "unix://" + os.path.join(HERE, "daemon.sock")}
config.update(CONFIG)
daemon = TestDaemon(config)
daemon.events.add_tap(record)
install(daemon)
daemon.init()
'''


def write_daemon(workdir, install, extra="", config=None, name="workerd.py", patched=True):
    """Write a worker test daemon; return its path.

    :param install: body of ``install(daemon)`` (dedented), e.g.
        ``'daemon.workers.install(Counter("c"), looptime=0.05, forever=True)'``.
    :param extra: more module-level code (extra worker classes...).
    :param config: extra daemon config keys.
    :param patched: start with ``gevent.monkey.patch_all()`` as users do
        (``False``: the same script unpatched).
    """
    body = textwrap.indent(textwrap.dedent(install).strip(), "    ")
    source = (HEAD + textwrap.dedent(extra) + "\n\nCONFIG = %r\n\n\ndef install(daemon):\n%s\n"
              % (config or {}, body) + TAIL)
    return write_script(workdir, source, patched=patched, name=name)


# -- reading what the daemon and its workers did ---------------------------------

def marks(workdir, name):
    """The marker lines of worker ``name``."""
    try:
        with open(os.path.join(workdir, name + ".log")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def events(workdir, prefix=""):
    """Recorded events (dicts with name, data, time) whose name starts with ``prefix``."""
    try:
        with open(os.path.join(workdir, "events.jsonl")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if event["name"].startswith(prefix):
            found.append(event)
    return found


def info(proc, name):
    """``worker.info`` of ``name``."""
    return proc.result("worker.info", [name])


def wait_looping(proc, name, timeout=10.0, other_than=None):
    """Wait until worker ``name`` is LOOPING (with a pid other than ``other_than``); return its info."""
    def looping():
        found = info(proc, name)
        if found["status"] == 1 and found["pid"] and found["pid"] != other_than:
            return found
        return None
    return wait_until(looping, timeout, message="worker %r LOOPING" % name)


def wait_status(proc, name, status, timeout=10.0):
    return wait_until(lambda: info(proc, name)["status"] == status and info(proc, name),
                      timeout, message="worker %r in status %d" % (name, status))


# -- /proc ------------------------------------------------------------------------

def fd_targets(pid):
    """``{fd: readlink target}`` of process ``pid``."""
    base = "/proc/%d/fd" % pid
    targets = {}
    for entry in os.listdir(base):
        try:
            targets[int(entry)] = os.readlink(os.path.join(base, entry))
        except OSError:
            pass
    return targets


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def unix_socket_inode(path):
    """Inode (as in ``socket:[N]``) of the listening unix socket bound at ``path``."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path:
                return int(fields[6])
    return None


def kinds(targets, kind):
    """Inodes of the ``kind:[N]`` targets (``pipe``, ``socket``)."""
    prefix = kind + ":["
    return {int(t[len(prefix):-1]) for t in targets.values() if t.startswith(prefix)}


#: ``/proc/PID/comm`` of the daemon's pre-forked standby process.
STANDBY_COMM = "gdaemon-standby"
#: ``/proc/PID/comm`` of the fork server (gdaemon.workers.forkserver.FORKSERVER_COMM).
FORKSERVER_COMM = "gdaemon-forksrv"


def live_children(pid, standby=False, forkserver=False):
    """Children of ``pid`` that are not zombies: its workers, plus the standby if
    ``standby`` and the fork server if ``forkserver``."""
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    alive = []
    for child in children:
        try:
            name = child.name()
            if (child.status() != psutil.STATUS_ZOMBIE and (standby or name != STANDBY_COMM)
                    and (forkserver or name != FORKSERVER_COMM)):
                alive.append(child)
        except psutil.Error:
            pass
    return alive


def _named_children(pid, comm, **which):
    """Pids of the live children of ``pid`` whose ``/proc/PID/comm`` is ``comm``
    (children that die meanwhile, crash-looping workers, are left out)."""
    found = []
    for child in live_children(pid, **which):
        try:
            if child.name() == comm:
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def standby_pids(pid):
    """Pids of the daemon's standby process(es): 0 or 1 of them."""
    return _named_children(pid, STANDBY_COMM, standby=True)


def forkserver_pids(pid):
    """Pids of the daemon's fork server: 0 or 1 of them (or 2 while a retired one leaves)."""
    found = _named_children(pid, FORKSERVER_COMM, forkserver=True)
    if len(found) > 1:
        # A child the server forked a moment ago still has its name: by now it
        # has taken its own (a standby's, a worker's).
        time.sleep(0.05)
        found = [p for p in _named_children(pid, FORKSERVER_COMM, forkserver=True) if p in found]
    return found


def zombies(pid):
    """Zombie children of ``pid``."""
    found = []
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def cpu_seconds(pid):
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end
