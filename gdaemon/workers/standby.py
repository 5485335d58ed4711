"""The standby: a child forked ahead of need, waiting to become a worker.

A respawn is on the critical path of a crashed worker, and a fork of a
30 MB Python process costs milliseconds before the child runs (more on small
VMs).  When there are forked ``forever`` workers, the daemon keeps one
*standby* process: forked ahead of need, it has done everything a forked
child does first (see :mod:`gdaemon.workers.child`) and waits on its own
channel to be told which worker to become.  A respawn (or a restart) then
only sends it ``ACTIVATE``; a new standby is forked
:attr:`WorkerManager.standby_delay <gdaemon.workers.manager.WorkerManager.standby_delay>`
seconds later, off the critical path.

Freshness: a standby is a copy of the daemon as it was when it was forked.
:meth:`StandbyPool.refresh` retires it whenever the state children inherit
changes (a reload, reopened log files, a worker installed at run time) and
bumps :attr:`StandbyPool.epoch`; a standby of an older epoch is never
activated, so a respawn is never older than the last such event.

Failures: a standby that dies on its own (killed from outside, crashing at
boot) is forked again after a delay that doubles while it keeps dying; only
failed *activations* count toward giving the standby up.
"""

import os
import signal

import gevent

from ..errors import ChannelClosed, ChannelFull
from .exec import is_exec
from .messages import ACTIVATE, encode
from .watchdog import describe_exit
from .worker import WorkerKind, WorkerStatus

__all__ = ["StandbyPool"]

_sched_yield = getattr(os, "sched_yield", lambda: None)


class _Standby:
    """A forked process waiting to become a worker."""

    __slots__ = ("pid", "channel", "end", "names", "pools", "epoch")

    def __init__(self, pid, channel, end, workers, epoch):
        self.pid, self.channel, self.end = pid, channel, end
        #: The instances it knows, and their pools (it makes an instance those
        #: pools gained since: WorkerManager.make_missing_instance).
        self.names = frozenset(workers)
        self.pools = frozenset(worker.pool for worker in workers.values())
        #: :attr:`StandbyPool.epoch` when it was forked: it is stale after that changes.
        self.epoch = epoch

    def may_become(self, handle):
        """True if it can become ``handle``'s instance."""
        return handle.name in self.names or handle.pool in self.pools


class StandbyPool:
    """The (at most one) standby process of a manager.

    :param manager: the :class:`~gdaemon.workers.manager.WorkerManager`
        (its tunables ``standby``, ``standby_delay``, ``standby_failures_max``
        and ``standby_backoff_max`` are read at each use).
    :param spawner: the manager's :class:`~gdaemon.workers.spawn.Spawner`.
    """

    def __init__(self, manager, spawner):
        self.manager = manager
        self.spawner = spawner
        self.current = None
        #: Bumped whenever the daemon's state that children inherit changes.
        self.epoch = 0
        self.failures = 0
        self._forking = False
        self._forker = None
        #: ``(standby, handle, generation)`` told to go by :meth:`preactivate`, not bound yet.
        self.preactivated = None
        self._delay = manager.standby_delay

    def ensure(self):
        """Fork a standby if one is wanted and there is none.

        Returns at once: the fork (and the wait for the fork server's answer)
        runs in a greenlet of its own, so that the watchdog greenlet, which
        calls this, goes on handling the workers' messages and exits
        meanwhile (a worker's first LOOPING, what ``-d`` waits for, or a
        crash that wants a respawn).
        """
        manager = self.manager
        if (not manager.standby or not manager.running or self.current is not None
                or self._forking or self.failures >= manager.standby_failures_max):
            return
        # Not exec workers: their child needs pipes made at each start (and
        # the exec of a program dwarfs the fork a standby saves).
        handles = [h for h in manager if h.kind == WorkerKind.PROCESS and not is_exec(h.worker)]
        if not any(h.forever for h in handles):
            return
        workers = {h.name: h.worker for h in handles}
        self._forking = True  # until _fork() is done: one standby at a time
        self._forker = gevent.spawn(self._fork, workers, self.epoch)

    def _fork(self, workers, epoch):
        manager = self.manager
        # It may become any of them: it keeps every listener until it knows which.
        keep = {w.listener.fileno() for w in workers.values() if w.listener is not None}
        try:
            pid, channel, end = self.spawner.fork_standby(workers, keep)
        except OSError as exc:
            manager.logger.warning("cannot fork a standby process: %s", exc)
            self._retry()
            return
        finally:
            self._forking = False
        standby = _Standby(pid, channel, end, workers, epoch)
        if manager.running and epoch != self.epoch:
            self._discard(standby)  # refreshed while it was forked: a fresher one
            self.manager.watchdog.schedule_standby(0)
            return
        end.prefault()  # ACTIVATE's page, ready
        self.current = standby  # stopping meanwhile: drop() kills it, and the manager reaps it

    def refresh(self):
        """Retire the standby; a new one, forked from the daemon as it is now, follows."""
        self.epoch += 1
        standby, self.current = self.current, None
        if standby is not None:
            self._discard(standby)
        if self.manager.running:
            self.manager.watchdog.schedule_standby(self.manager.standby_delay)

    def preactivate(self, handle, generation):
        """In the hub, the moment ``handle``'s instance was reaped: tell the standby to
        become it now, before the watchdog gets to the exit.

        The watchdog's respawn then only binds it (:meth:`activate`); should
        it not respawn after all, :meth:`release_preactivated` kills it.  Saves
        the time the exit waits in the watchdog's queue and the reaping
        bookkeeping before the standby can start booting.
        """
        standby = self.current
        if (standby is None or self.preactivated is not None or not standby.may_become(handle)
                or standby.epoch != self.epoch or standby.pid not in self.spawner.children):
            return
        if self._go(standby, handle) is not None:
            return  # unusable: activate() finds out again and counts it
        self.current = None
        self.preactivated = (standby, handle, generation)

    def release_preactivated(self, handle):
        """After the watchdog handled ``handle``'s exit: a standby told to go for it
        and not bound is killed (a new one follows)."""
        found = self.preactivated
        if found is None or found[1] is not handle:
            return
        self.preactivated = None
        self._discard(found[0])
        if self.manager.running:
            self.manager.watchdog.schedule_standby(self.manager.standby_delay)

    def _go(self, standby, handle):
        """Send ``ACTIVATE``; ``None``, or the exception that made it impossible."""
        status = standby.channel.status
        status.state = WorkerStatus.SPINUP
        status.loops = 0
        status.beat()
        try:
            if self.spawner.children.get(standby.pid) is None:
                raise ChannelClosed("the process is gone")  # its exit is in the watchdog's queue
            standby.end.send(encode(ACTIVATE, handle.name))
        except (ChannelFull, ChannelClosed) as exc:
            return exc
        # Hand the CPU over: Linux wakes the standby on this CPU (a pipe write
        # is a synchronous wake-up) and would have it wait there until the
        # hub sleeps again, after the death's bookkeeping; yielding lets it
        # start becoming the worker now (a respawn 0.4-0.5 ms sooner).
        _sched_yield()
        return None

    def activate(self, handle):
        """Make the standby the new instance of ``handle``; False if there is none usable."""
        found = self.preactivated
        if found is not None and found[1] is handle:
            self.preactivated = None
            standby = found[0]
            if found[2] == handle.generation - 1 and standby.pid in self.spawner.children:
                return self._bind(standby, handle)
            self._discard(standby)
        standby = self.current
        if standby is None or not standby.may_become(handle):
            return False
        self.current = None
        if standby.epoch != self.epoch:
            # Forked before the daemon's state changed: not a failure of it.
            self._discard(standby)
            return False
        exc = self._go(standby, handle)
        if exc is not None:
            self.failures += 1
            logger = self.manager.logger
            logger.warning("standby process %d unusable (%s): forking instead", standby.pid, exc)
            if self.failures >= self.manager.standby_failures_max:
                logger.warning("no more standby processes after %d failed activations: "
                               "respawns fork on demand", self.failures)
            self._discard(standby)
            return False
        return self._bind(standby, handle)

    def _bind(self, standby, handle):
        self.spawner.children[standby.pid][:] = [handle, handle.generation]
        self.spawner.bind(handle, standby.pid, standby.channel, standby.end)
        self.failures = 0
        self._delay = self.manager.standby_delay
        self.manager.watchdog.schedule_standby(self._delay)
        return True

    def drop(self):
        """Kill the standby (on stop); return its pid (to wait for its reaping) or ``None``."""
        forker = self._forker
        if forker is not None and not forker.dead and forker is not gevent.getcurrent():
            forker.join(timeout=self.manager.kill_wait)  # one being forked is killed too
        found, self.preactivated = self.preactivated, None
        if found is not None:
            self._discard(found[0])
        standby, self.current = self.current, None
        if standby is None:
            return None
        self._discard(standby)
        return standby.pid

    def exited(self, pid, exitcode):
        """In the watchdog greenlet: a standby process ended (reaped already)."""
        found = self.preactivated
        if found is not None and found[0].pid == pid:
            # Told to go, then died before the watchdog bound it: fork instead.
            self.preactivated = None
            self.spawner.close_channel(found[0].channel)
            self.manager.watchdog.schedule_standby(self._delay)
        standby = self.current
        if standby is None or standby.pid != pid:
            return  # one we discarded
        self.current = None
        self.spawner.close_channel(standby.channel)
        self.manager.logger.warning("standby process %d %s: forking another in %.1fs",
                                    pid, describe_exit(exitcode), self._delay)
        self._retry()

    def _discard(self, standby):
        self.spawner.signal_child(standby.pid, None, signal.SIGKILL)
        self.spawner.close_channel(standby.channel)  # no watcher on its descriptors

    def _retry(self):
        self.manager.watchdog.schedule_standby(self._delay)
        self._delay = min(self._delay * 2, self.manager.standby_backoff_max)
