"""Issue 7: the process layer as users run it.

Daemons started with ``-d`` (the launcher must return although workers were
forked), monkey-patched and unpatched workers running ``subprocess``, signals
sent to the whole process group as systemd does, logrotate, the pid file
under racing starters, a greenlet worker that blocks the hub, SIGCHLD.
Everything here runs real daemons as real processes.
"""

import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from support import RawConnection, gone, is_serving, pid_from_file, rpc, run, wait_gone, wait_until
from support.workers import (events, fd_targets, info, live_children, marks, standby_pids,
                             wait_looping, write_daemon, zombies)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
LOOPING = 1

pytestmark = pytest.mark.timeout(90)


def start_detached(workdir, argv, env=None, timeout=60.0):
    """Run ``argv`` with ``-d``; assert it returns 0; return the daemon's pid.

    A launcher that waited for its forked workers would never return: ``run``
    fails after ``timeout``.  (It returns in a second or two, several on a
    loaded machine: no tighter bound holds there.)
    """
    completed = run(argv + ["-d"], workdir, timeout=timeout, env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return pid_from_file(os.path.join(workdir, "daemon.pid"))


def stop_detached(workdir, argv, pid):
    completed = run(argv + ["--stop"], workdir, timeout=40)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    wait_gone(pid, 10)


def daemon_children(pid):
    return [p.pid for p in live_children(pid, standby=True)]


# -- every shipped example and the README's daemon, with -d and -f ----------------------

def readme_daemon_source():
    """The "Writing a daemon" example of README.rst, exactly as shown."""
    with open(os.path.join(ROOT, "README.rst")) as f:
        text = f.read()
    section = text[text.index("Writing a daemon\n"):]
    block = section[section.index(".. code-block:: python"):]
    lines = block.splitlines()[2:]
    code = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        code.append(line[4:])
    return "\n".join(code).strip() + "\n"


def test_readme_daemon_in_daemon_mode_and_foreground(workdir, spawn):
    source = readme_daemon_source()
    assert "daemon.init()" in source and "Worker" in source
    path = os.path.join(workdir, "readme_daemon.py")
    with open(path, "w") as f:   # the README's code as shown, no write_script prelude
        f.write(source)
    address = re.search(r'"sockethandler": "(unix://[^"]+)"', source).group(1)
    sock = "unix://" + os.path.join(workdir, address[len("unix://"):])
    argv = [sys.executable, path]

    pid = start_detached(workdir, argv)
    assert rpc(sock, "examples.echo", {"message": "hi"})["result"] == "hi"
    workers = rpc(sock, "worker.info")["result"]
    assert workers and all(w["status"] == LOOPING for w in workers)
    stop_detached(workdir, argv, pid)

    proc = spawn(argv + ["-f"], address=sock)
    assert proc.result("examples.echo", {"message": "again"}) == "again"
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.mark.parametrize("mode", ["-d", "-f"])
def test_copy_daemon_example(workdir, spawn, mode):
    with open(os.path.join(workdir, "test.txt"), "w") as f:
        f.write("hello\n")
    argv = [sys.executable, os.path.join(ROOT, "examples", "copy_daemon.py")]
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    if mode == "-d":
        pid = start_detached(workdir, argv)
    else:
        proc = spawn(argv + ["-f"])
        pid = proc.pid
    wait_until(lambda: os.path.exists(os.path.join(workdir, "copy_test.txt")), 10, message="first copy")
    assert rpc(sock, "handyman.changename")["result"] is True
    wait_until(lambda: os.path.exists(os.path.join(workdir, "copy_test_2.txt")), 10, message="copy 2")
    if mode == "-d":
        stop_detached(workdir, argv, pid)
        assert not os.path.exists(os.path.join(workdir, "daemon.sock"))
    else:
        proc.signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_gdaemon_echo_in_daemon_mode(workdir):
    echo = [os.path.join(os.path.dirname(sys.executable), "gdaemon-echo")]
    pid = start_detached(workdir, echo)
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    assert rpc(sock, "examples.echo", {"message": "x"})["result"] == "x"
    stop_detached(workdir, echo, pid)


def test_client_examples_talk_to_a_detached_daemon(workdir):
    port = _free_port()
    script = write_daemon(workdir, 'daemon.workers.install(Counter("c"), looptime=0.2, forever=True)',
                          config={"websockethandler": "tcp://127.0.0.1:%d" % port})
    pid = start_detached(workdir, [sys.executable, script])
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    completed = run([sys.executable, os.path.join(ROOT, "examples", "raw_client.py"), sock, "yo"],
                    workdir)
    assert completed.returncode == 0 and "yo" in completed.stdout, completed.stdout + completed.stderr
    # The websocket example follows events until interrupted.
    out = os.path.join(workdir, "ws.out")
    with open(out, "w") as sink:
        watcher = subprocess.Popen([sys.executable, "-u", os.path.join(ROOT, "examples", "websocket_client.py"),
                                    "ws://127.0.0.1:%d/rpc" % port], cwd=workdir, stdout=sink,
                                   stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "status:" in read(out), 10, message="status printed")
            wait_until(lambda: rpc(sock, "worker.restart", ["c"])["result"] and "worker.state" in read(out),
                       10, message="a pushed worker event")
        finally:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(10)
    stop_detached(workdir, [sys.executable, script], pid)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- descriptors: a child holds only what it should ------------------------------------------

def _memfd_inodes(pid):
    inodes = {}
    for fd, target in fd_targets(pid).items():
        if target.startswith("/memfd:"):
            try:
                inodes[fd] = os.stat("/proc/%d/fd/%d" % (pid, fd)).st_ino
            except OSError:
                pass
    return inodes


def allowed_fds(pid, daemon_pid):
    """The child's fds that are not stdio, the log file, its event loop or its channel
    (two doorbell pipes and, forked by the fork server, the shared memory it maps)."""
    targets = fd_targets(pid)
    daemon_pipes = {t for t in fd_targets(daemon_pid).values() if t.startswith("pipe:")}
    daemon_memfds = set(_memfd_inodes(daemon_pid).values())
    own_memfds = _memfd_inodes(pid)
    unexpected = {}
    pipes = []
    for fd, target in targets.items():
        if fd <= 2 or target.endswith("daemon.log") or target.startswith("anon_inode:"):
            continue
        if target.startswith("pipe:") and target in daemon_pipes:
            pipes.append(target)  # its channel's doorbells: the daemon holds the other ends
            continue
        if len(own_memfds) == 1 and own_memfds.get(fd) in daemon_memfds:
            continue  # its channel's shared memory, which the daemon maps too
        unexpected[fd] = target
    return unexpected, pipes


def test_workers_and_standby_hold_only_their_own_descriptors(workdir):
    script = write_daemon(workdir, """
        daemon.workers.install(Counter("a"), looptime=0.2, forever=True)
        daemon.workers.install(Counter("b"), looptime=0.2, forever=True)
        daemon.workers.install(GCounter("g"), looptime=0.2)
    """, config={"websockethandler": "tcp://127.0.0.1:%d" % _free_port()})
    pid = start_detached(workdir, [sys.executable, script])
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    # An open RPC connection must not be inherited by children forked later.
    with RawConnection(sock) as conn:
        assert conn.result("worker.restart", ["a"]) is True
        wait_until(lambda: standby_pids(pid), 10, message="a standby")
        children = {"a": info_of(sock, "a")["pid"], "b": info_of(sock, "b")["pid"],
                    "standby": standby_pids(pid)[0]}
        for name, child in children.items():
            unexpected, pipes = allowed_fds(child, pid)
            assert unexpected == {}, "%s (pid %d) holds %r" % (name, child, unexpected)
            assert len(pipes) == 2, "%s holds pipes %r" % (name, pipes)
        # The daemon itself holds no pipe of the -d launcher: the launcher returned.
    stop_detached(workdir, [sys.executable, script], pid)


def info_of(sock, name):
    return rpc(sock, "worker.info", [name])["result"]


# -- a fresh default loop in forked workers: subprocess under monkey-patching ----------------

SUBPROCESS_WORKER = '''
import subprocess


class Runner(Worker):
    def spinup(self):
        self.results = []

    def loop(self):
        pass

    @exposed
    def run(self, code):
        completed = subprocess.run(["sh", "-c", "echo out; exit %d" % code], capture_output=True)
        return [completed.returncode, completed.stdout.decode().strip()]

    @exposed
    def default_loop(self):
        return gevent.get_hub().loop.default


class SubprocessDaemon(TestDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.run", params=[("code", int)], returns=int)
        def run_in_daemon(code):
            return subprocess.run(["sh", "-c", "exit %d" % code]).returncode

        @self.rpc.method("test.orphan", returns=int)
        def orphan():
            # Started and never waited for: the daemon must reap it anyway.
            return subprocess.Popen(["sh", "-c", "exit 0"]).pid


TestDaemon = SubprocessDaemon
'''


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "unpatched"])
@pytest.mark.parametrize("mode", ["-d", "-f"])
def test_worker_runs_subprocess(workdir, spawn, patched, mode):
    script = write_daemon(workdir, """
        daemon.workers.install(Runner("runner"), looptime=0.5, forever=True)
        daemon.workers.install(Counter("plain"), looptime=0.5)
    """, extra=SUBPROCESS_WORKER, patched=patched)
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    if mode == "-d":
        pid = start_detached(workdir, [sys.executable, script])
    else:
        pid = spawn([sys.executable, script, "-f"]).pid
    wait_until(lambda: info_of(sock, "runner")["status"] == LOOPING, 10, message="runner looping")
    assert rpc(sock, "worker.call", ["runner", "default_loop"])["result"] is True
    assert rpc(sock, "worker.call", ["runner", "run", [7]])["result"] == [7, "out"]
    assert rpc(sock, "worker.call", ["runner", "run", [0]])["result"] == [0, "out"]
    # And in the daemon itself, with workers watched by child watchers.
    assert rpc(sock, "test.run", [5])["result"] == 5
    orphan = rpc(sock, "test.orphan")["result"]
    wait_until(lambda: gone(orphan) and orphan not in zombies(pid), 10, message="orphan reaped")
    # A respawned worker (born from the standby) has a working default loop too.
    old = info_of(sock, "runner")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: info_of(sock, "runner")["pid"] not in (None, old)
               and info_of(sock, "runner")["status"] == LOOPING, 10, message="respawn")
    assert rpc(sock, "worker.call", ["runner", "run", [3]])["result"] == [3, "out"]
    if mode == "-d":
        stop_detached(workdir, [sys.executable, script], pid)


# -- signals sent to the whole process group ---------------------------------------------------

SIGNAL_WORKER = '''
class SignalCounter(Counter):
    def spinup(self):
        super().spinup()
        for name in ("posix.sighup", "posix.sigusr1", "posix.sigusr2", "posix.sigwinch",
                     "posix.sigquit"):
            self.events.signal(name).connect(self.on_posix, weak=False)

    def on_posix(self, sender, signum=None, **kw):
        mark(self.name, "signal %d %d" % (signum, os.getpid()))
'''


def test_process_group_signals_leave_everyone_alive(workdir):
    script = write_daemon(workdir, """
        daemon.workers.install(SignalCounter("w"), looptime=0.1, forever=True)
        daemon.workers.install(Counter("once"), looptime=0.1)   # not forever: its death stops the daemon
    """, extra=SIGNAL_WORKER)
    pid = start_detached(workdir, [sys.executable, script])
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    wait_until(lambda: all(i["status"] == LOOPING for i in rpc(sock, "worker.info")["result"]), 10,
               message="workers looping")
    wait_until(lambda: standby_pids(pid), 10, message="a standby")
    pgid = os.getpgid(pid)
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGQUIT):
        worker = info_of(sock, "w")["pid"]
        os.killpg(pgid, signum)
        wait_until(lambda: "signal %d %d" % (signum, worker) in marks(workdir, "w"), 10,
                   message="posix event %d in the worker" % signum)
        assert is_serving(sock)
        for name in ("w", "once"):
            assert info_of(sock, name)["status"] == LOOPING
        assert info_of(sock, "w")["pid"] == worker, "the worker was replaced after %d" % signum
    # SIGHUP to the group: the daemon reloads (workers restarted one by one), nobody dies of it.
    os.killpg(pgid, signal.SIGHUP)
    wait_until(lambda: is_serving(sock) and all(i["status"] == LOOPING and i["restarts"] >= 1
                                                 for i in rpc(sock, "worker.info")["result"]), 20,
               message="reload after SIGHUP")
    assert not events(workdir, "worker.failed"), events(workdir, "worker.failed")
    exits = [e["data"]["exitcode"] for e in events(workdir, "worker.exited")]
    assert all(code == 0 for code in exits), exits
    # SIGTERM to the group (systemctl stop): a clean stop, exit 0, nobody left.
    children = daemon_children(pid)
    os.killpg(pgid, signal.SIGTERM)
    wait_gone([pid] + children, 20)
    with open(os.path.join(workdir, "daemon.log")) as f:
        log = f.read()
    assert "stopped (exit 0)" in log, log[-2000:]


def test_sigterm_to_the_group_of_a_foreground_daemon_exits_0(workdir, spawn):
    script = write_daemon(workdir, """
        daemon.workers.install(Counter("only"), looptime=0.1)
    """)
    proc = spawn([sys.executable, script, "-f"])
    wait_looping(proc, "only")
    os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
    assert proc.wait(20) == 0, proc.output()


# -- logrotate --------------------------------------------------------------------------------

LOGGING_WORKER = '''
class Talker(Counter):
    def spinup(self):
        super().spinup()
        self.events.signal("daemon.worker.say").connect(self.say, weak=False)

    def say(self, sender, payload=None, **kw):
        self.logger.warning("worker says %s", payload)


class LoggingDaemon(TestDaemon):
    def setup(self):
        super().setup()

        @self.rpc.method("test.say", params=[("text", str)], returns=bool)
        def say(text):
            self.logger.warning("daemon says %s", text)
            return True


TestDaemon = LoggingDaemon
'''


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("how", ["sigusr1", "sighup"])
def test_logrotate_moves_daemon_and_worker_lines_to_the_new_file(workdir, how):
    script = write_daemon(workdir, """
        daemon.workers.install(Talker("t1"), looptime=0.2, forever=True)
        daemon.workers.install(Talker("t2"), looptime=0.2, forever=True)
    """, extra=LOGGING_WORKER)
    pid = start_detached(workdir, [sys.executable, script])
    sock = "unix://" + os.path.join(workdir, "daemon.sock")
    log, rotated = os.path.join(workdir, "daemon.log"), os.path.join(workdir, "daemon.log.1")
    wait_until(lambda: all(i["status"] == LOOPING for i in rpc(sock, "worker.info")["result"]), 10,
               message="workers looping")
    wait_until(lambda: standby_pids(pid), 20, message="a standby")
    before = {i["name"]: i["pid"] for i in rpc(sock, "worker.info")["result"]}
    os.rename(log, rotated)  # what logrotate does, then it signals the daemon only
    os.kill(pid, signal.SIGUSR1 if how == "sigusr1" else signal.SIGHUP)
    wait_until(lambda: os.path.exists(log), 10, message="log reopened")
    if how == "sighup":
        # Both restarted by the reload: new instances, LOOPING.  (Not "restarts
        # >= 1": counted from the start, it may be so before this reload has
        # restarted the second one, and a command sent to an instance about to
        # be restarted is lost with it.)
        wait_until(lambda: all(i["pid"] not in (None, before[i["name"]]) and i["status"] == LOOPING
                               for i in rpc(sock, "worker.info")["result"]), 30, message="reload")
    for name in ("t1", "t2"):
        assert rpc(sock, "worker.send", [name, "say", "hello-%s" % name])["result"] > 0
    rpc(sock, "test.say", ["hello-daemon"])
    wait_until(lambda: all("says hello-%s" % n in read(log) for n in ("t1", "t2", "daemon")), 10,
               message="new lines in the new file")
    # The workers' records also reach the daemon's in-memory log (forwarded over their channel).
    def tail():
        return "\n".join(rpc(sock, "daemon.logtail", [50])["result"])
    wait_until(lambda: all("worker says hello-%s" % n in tail() for n in ("t1", "t2")), 10,
               message="the workers' lines in daemon.logtail")
    # A respawn after the rotation writes to the new file too (the standby was replaced).
    old = info_of(sock, "t1")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: (lambda i: i["pid"] not in (None, old) and i["status"] == LOOPING)(info_of(sock, "t1")),
               20, message="respawn")
    assert rpc(sock, "worker.send", ["t1", "say", "after-respawn"])["result"] > 0
    wait_until(lambda: "says after-respawn" in read(log), 10, message="respawned worker's line")
    old_text = read(rotated)
    for text in ("hello-t1", "hello-t2", "hello-daemon", "after-respawn"):
        assert text not in old_text
    stop_detached(workdir, [sys.executable, script], pid)


# -- standby: killed from outside, it comes back (it is not given up) --------------------------

def test_standby_killed_from_outside_is_replaced_every_time(workdir, spawn):
    script = write_daemon(workdir, 'daemon.workers.install(Counter("c"), looptime=0.1, forever=True)')
    proc = spawn([sys.executable, script, "-f"])
    wait_looping(proc, "c")
    seen = set()
    for _ in range(4):
        standby = wait_until(lambda: [p for p in standby_pids(proc.pid) if p not in seen], 20,
                             message="a new standby")[0]
        seen.add(standby)
        os.kill(standby, signal.SIGKILL)
    # Still in use after four external kills: a respawn activates it.
    wait_until(lambda: [p for p in standby_pids(proc.pid) if p not in seen], 40, message="standby")
    spare = standby_pids(proc.pid)[0]
    old = info(proc, "c")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: info(proc, "c")["pid"] == spare, 10, message="respawn from the standby")


# -- the pid file ----------------------------------------------------------------------------

def test_status_probe_never_takes_the_lock(workdir):
    echo = [os.path.join(os.path.dirname(sys.executable), "gdaemon-echo")]
    pid = start_detached(workdir, echo)
    # Many concurrent probes while starters race: none of them may hold the lock.
    probes = [subprocess.Popen(echo + ["--status"], cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for _ in range(10)]
    assert all(p.wait(20) == 0 for p in probes)
    stop_detached(workdir, echo, pid)
    # Now start while probes run: the start must never fail with "already running".
    for _ in range(3):
        probes = [subprocess.Popen(echo + ["--status"], cwd=workdir, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL) for _ in range(5)]
        pid = start_detached(workdir, echo)
        for p in probes:
            p.wait(20)
        stop_detached(workdir, echo, pid)


def test_racing_starters_never_yield_two_owners(workdir):
    echo = [os.path.join(os.path.dirname(sys.executable), "gdaemon-echo")]
    for _ in range(4):
        first = start_detached(workdir, echo)
        os.kill(first, signal.SIGTERM)  # stopping while two others start
        starters = [subprocess.Popen(echo + ["-d"], cwd=workdir, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE) for _ in range(2)]
        codes = [p.wait(30) for p in starters]
        wait_gone(first, 10)
        owners = [p for p in psutil.process_iter(["cmdline", "cwd"])
                  if _is_echo_in(p, workdir)]
        assert len(owners) <= 1, (codes, owners)
        if owners:
            assert pid_from_file(os.path.join(workdir, "daemon.pid")) == owners[0].pid
            assert codes.count(0) == 1, codes
            stop_detached(workdir, echo, owners[0].pid)
        # Every run ends clean, whoever won.
        run(echo + ["-s"], workdir)


def _is_echo_in(proc, workdir):
    try:
        cmdline = proc.info["cmdline"] or []
        # Its title (issue 16) replaced the command line.
        return (" ".join(part for part in cmdline if part) == "gdaemon: Echo Daemon [daemon]"
                and not gone(proc) and proc.ppid() == 1
                and os.path.exists(os.path.join(workdir, "daemon.pid")) and _holds(proc, workdir))
    except psutil.Error:
        return False


def _holds(proc, workdir):
    path = os.path.realpath(os.path.join(workdir, "daemon.sock"))
    try:
        return any(c.laddr == path for c in proc.net_connections(kind="unix"))
    except (psutil.Error, AttributeError):
        return True


# -- SIGCHLD ----------------------------------------------------------------------------------

def test_sigchld_is_an_event_and_children_are_reaped(workdir, spawn):
    script = write_daemon(workdir, 'daemon.workers.install(GCounter("g"), looptime=0.5)',
                          extra=SUBPROCESS_WORKER)
    proc = spawn([sys.executable, script, "-f"])
    wait_looping(proc, "g")
    proc.signal(signal.SIGCHLD)
    wait_until(lambda: events(proc.cwd, "posix.sigchld"), 10, message="posix.sigchld from kill -CHLD")
    # No forked worker at all: children started by handlers are still reaped.
    pids = [proc.result("test.orphan") for _ in range(5)]
    wait_until(lambda: all(gone(p) for p in pids) and not zombies(proc.pid), 10,
               message="no zombies")
    assert proc.result("test.run", [9]) == 9


# -- never signal a reaped pid: a crash in the restart window counts as a crash -----------

STALLING = '''
import gevent as _g


def stall_watchdog(sender, name=None, **kw):
    # Receivers run in the watchdog greenlet: this holds its queue for a while.
    if name == "b":
        _g.sleep(1.5)
'''


def test_crash_just_before_restart_counts_as_a_crash(workdir, spawn):
    script = write_daemon(workdir, """
        daemon.workers.install(Counter("a"), looptime=0.1, forever=True)
        daemon.workers.install(Counter("b"), looptime=0.1, forever=True)
        daemon.events.signal("worker.exited").connect(stall_watchdog, weak=False)
    """, extra=STALLING)
    proc = spawn([sys.executable, script, "-f"])
    a = wait_looping(proc, "a")
    b = wait_looping(proc, "b")
    os.kill(b["pid"], signal.SIGKILL)   # the watchdog handles it and stalls in the receiver
    wait_until(lambda: any(e["data"]["name"] == "b" for e in events(workdir, "worker.exited")), 10,
               message="b's exit seen")
    os.kill(a["pid"], signal.SIGKILL)   # reaped by libev; its exit waits in the queue
    wait_gone(a["pid"], 5)
    assert proc.result("worker.restart", ["a"]) is True
    failed = [e for e in events(workdir, "worker.failed") if e["data"]["name"] == "a"]
    assert failed and "SIGKILL" in failed[0]["data"]["reason"], events(workdir, "worker.")
    assert info(proc, "a")["status"] == LOOPING


# -- a greenlet worker that blocks the hub ------------------------------------------------------

BLOCKER = '''
import time as _time

from gevent import monkey as _monkey


class Blocker(GreenletWorker):
    def spinup(self):
        self.loops_run = 0

    def loop(self):
        self.loops_run += 1
        if self.loops_run >= 3:   # once the daemon serves
            mark(self.name, "blocking")
            _monkey.get_original("time", "sleep")(1e9)   # blocks the whole daemon
'''


def test_hub_blocking_greenlet_is_logged_and_stop_still_ends_everything(workdir):
    script = write_daemon(workdir, """
        daemon.workers.install(Counter("forked"), looptime=0.1, forever=True)
        daemon.workers.install(Blocker("blocker"), looptime=0.2)
    """, extra=BLOCKER, config={"shutdowntimeout": 1})
    argv = [sys.executable, script]
    pid = start_detached(workdir, argv)
    log = os.path.join(workdir, "daemon.log")
    wait_until(lambda: "the hub has been blocked" in read(log), 15, message="blocked hub logged")
    text = read(log)
    assert "Blocker" in text or "blocker" in text, text[-2000:]
    children = daemon_children(pid)
    assert children
    completed = run(argv + ["--stop"], workdir, timeout=60)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "kill" in (completed.stdout + completed.stderr).lower()
    wait_gone([pid] + children, 10)
