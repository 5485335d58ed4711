"""Forking children of the daemon: the one place that knows what a child drops.

Every process the daemon forks (a worker, the standby) is made with
:meth:`ForkRegistry.fork`.  The daemon registers here, as it opens them,
everything a child must not keep: the launcher's readiness pipe, the pid
file, the RPC listeners and connections, the systemd notifier socket, the
other workers' channels.  The child closes all of it before anything else
runs, so a descriptor of the daemon cannot leak into a worker by accident
(the bug this module exists for: a worker holding the write end of the
``-d`` launcher's pipe kept ``gdaemon-echo -d`` from ever returning).

The child also gets a fresh *default* gevent loop (:func:`fresh_default_hub`):
``subprocess``, ``os.waitpid`` and child watchers work only on the default
loop, and a monkey-patched worker needs them.  The daemon's greenlets, copied
into the child by ``fork()``, wait on watchers of the old loop; that loop is
destroyed without ever being run again, so they can never wake up there.

Signal safety: nothing here runs in a signal handler.  Fork safety:
:meth:`ForkRegistry.fork` uses the original ``os.fork`` (not gevent's
``fork_and_watch``, which monkey-patching installs): the daemon watches its
children itself, and the child must not run ``gevent.reinit()`` on a loop it
is about to throw away.
"""

import gc
import logging
import os
import signal
from typing import Any, List

import gevent

from .compat import gevent_hub
from .process import close_fd, closing_at_once
from .unpatched import original

__all__ = ["ForkRegistry", "fresh_default_hub", "abandon_hub", "run_fenced", "raw_fork",
           "unblock_child_signals", "CHILD_SIGNALS", "CHILD_FAILED"]

log = logging.getLogger("gdaemon.forking")

raw_fork = original("os", "fork")

#: Exit status of a child whose fenced code raised (the same as a worker's
#: ``WorkerExit.BOOT_FAILED``: it never got to run what it was forked for).
CHILD_FAILED = 4

#: Signals a child handles itself (docs/reference/events.rst, Inside a worker); blocked from the fork until it does.
CHILD_SIGNALS = frozenset((signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
                           signal.SIGQUIT, signal.SIGTERM, signal.SIGINT))

# Old hubs abandoned by children (see fresh_default_hub): kept referenced for
# the life of the process so that neither they nor the greenlets parented to
# them are ever deallocated, which would switch into them.
_ABANDONED: List[Any] = []


class ForkRegistry:
    """What every child of the daemon must close or reset, and the fork itself.

    Register a plain descriptor with :meth:`add_fd` (and :meth:`discard_fd`
    once the daemon closed it itself), or an object whose descriptors change
    over time (a server and its connections) with :meth:`add_closer`: a
    callable run in each child that drops them without touching the state
    the daemon shares (no ``shutdown()`` of a socket, for instance).
    """

    def __init__(self):
        self._fds = {}
        self._closers = []
        #: Children forked so far by this process (with a fork server: one
        #: per fork server started, never one per worker).
        self.forks = 0

    def add_fd(self, fd, what):
        """Close descriptor ``fd`` (an int or an object with ``fileno()``) in every child."""
        fd = fd if isinstance(fd, int) else fd.fileno()
        self._fds[fd] = what
        return fd

    def discard_fd(self, fd):
        """The daemon closed ``fd`` itself: children no longer need to."""
        fd = fd if isinstance(fd, int) else fd.fileno()
        self._fds.pop(fd, None)

    def add_closer(self, closer, what):
        """Run ``closer()`` in every child, before it drops the daemon's loop."""
        self._closers.append((closer, what))

    def fork(self, child, what, keep=(), fresh_hub=True):
        """Fork; the child drops everything registered except ``keep``, then runs ``child()``.

        The child side is fenced (docs/reference/events.rst, Inside a worker): ``child()`` runs under
        :func:`run_fenced`, so whatever it raises, it ends in ``os._exit``
        after one log line naming ``what`` and the failure; it can never
        unwind into the daemon's own code (which would, for instance, remove
        the live daemon's pid file on its way out).

        The signals of :data:`CHILD_SIGNALS` stay blocked in the child until
        it calls :func:`unblock_child_signals`, once its own handlers are in
        place: a ``kill -HUP -PGID`` landing during a fork must neither kill
        the new child (default action) nor run the daemon's handler there.

        :param child: what the child runs; it should end with ``os._exit``
            itself (returning exits with status 0).
        :param what: names the child in the log line of a failure.
        :param keep: descriptors the child must keep although registered
            (its own channel, for example).
        :param fresh_hub: start a fresh default gevent hub in the child
            (``False`` for a child that never runs gevent, the fork server:
            it only abandons the daemon's hub).
        :returns: the child's pid (only ever in the daemon).
        :raises OSError: the fork failed.
        """
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
        try:
            pid = raw_fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            raise
        if pid == 0:  # pragma: no cover - runs in the child
            run_fenced(what, lambda: (self.in_child(keep, fresh_hub), child()))
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self.forks += 1
        return pid

    def in_child(self, keep=(), fresh_hub=True):  # pragma: no cover - runs in the child
        """What a child does first: close and reset what is registered, then a fresh hub."""
        # Our collections must not dirty the pages we share with the daemon,
        # nor ever collect (and so resume) the daemon's copied greenlets.
        gc.freeze()
        closers, self._closers = self._closers, []
        with closing_at_once():
            for closer, what in closers:
                try:
                    closer()
                except Exception:
                    log.debug("closing %s in a child failed", what, exc_info=True)
        keep = {fd if isinstance(fd, int) else fd.fileno() for fd in keep}
        for fd in list(self._fds):
            if fd not in keep:
                try:
                    close_fd(fd)
                except OSError:
                    pass
        self._fds.clear()
        if fresh_hub:
            fresh_default_hub()
        else:
            abandon_hub()


def run_fenced(what, body):  # pragma: no cover - runs in forked children
    """Run ``body()`` in a forked child; always end the process with ``os._exit``.

    A child must never return into, or unwind through, the code of the
    process it was forked from.  Whatever ``body`` raises is logged as one
    line naming ``what`` (no traceback: a child failing at every fork must
    not flood the log), and the child exits with :data:`CHILD_FAILED`;
    ``SystemExit`` keeps its code.
    """
    code = 0
    try:
        body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: B036 - the fence: nothing may pass it
        code = CHILD_FAILED
        try:
            log.critical("%s (pid %d) failed before it could run: %s: %s",
                         what, os.getpid(), type(exc).__name__, exc)
        except BaseException:  # noqa: B036 - nothing left to report it with
            pass
    finally:
        try:
            logging.shutdown()
        except BaseException:  # noqa: B036 - leaving anyway
            pass
        os._exit(code)


def unblock_child_signals():
    """In a child, once it handles :data:`CHILD_SIGNALS` itself: let them in."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)


def abandon_hub():  # pragma: no cover - runs in forked children
    """In a forked child: destroy the inherited default loop, start none.

    See :func:`fresh_default_hub`, which calls this first.  A child that
    never runs gevent (the fork server) stops here: its own children then
    start their fresh hub from nothing.
    """
    old_hub = gevent_hub.existing_hub()
    if old_hub is not None:
        _ABANDONED.append(old_hub)
        if old_hub.loop is not None:
            old_hub.loop.destroy()
    # A child's hub must not start a monitoring thread like the daemon's
    # (gevent.config is process-wide); workers are watched by heartbeat.
    gevent.config.monitor_thread = False
    gevent_hub.forget_hub()


def fresh_default_hub():  # pragma: no cover - runs in forked children
    """In a forked child: destroy the inherited default loop and start a new one.

    The old hub is never switched to again: ``Hub.destroy()`` would throw
    into it, and its loop would then run whatever the daemon had pending (its
    greenlets would act in the child).  Instead the child destroys the old
    loop (closing its epoll and wakeup descriptors), keeps the old hub
    referenced forever (see ``_ABANDONED``) and forgets it as the thread's
    hub and loop, so the next gevent call creates a new default hub on a new
    default loop.

    The daemon's signal watchers must be stopped before (the
    :class:`~gdaemon.events.SignalRouter` registers that): libev keeps them in
    a process-wide table that the new default loop (the same static
    structure) would otherwise dispatch, running the daemon's handlers here.
    So a daemon should receive signals through its bus (``daemon.on``), not
    with its own ``gevent.signal_handler``.

    Forgetting the hub uses gevent's private hub registry (see
    :mod:`gdaemon.compat.gevent_hub`): gevent has no public call to drop a
    hub without switching into it (``Hub.destroy`` switches).
    """
    abandon_hub()
    return gevent.get_hub()
