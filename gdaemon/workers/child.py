"""The life of a forked child: a worker, or a standby waiting to become one.

:func:`run_forked` runs in the child right after
:meth:`gdaemon.forking.ForkRegistry.fork` returned 0 there, that is once the
daemon's descriptors are closed and a fresh default gevent hub is in place.
In this order it

1. takes its end of its channel (closing the daemon's pipe ends);
2. asks to die with the daemon (Linux ``PR_SET_PDEATHSIG``), then checks
   that the daemon is still its parent (it may have died before that);
3. handles the signals of docs/reference/events.rst, Inside a worker, which were blocked since the fork:
   SIGTERM spins the worker down gracefully; SIGINT is ignored (a Ctrl-C in
   a terminal reaches the whole process group: the daemon decides how its
   workers stop); SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH and SIGQUIT arrive on
   the worker's ``self.events`` as ``posix.<name>``, SIGUSR1 reopening the
   log files first.  None of them kills it, whether sent to the worker or to
   the whole process group (``systemctl kill``);
4. a standby waits for ``ACTIVATE`` in a plain ``poll()``, outside the hub
   (see :func:`_await_activation`), with plain Python handlers meanwhile:
   SIGTERM ends it, the other signals are ignored; once activated it
   handles them as in 3;
5. takes the worker's resource limits and identity (``install(...,
   rlimits=, user=, group=)``, see :mod:`gdaemon.identity`); then the
   worker runs;
6. leaves with ``os._exit()`` after flushing the logs, so the daemon's
   ``atexit`` handlers and ``finally`` blocks never run twice.

Handlers are installed with ``gevent.signal_handler`` on the child's own
hub: they run as greenlets, never inside a raw signal handler, and exec'd
programs (``subprocess``) get default dispositions back, not an inherited
"ignore".
"""

import logging
import os
import select
import signal
import sys
from typing import NoReturn

import gevent
from gevent import socket as gsocket

from ..errors import ChannelClosed, WorkerError
from ..events import posix_event_name
from ..forking import unblock_child_signals
from ..identity import apply_process_settings
from ..logfiles import reopen_file_handlers
from ..process import close_fd, closing_at_once
from ..proctitle import set_title
from ..unpatched import original
from .exec import EXEC_FAILED_EXIT, exec_program, report_exec_failure
from .messages import ACTIVATE, LOG, REOPEN, decode, encode
from .runtime import WorkerRuntime
from .worker import Worker, WorkerExit

__all__ = ["run_forked", "STANDBY_COMM", "WORKER_SIGNALS"]

# prctl(2) options (Linux).
_PR_SET_PDEATHSIG = 1
#: ``/proc/PID/comm`` of a standby process (at most 15 bytes).
STANDBY_COMM = b"gdaemon-standby"

#: Signals a forked worker turns into ``posix.*`` events on its own bus.
WORKER_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGQUIT)


class _ChildSignals:
    """The signal handlers of a forked child; they follow it from standby to worker."""

    def __init__(self):
        self.runtime = None
        self._handles = []

    def install_for_standby(self):
        """A standby's handlers while it waits outside the hub (:func:`_await_activation`):
        plain Python handlers, which run even while it sleeps in ``poll()``.
        SIGTERM ends it; the rest, SIGINT included, are ignored (a standby has
        no events to emit, and the daemon replaces it when log files are
        reopened).  :meth:`install` takes over once it is a worker."""
        # Make and drop the hub's handlers once first (signals are still
        # blocked): their copy-on-write faults are taken now, and install()
        # after ACTIVATE costs half as much.
        self.install(unblock=False)
        for handle in self._handles:
            handle.cancel()
        self._handles = []
        set_handler = original("signal", "signal")
        for signum in WORKER_SIGNALS + (signal.SIGINT,):
            set_handler(signum, _ignore_signal)
        set_handler(signal.SIGTERM, _standby_terminated)
        unblock_child_signals()

    def install(self, unblock=True):
        """The worker's handlers, on its hub (see the module's docstring)."""
        for signum in WORKER_SIGNALS:
            self._handles.append(gevent.signal_handler(signum, self._on_signal, signum))
        self._handles.append(gevent.signal_handler(signal.SIGTERM, self._on_term))
        self._handles.append(gevent.signal_handler(signal.SIGINT, _ignore))
        if unblock:
            unblock_child_signals()

    def _on_signal(self, signum):
        if signum == signal.SIGUSR1:
            reopen_file_handlers()
        runtime = self.runtime
        if runtime is not None:
            runtime.worker.events.emit(posix_event_name(signum), signum=signum)

    def _on_term(self):
        runtime = self.runtime
        if runtime is None:  # a standby has nothing to spin down
            _leave(WorkerExit.TERMINATED)
        runtime.request_stop(WorkerExit.TERMINATED)
        runtime.wake()


def _ignore():
    pass


def _ignore_signal(signum, frame):  # pragma: no cover - runs in a standby
    pass


def _standby_terminated(signum, frame):  # pragma: no cover - runs in a standby
    _leave(WorkerExit.TERMINATED)


def run_forked(daemon, channel, parent, prctl=None, worker=None, workers=None,
               comm=None, streams=None):  # pragma: no cover - runs in forked children
    """The whole life of a forked child; never returns (``os._exit``).

    :param daemon: the daemon (its ``logring``, when ``forward_logs`` is
        true, forwards the child's log records to it).
    :param channel: this child's :class:`~gdaemon.workers.channel.Channel`.
    :param parent: the daemon's pid.
    :param prctl: libc's ``prctl`` (Linux), resolved in the daemon.
    :param worker: the :class:`Worker` to run; ``None`` for a standby.
    :param workers: a standby's ``{name: Worker}``: it waits for an
        ``ACTIVATE`` message on its channel, then runs that worker.
    :param comm: the process name to take back when a standby is activated.
    :param streams: for an :class:`~gdaemon.workers.exec.ExecWorker`, the
        write ends of its stdout and stderr pipes: the child execs its program.
    """
    code = WorkerExit.BOOT_FAILED
    logger = worker.logger if worker is not None else logging.getLogger("gdaemon.worker")
    try:
        with closing_at_once():
            end = channel.worker_end()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the daemon died before prctl took effect
            _leave(WorkerExit.ORPHANED)
        if streams is not None:
            _run_program(daemon, worker, end, streams)  # never returns
        signals = _ChildSignals()
        description = _description(daemon)
        if worker is None:
            signals.install_for_standby()
            set_title(description, "standby", comm=STANDBY_COMM.decode() if prctl is not None and comm else None)
            _rehearse(workers, end, channel.status, parent)
            name = _await_activation(end, parent)
            worker = workers[name] if name in workers else _scaled_instance(daemon, name)
            logger = worker.logger
            _close_other_listeners(worker, workers)
        signals.install()
        if daemon.forward_logs:
            _forward_logs(daemon.logring, end)
        try:
            switched = apply_process_settings(getattr(worker, "process_settings", None), worker.name)
        except WorkerError as exc:
            logger.error("%s", exc)  # one line naming the worker and the limit, no traceback
            _leave(WorkerExit.BOOT_FAILED)
        if switched and os.getppid() != parent:  # died while the death signal was off
            _leave(WorkerExit.ORPHANED)
        set_title(description, "worker " + worker.name, comm=comm.decode("utf-8", "replace") if comm else None)
        _adopt_listener(worker)
        runtime = signals.runtime = WorkerRuntime(worker, end, channel.status, parent_pid=parent)
        code = runtime.run()
    except BaseException:
        try:
            logger.exception("forked worker %r crashed", getattr(worker, "name", None))
        except BaseException:  # noqa: B036 - nothing left to report it with
            pass
        if code == WorkerExit.OK:
            code = WorkerExit.ERROR
    _leave(code)


def _description(daemon):  # pragma: no cover - runs in forked children
    return daemon.config.get("description") or "gdaemon"


def _run_program(daemon, worker, end, streams):  # pragma: no cover - runs in forked children
    """An exec worker's child: no hub, no handlers; its limits and identity, then ``exec``."""
    try:
        apply_process_settings(getattr(worker, "process_settings", None), worker.name)
    except WorkerError as exc:
        report_exec_failure(end, str(exc))  # the reason of worker.failed
        _leave(EXEC_FAILED_EXIT)
    exec_program(worker, end, streams, basepath=daemon.config.get("basepath"))


def _adopt_listener(worker):  # pragma: no cover - runs in forked children
    """Give the worker its pool's listening socket as a socket of this child's hub.

    The daemon's socket object, copied by the fork, belongs to the daemon's
    (abandoned) hub; a new gevent socket takes over its descriptor.  The old
    object stays referenced by the daemon's copied state (frozen, never
    collected), so it never closes the descriptor under us.
    """
    listener = worker.listener
    if listener is not None:
        worker.listener = gsocket.socket(listener.family, listener.type, listener.proto,
                                         fileno=listener.fileno())


def _close_other_listeners(worker, workers):  # pragma: no cover - runs in a standby
    """An activated standby keeps only its own pool's listener."""
    mine = worker.listener.fileno() if worker.listener is not None else None
    for other in {w.listener.fileno() for w in workers.values() if w.listener is not None}:
        if other != mine:
            try:
                close_fd(other)
            except OSError:
                pass


def _forward_logs(logring, end):  # pragma: no cover - runs in forked children
    """Have the (inherited) log ring ship this worker's records to the daemon.

    Best effort by design: a record is dropped here rather than ever
    blocking the worker (the worker still writes its own log file), and it
    is dropped already once the channel to the daemon is half full, so that
    a flood of log lines never takes the room of the messages the daemon
    must get (states, ``worker.call`` replies, ``self.send``).
    """
    room = end.max_message_size // 2

    def forward(fields):
        try:
            if end.free() >= room:
                end.send(encode(LOG, fields))
        except Exception:  # closed, or unpicklable: the file has the line anyway
            pass
    logring.forward = forward


def _leave(code: int) -> NoReturn:  # pragma: no cover - runs in forked children
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: B036 - leaving anyway; a broken stderr cannot be reported
        pass
    os._exit(int(code))


#: Candidates a standby rehearses at most (a pool's instances share their code:
#: the first few take nearly all the faults).
_REHEARSALS = 8


def _rehearse(workers, end, status, parent):  # pragma: no cover - runs in a standby
    """Take the copy-on-write faults of becoming a worker now (:meth:`WorkerRuntime.rehearse`).

    Only a saving: should a rehearsal fail, the standby waits all the same.
    """
    try:
        for worker in list(workers.values())[:_REHEARSALS]:
            WorkerRuntime(worker, end, status, parent_pid=parent).rehearse()
        decode(encode(ACTIVATE, next(iter(workers), "")))
        end.prefault()  # the pages ACTIVATE and our first messages use, mapped
    except Exception:
        logging.getLogger("gdaemon.worker").debug("standby rehearsal failed", exc_info=True)
    gevent.sleep(0)  # this process's hub made and started now, not after ACTIVATE


def _scaled_instance(daemon, name):  # pragma: no cover - runs in a standby
    """The worker of instance ``name``, of a pool scaled up since this copy of the
    daemon was made (``KeyError`` for anything else)."""
    manager = daemon.workers
    if not manager.make_missing_instance(name):
        raise KeyError("no worker %r in this copy of the daemon" % name)
    return manager.get(name).worker


def _await_activation(end, parent):  # pragma: no cover - runs in a standby
    """A standby's wait: the name of the worker the daemon's ``ACTIVATE`` says.

    It sleeps in a plain ``poll()`` on its doorbell, not in the gevent hub:
    woken, it is back in this loop at once, where a wake-up through the hub
    (the loop's callbacks, the watcher, two greenlet switches, the timeout)
    first writes to some 60 pages it shares with the fork server, a copy
    each: 0.4 ms of CPU on the respawn's critical path.  Signals meanwhile
    are handled by :meth:`_ChildSignals.install_for_standby`.
    """
    poller = original("select", "poll")()
    poller.register(end.fileno(), select.POLLIN)
    timeout_ms = int(Worker.heartbeat_interval * 1000)
    while True:
        try:
            data = end.recv_nowait()
            if data is None:
                poller.poll(timeout_ms)  # the doorbell, EOF (the daemon is gone) or the timeout
                data = end.recv_nowait()
        except ChannelClosed:
            _leave(WorkerExit.ORPHANED)
        if os.getppid() != parent:
            _leave(WorkerExit.ORPHANED)
        if data is not None:
            message = decode(data)
            if message[0] == ACTIVATE:
                return message[1]
            if message[0] == REOPEN:
                reopen_file_handlers()
