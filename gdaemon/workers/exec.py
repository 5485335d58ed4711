"""Exec workers: supervise any program (:class:`ExecWorker`).

An exec worker is a forked worker whose child ``exec``\\ s a program instead
of running a Python loop.  It has the same life as every forked worker
(statuses, respawn and backoff, ``after=``, ``instances=``, events,
``/metrics``), made of these steps:

**Start.**  The daemon makes two pipes for the program's stdout and stderr
(:mod:`gdaemon.workers.output` reads them) and forks the child as usual
(through the fork server; never from the pre-forked standby, which could
not be given the pipes).  The child takes the worker's resource limits and
identity (:mod:`gdaemon.identity`), then (:func:`exec_program`) starts a
session of its own (so the program and everything it starts form one
process group the daemon can signal as a whole), puts ``/dev/null`` on
stdin, the pipes on stdout and stderr, the pool's listening socket on fd 3
(with ``LISTEN_FDS=1`` and ``LISTEN_PID``, systemd's protocol), makes every
other descriptor close-on-exec, restores default signal handling and
``exec``\\ s the command.  No gevent hub and no signal handlers are set up
before: the exec happens at once.

**LOOPING.**  Every descriptor the child holds is close-on-exec, the
channel's doorbell among them: the daemon reads EOF on it the moment the
exec succeeded, and the worker is LOOPING from then on (the daemon writes
its status block; the program never does).  When the exec fails, the child
writes the reason (``cannot exec 'x': No such file or directory``) on the
channel first and exits 127: the reason is logged and is the
``worker.failed`` event's.

**Stop.**  ``stopsignal`` goes to the process group; after the worker's
``timeout`` (when set) or ``shutdowntimeout``, SIGKILL does.  Whenever the
program ends (stopped or not), whatever is left of its process group is
SIGKILLed: a shell's grandchildren never outlive it.

**Talking to it.**  A program gets signals (``worker.signal``), not
commands: ``worker.send`` and ``worker.call`` do not reach it.
"""

from __future__ import annotations

import fcntl
import os
import signal
from typing import Dict, List, Optional, Sequence, Union, cast

import gevent

from ..errors import ChannelClosed, ChannelFull, ConfigError
from ..signalnames import signal_number
from .messages import EXEC_FAILED, encode
from .worker import Worker, WorkerStatus

__all__ = ["ExecWorker", "is_exec", "exec_program", "Program", "mark_looping",
           "mark_spindown", "report_exec_failure", "EXEC_FAILED_EXIT"]

#: Exit status of a child whose exec failed (a shell's "command not found").
EXEC_FAILED_EXIT = 127

#: Environment variables systemd gives the daemon, not its programs: socket
#: passing (set again for a worker with a listener of its own), and the
#: notify socket and watchdog (a systemd-aware program would otherwise tell
#: systemd "READY=1" or "STOPPING=1" in the daemon's name).
_DAEMON_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                     "WATCHDOG_USEC", "WATCHDOG_PID")


def is_exec(worker):
    """True for an :class:`ExecWorker` (a worker that runs a program)."""
    return isinstance(worker, ExecWorker)


class ExecWorker(Worker):
    """A forked worker that runs a program: supervise any command, as supervisord does.

    ::

        daemon.workers.install(ExecWorker("cache", ["redis-server", "--port", "6380"]),
                               forever=True)

    :param name: the worker's name.
    :param command: the program and its arguments, a list of strings (the
        program is looked up in ``PATH``); with ``shell=True``, one string
        run by ``/bin/sh -c``.
    :param env: variables added to the daemon's environment.  The program
        also gets ``GDAEMON_WORKER`` (this name) and ``GDAEMON_INSTANCE``
        (its index in its pool), and with ``listen=``, ``LISTEN_FDS=1`` and
        ``LISTEN_PID`` (its own pid): its socket is fd 3.
    :param cwd: the program's working directory (relative: to the daemon's
        ``basepath``); default: the daemon's.
    :param shell: run ``command`` (a string) with ``/bin/sh -c``.
    :param stopsignal: the signal that asks it to stop (``"TERM"``,
        ``"INT"``, ``"QUIT"``..., or a number), sent to its whole process
        group; SIGKILL follows after the worker's ``timeout`` or
        ``shutdowntimeout``.

    Each line it writes becomes a log record of logger ``gdaemon.<slug>.<name>``
    (INFO for stdout, WARNING for stderr).
    :raises ConfigError: a bad argument (the message names it).
    """

    def __init__(self, name: str, command: Union[str, Sequence[str]], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None, shell: bool = False, stopsignal: Union[str, int] = "TERM") -> None:
        super().__init__(name)
        if not isinstance(shell, bool):
            raise ConfigError("invalid shell %r for worker %r: expected a bool" % (shell, name))
        if shell:
            if not isinstance(command, str) or not command.strip():
                raise ConfigError("invalid command %r for worker %r: with shell=True, expected "
                                  "a non-empty string" % (command, name))
        elif isinstance(command, str):
            import shlex  # for this message only: shlex is not on every daemon's start-up
            raise ConfigError("invalid command %r for worker %r: expected a list of arguments "
                              "(e.g. %r), or shell=True to run a string with /bin/sh"
                              % (command, name, shlex.split(command) or ["program"]))
        else:
            try:
                command = list(command)
            except TypeError:
                raise ConfigError("invalid command %r for worker %r: expected a list of "
                                  "arguments" % (command, name)) from None
            if not command or not all(isinstance(arg, str) for arg in command) or not command[0]:
                raise ConfigError("invalid command %r for worker %r: expected a non-empty list "
                                  "of strings" % (command, name))
            if any("\0" in arg for arg in command):
                raise ConfigError("invalid command for worker %r: an argument holds a NUL byte"
                                  % (name,))
        if env is None:
            env = {}
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and k and "=" not in k and "\0" not in k
                and isinstance(v, str) and "\0" not in v for k, v in env.items()):
            raise ConfigError("invalid env %r for worker %r: expected a dict of strings "
                              "(names without '=')" % (env, name))
        if cwd is not None and (not isinstance(cwd, str) or not cwd or "\0" in cwd):
            raise ConfigError("invalid cwd %r for worker %r: expected a directory path"
                              % (cwd, name))
        try:
            stop_number = signal_number(stopsignal)
        except ValueError as exc:
            raise ConfigError("invalid stopsignal for worker %r: %s" % (name, exc)) from None
        #: The program and its arguments (a string with :attr:`shell`).
        self.command = command
        #: Variables added to the daemon's environment.
        self.env = dict(env)
        #: Working directory, ``None`` for the daemon's.
        self.cwd = cwd
        #: Run :attr:`command` with ``/bin/sh -c``.
        self.shell = shell
        #: The number of the signal that asks the program to stop.
        self.stopsignal = stop_number

    @property
    def argv(self) -> List[str]:
        """The arguments ``exec`` gets."""
        if self.shell:
            return ["/bin/sh", "-c", cast(str, self.command)]  # a string with shell
        return list(self.command)

    def describe(self, limit=200):
        """The command as one line for log lines (shell-quoted), cut at ``limit`` characters."""
        import shlex  # see __init__
        text = cast(str, self.command) if self.shell else shlex.join(self.command)
        return text if len(text) <= limit else text[:limit] + "..."

    def loop(self):  # pragma: no cover - never called: the child execs
        raise RuntimeError("an ExecWorker runs a program, not a loop")


# -- in the forked child --------------------------------------------------------

def exec_program(worker, end, streams, basepath=None):  # pragma: no cover - runs in the child
    """Become the program of ``worker``; never returns.

    :param end: the child's end of its channel (a failure is reported there).
    :param streams: ``(stdout, stderr)``: write ends of the daemon's pipes.
    :param basepath: what a relative ``cwd`` is relative to.
    """
    argv = worker.argv
    cwd = None
    try:
        os.setsid()  # a process group of its own (and no controlling terminal)
        env = dict(os.environ)
        for name in _DAEMON_VARIABLES:
            env.pop(name, None)
        env.update(worker.env)
        env["GDAEMON_WORKER"] = worker.pool
        env["GDAEMON_INSTANCE"] = str(worker.instance)
        sources = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), streams[0], streams[1]]
        if worker.listener is not None:
            sources.append(worker.listener.fileno())
            env["LISTEN_FDS"] = "1"
            env["LISTEN_PID"] = str(os.getpid())
        cwd = worker.cwd
        if cwd is not None:
            if basepath and not os.path.isabs(cwd):
                cwd = os.path.join(basepath, cwd)
            os.chdir(cwd)
        # Lift every source above the targets first: one of them may sit on
        # 0..3 already, and dup2 onto it would lose it.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in sources]
        for target, fd in enumerate(high):
            os.dup2(fd, target, inheritable=True)
        if worker.listener is not None:
            # Blocking, as systemd passes sockets: the daemon's gevent socket
            # made it non-blocking, and a program's plain accept() would fail
            # with EAGAIN (the daemon never accepts on it; a program that wants
            # it non-blocking says so itself, as servers do).
            os.set_blocking(3, True)
        _close_on_exec_from(len(high))
        _default_signals()
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        reason = "cannot exec %s: %s" % (worker.describe() if worker.shell else repr(argv[0]),
                                         exc.strerror or exc)
        if cwd is not None and not os.path.isdir(cwd):
            reason = "cannot change to directory %r: %s" % (cwd, exc.strerror or exc)
        report_exec_failure(end, reason)
    os._exit(EXEC_FAILED_EXIT)


def report_exec_failure(end, reason):  # pragma: no cover - runs in the child
    """Tell the daemon why the program could not be started (before exiting)."""
    try:
        end.send(encode(EXEC_FAILED, reason))
    except (ChannelFull, ChannelClosed, OSError):
        pass


def _close_on_exec_from(first):  # pragma: no cover - runs in the child
    """Mark every descriptor from ``first`` on close-on-exec.

    The daemon's own are already; not those it inherited from whoever
    started it (a shell's, a CI runner's): the program must get only its
    stdio (and its socket), as ``subprocess`` does with ``close_fds``.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        return  # no /proc: what the daemon inherited goes on
    for fd in fds:
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now


def _default_signals():  # pragma: no cover - runs in the child
    """Give the program default signal handling and an empty signal mask.

    An ignored signal stays ignored across ``exec`` and the mask is kept:
    Python ignores SIGPIPE and SIGXFSZ, and a forked child starts with the
    signals it handles itself blocked (see :mod:`gdaemon.forking`).
    """
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass  # signals the interpreter will not touch (32, 33: the C library's)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


# -- in the daemon ----------------------------------------------------------------

class Program:
    """The daemon's side of one run of a program (an instance of an :class:`ExecWorker`).

    :param worker: the :class:`ExecWorker`.
    :param generation: the handle's generation this run belongs to.
    """

    __slots__ = ("worker", "generation", "pid", "error", "running", "stopping", "_kill_timer",
                 "readers")

    def __init__(self, worker, generation):
        self.worker = worker
        self.generation = generation
        self.pid = None
        #: Why the exec failed (reported by the child), else ``None``.
        self.error = None
        #: True once the exec succeeded.
        self.running = False
        #: True once asked to stop.
        self.stopping = False
        self._kill_timer = None
        #: The :class:`~gdaemon.workers.output.StreamReader` of its stdout and stderr.
        self.readers = ()

    def started(self):
        """EOF on the channel's doorbell: did the exec succeed (and does it still run)?"""
        if self.error is not None or self.pid is None:
            return False
        try:
            # WNOWAIT: look, leave the reaping to libev's child watcher.
            exited = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False  # reaped already
        if exited is not None:
            return False
        self.running = True
        return True

    def signal(self, signum):
        """Send ``signum`` to the program's process group (to the program alone
        while it has none yet); False when there is nobody to signal."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.killpg(pid, signum)
            return True
        except ProcessLookupError:
            pass  # no group yet: the child has not called setsid() so far
        except PermissionError:
            return False
        try:
            os.kill(pid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def request_stop(self, grace):
        """``stopsignal`` to the group; SIGKILL to it after ``grace`` seconds (if set)."""
        self.stopping = True
        self.signal(self.worker.stopsignal)
        if grace and self._kill_timer is None:
            timer = self._kill_timer = gevent.get_hub().loop.timer(grace, ref=False)
            timer.start(self._kill_late)

    def _kill_late(self):
        self._cancel_timer()
        self.signal(signal.SIGKILL)

    def _cancel_timer(self):
        timer, self._kill_timer = self._kill_timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def ended(self):
        """The program was reaped: SIGKILL what is left of its process group.

        Called at once after the reaping (hub context): while a member of the
        group lives, its id cannot be reused, so this reaches only leftovers
        of this program (a shell's background children).
        """
        self._cancel_timer()
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def mark_looping(handle):
    """Write LOOPING to ``handle``'s status block (the program cannot)."""
    _mark(handle, WorkerStatus.LOOPING)


def mark_spindown(handle):
    """Write SPINDOWN to ``handle``'s status block: its program was asked to stop."""
    _mark(handle, WorkerStatus.SPINDOWN)


def _mark(handle, state):
    block = handle.status_block
    try:
        block.state = int(state)
        block.beat()
    except (ChannelClosed, AttributeError):
        pass
