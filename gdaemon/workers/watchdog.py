"""The watchdog: respawn policy, heartbeat timeouts, and the greenlet that applies them.

Two layers:

- the **policy**, pure and clock-free so it can be unit-tested with a fake
  clock: :class:`RestartPolicy` / :class:`RestartTracker` (``restartintensity``,
  ``restartperiod``, exponential backoff) and :func:`heartbeat_stalled`;
- the :class:`Watchdog`, one greenlet per daemon that serialises everything
  that happens to workers: child exits (gevent child watchers), messages from
  workers, backoff timers, a short periodic tick that checks heartbeats (and
  loop counts and ages for recycling), and the ``rssinterval`` timer that
  reads the memory of workers installed with ``maxrss`` (its
  :class:`~gdaemon.workers.recycle.Recycler`).
  Watchers and timers only *post* an item to its queue from the hub; the
  greenlet does the work, so receivers of ``worker.*`` events may block
  cooperatively.

Respawn policy (docs/reference/config.rst): a ``forever`` worker is respawned at once until it
has been restarted ``restartintensity`` times within ``restartperiod``
seconds; past that each respawn waits, 0.1 s at first and doubling up to
30 s, and the worker stays RESTARTING meanwhile.  Once backing off it keeps
backing off until an instance stays up longer than ``restartperiod``, which
resets the count: a worker that crashes at once on every start settles at
one attempt every 30 s instead of spinning the CPU in bursts.

Signal safety: nothing here runs in a signal handler; the child watcher
callbacks run in the hub and only post to the queue.
"""

import logging
import os
import signal
import time
from collections import deque
from typing import Any, Deque

import gevent
from gevent.queue import SimpleQueue

from ..ratelimit import RateLimitedLog
from .handle import Mode
from .recycle import Recycler
from .worker import WorkerExit, WorkerKind, WorkerStatus

__all__ = ["RestartPolicy", "RestartTracker", "heartbeat_stalled", "describe_exit",
           "Watchdog", "WATCHED_STATES"]

log = logging.getLogger("gdaemon.watchdog")

_STATUS_CODES = frozenset(int(status) for status in WorkerStatus)

#: States in which a stalled heartbeat gets a worker killed (not SPINDOWN:
#: a stopping worker is timed by ``shutdowntimeout`` instead).
WATCHED_STATES = frozenset((WorkerStatus.SPINUP, WorkerStatus.LOOPING, WorkerStatus.PAUSED))


class RestartPolicy:
    """How fast a ``forever`` worker is respawned (immutable settings).

    :param intensity: restarts allowed within ``period`` before backoff.
    :param period: seconds.
    :param min_delay: first backoff delay in seconds.
    :param max_delay: the delay doubles up to this.
    """

    def __init__(self, intensity=5, period=10.0, min_delay=0.1, max_delay=30.0):
        self.intensity = intensity
        self.period = float(period)
        self.min_delay = float(min_delay)
        self.max_delay = float(max_delay)

    def tracker(self):
        """A fresh :class:`RestartTracker` for one worker."""
        return RestartTracker(self)

    def __repr__(self):
        return "<RestartPolicy %d in %gs, backoff %g..%gs>" % (
            self.intensity, self.period, self.min_delay, self.max_delay)


class RestartTracker:
    """The restart history of one worker; every method takes ``now``.

    Call :meth:`started` when an instance starts and :meth:`next_delay` when
    it died unexpectedly: it returns how long to wait before the respawn and
    counts that respawn.
    """

    def __init__(self, policy):
        self.policy = policy
        self._recent: Deque[float] = deque()   # times of the respawns within the last period
        self._delay = 0.0        # current backoff; 0.0 while not backing off
        self._started = None
        #: ``(uptime, exitcode)`` of the instance whose death :meth:`next_delay`
        #: counted last; ``None`` once the next instance started.
        self.last_death = None

    @property
    def backing_off(self):
        return self._delay > 0.0

    def started(self, now):
        """An instance started at ``now``."""
        self._started = now
        self.last_death = None

    def uptime(self, now):
        """Seconds the current instance has been up at ``now`` (``None``: not started)."""
        return None if self._started is None else now - self._started

    def reset(self):
        """Forget the history (the next deaths are respawned at once again)."""
        self._recent.clear()
        self._delay = 0.0

    def respawns_at_once(self, now):
        """Would :meth:`next_delay` at ``now`` return 0?  (Changes nothing.)"""
        policy = self.policy
        if self._started is not None and now - self._started > policy.period:
            return policy.intensity > 0  # the history is reset first
        if self._delay > 0.0:
            return False
        horizon = now - policy.period
        return sum(1 for t in self._recent if t > horizon) < policy.intensity

    def next_delay(self, now, exitcode=None):
        """The instance died at ``now`` (with ``exitcode``, as ``os.waitstatus_to_exitcode``
        gives it): seconds to wait before respawning it."""
        policy = self.policy
        self.last_death = (self.uptime(now), exitcode)
        if self._started is not None and now - self._started > policy.period:
            self.reset()
        horizon = now - policy.period
        recent = self._recent
        while recent and recent[0] <= horizon:
            recent.popleft()
        if self._delay > 0.0:
            self._delay = min(self._delay * 2.0, policy.max_delay)
        elif len(recent) >= policy.intensity:
            self._delay = min(policy.min_delay, policy.max_delay)
        delay = self._delay
        recent.append(now + delay)
        self._started = None
        return delay


def heartbeat_stalled(now, heartbeat, timeout):
    """True when a heartbeat taken at ``heartbeat`` is older than ``timeout`` at ``now``."""
    return bool(timeout) and heartbeat > 0 and now - heartbeat > timeout


def describe_exit(exitcode):
    """``-9`` -> ``"killed by SIGKILL"``, ``1`` -> ``"exited with code 1"``."""
    if exitcode is None:
        return "exited"
    if exitcode < 0:
        try:
            return "killed by %s" % signal.Signals(-exitcode).name
        except ValueError:
            return "killed by signal %d" % -exitcode
    return "exited with code %d" % exitcode


# Queue item kinds.
_EXIT, _MESSAGE, _RESPAWN, _TICK, _RSS = "exit", "message", "respawn", "tick", "rss"
_STANDBY, _STANDBY_EXIT, _QUIT = "standby", "standby-exit", "quit"


class Watchdog:
    """The daemon's worker supervisor greenlet (see the module docstring).

    :param manager: the :class:`~gdaemon.workers.manager.WorkerManager`.
    :param clock: monotonic clock (seconds), replaceable in tests.
    """

    #: Seconds between two heartbeat checks.
    tick_interval = 0.2
    #: Seconds :meth:`stop` waits for the greenlet to handle what is queued.
    stop_timeout = 5.0
    #: Longest wait in seconds for the hub to be idle after a respawn (see
    #: :meth:`_yield_to_control_plane`).
    yield_max = 0.02
    #: Seconds the exit of a worker stopped by its own SIGTERM is held (see
    #: :meth:`_defer_terminated`).
    term_grace = 0.3
    #: Seconds during which further crash lines of one worker are only counted.
    crash_log_interval = 10.0

    def __init__(self, manager, clock=time.monotonic):
        self.manager = manager
        self.clock = clock
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._greenlet = None
        self._tick = None
        self._ticking = False
        self._standby_timer: Any = None  # a gevent timer watcher while one is due
        self._deferred = {}  # timer -> the exit item it holds
        self._crash_log = None  # made on first use, on the hub that runs the watchdog
        self._rss_timer = None
        #: Recycles workers past their ``maxrss``, ``maxloops`` or ``maxage``.
        self.recycler = Recycler(manager, clock)

    # -- life ---------------------------------------------------------------

    def start(self):
        if self._greenlet is not None:
            return
        self._greenlet = gevent.spawn(self._run)
        if len(self.manager):
            self.start_ticking()

    def start_ticking(self):
        """Start the periodic heartbeat check (only once there are workers:
        a daemon without any has no periodic wake-up at all)."""
        if self._greenlet is None:
            return
        if self._rss_timer is None and self.recycler.wants_rss():
            # Memory readings every ``rssinterval`` s, only for workers with ``maxrss``.
            interval = self.manager.setting("rssinterval", 1)
            self._rss_timer = gevent.get_hub().loop.timer(interval, interval, ref=False)
            self._rss_timer.start(self.post, _RSS)
        if self._tick is not None:
            return
        self._tick = gevent.get_hub().loop.timer(self.tick_interval, self.tick_interval, ref=False)
        self._tick.start(self.post, _TICK)

    def stop(self):
        """Stop ticking, cancel pending respawns, let the greenlet handle what is
        queued (the last events of the workers) and end it."""
        for timer in (self._tick, self._rss_timer):
            if timer is not None:
                timer.stop()
                timer.close()
        self._tick = self._rss_timer = None
        for handle in self.manager:
            self.cancel_respawn(handle)
        timer, self._standby_timer = self._standby_timer, None
        if timer is not None:
            timer.stop()
            timer.close()
        for timer in list(self._deferred):  # held exits are handled now, before we quit
            self._release_deferred(timer)
        if self._crash_log is not None:
            self._crash_log.flush()  # the counts of the last interval
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None or greenlet is gevent.getcurrent():
            return
        self.post(_QUIT)
        greenlet.join(self.stop_timeout)
        if not greenlet.dead:
            log.error("the watchdog did not finish its work within %gs", self.stop_timeout)
            greenlet.kill()

    def post(self, *item):
        """Queue an item; callable from the hub (watcher callbacks)."""
        self._queue.put(item)

    def wake(self):
        """Check heartbeats and states now (the ``posix.sigchld`` listener calls it)."""
        if self._greenlet is not None and not self._ticking:
            self._ticking = True
            self.post(_TICK)

    # -- callbacks from the hub ---------------------------------------------

    def child_exited(self, watcher):
        """Child watcher callback (hub context): the process was reaped by libev."""
        watcher.stop()
        pid, status = watcher.pid, watcher.rstatus
        watcher.close()
        owner = self.manager.forget_child(pid)
        if owner is None:
            return
        handle, generation = owner
        exitcode = os.waitstatus_to_exitcode(status)
        if handle is None:
            self.post(_STANDBY_EXIT, pid, exitcode)
        else:
            # The standby starts becoming the new instance now, while the
            # exit waits its turn in the queue (see StandbyPool.preactivate).
            now = self.clock()
            if (handle.forever and handle.mode == Mode.RUN and exitcode != WorkerExit.TERMINATED
                    and not self.manager.stopping and handle.tracker.respawns_at_once(now)
                    and self.manager.deserves_standby(handle.tracker.uptime(now), exitcode)):
                self.manager.standbys.preactivate(handle, generation)
            self.post(_EXIT, handle, generation, pid, exitcode)

    def greenlet_exited(self, handle, generation, greenlet):
        """Link callback of a greenlet worker (hub context)."""
        value, exception = greenlet.value, greenlet.exception
        if isinstance(value, gevent.GreenletExit) or isinstance(exception, gevent.GreenletExit):
            # Killed (gevent counts that as a success, the GreenletExit as its
            # value): the greenlet analogue of SIGKILL.
            code = -signal.SIGKILL
        elif exception is not None:
            code = 1
        else:
            code = int(value) if isinstance(value, int) else 0
        self.post(_EXIT, handle, generation, os.getpid(), code)

    # -- respawn timers -------------------------------------------------------

    def schedule_respawn(self, handle, delay):
        self.cancel_respawn(handle)
        timer = gevent.get_hub().loop.timer(delay, ref=False)
        handle.respawn_timer = timer
        timer.start(self.post, _RESPAWN, handle, timer)

    def cancel_respawn(self, handle):
        """Cancel a pending respawn; True if there was one."""
        timer, handle.respawn_timer = handle.respawn_timer, None
        if timer is None:
            return False
        timer.stop()
        timer.close()
        return True

    def schedule_standby(self, delay, sooner=False):
        """Have the manager fork a standby process in ``delay`` seconds (``sooner``:
        instead of at a later time already scheduled)."""
        if self._greenlet is None:
            return
        if self._standby_timer is not None:
            if not sooner:
                return
            self._standby_timer.stop()
            self._standby_timer.close()
            self._standby_timer = None
        timer = self._standby_timer = gevent.get_hub().loop.timer(delay, ref=False)
        timer.start(self.post, _STANDBY, timer)

    # -- the greenlet -----------------------------------------------------------

    def _run(self):
        get = self._queue.get
        while True:
            item = get()
            try:
                kind = item[0]
                if kind == _QUIT:
                    return
                if kind == _MESSAGE:
                    self.manager.process_inbox(*item[1:])
                elif kind == _EXIT:
                    if self._defer_terminated(item):
                        continue
                    try:
                        with self.manager.holding_events():
                            self._on_exit(*item[1:5])
                    finally:
                        # A standby told to go for this exit and not used after all.
                        self.manager.standbys.release_preactivated(item[1])
                    self._yield_to_control_plane()
                elif kind == _RESPAWN:
                    self._on_respawn(*item[1:])
                    self._yield_to_control_plane()
                elif kind == _TICK:
                    self._ticking = False
                    self._on_tick()
                    self.recycler.step()
                elif kind == _RSS:
                    self.recycler.check_rss()
                elif kind == _STANDBY:
                    if item[1] is self._standby_timer:
                        self._standby_timer = None
                        item[1].close()
                        self.manager.ensure_standby()
                elif kind == _STANDBY_EXIT:
                    self.manager.standby_exited(*item[1:])
            except Exception:
                # One bad item (a faulty receiver...) must not end supervision.
                log.exception("watchdog failed on %r", item[:2])

    def _defer_terminated(self, item):
        """Hold the exit of a worker that SIGTERM reached directly, for :attr:`term_grace`.

        ``systemctl stop`` and ``kill -TERM -PGID`` signal the daemon and its
        workers at once; a worker may spin down and be reaped before the
        daemon's own SIGTERM receiver has run.  Its exit is then handled a
        moment later, once the daemon knows it is stopping, so that it is not
        taken for a death (a respawn, or exit status 1 for a non-forever
        worker).  A worker SIGTERMed alone is handled after the same delay.
        """
        handle, exitcode = item[1], item[4]
        if (exitcode != WorkerExit.TERMINATED or len(item) > 5 or self.manager.stopping
                or handle.mode != Mode.RUN or self._greenlet is None):
            return False
        timer = gevent.get_hub().loop.timer(self.term_grace, ref=False)
        self._deferred[timer] = item + ("deferred",)
        timer.start(self._release_deferred, timer)
        return True

    def _release_deferred(self, timer):
        item = self._deferred.pop(timer, None)
        timer.stop()
        timer.close()
        if item is not None:
            self.post(*item)

    def _yield_to_control_plane(self):
        """After a respawn: let everything else that is pending run first.

        A fork costs milliseconds and ``get()`` does not yield while the queue
        has items, so a storm of exits (workers crash-looping with backoff
        disabled) would otherwise serve RPC between forks only.  Waiting for
        the hub to be idle puts every pending request before the next fork;
        the wait is capped (:attr:`yield_max`) so that a daemon that is never
        idle still respawns, at most one worker per cap.
        """
        if self.manager.spawner.forkserver is not None:
            # Forks happen in the fork server: this greenlet waited for it
            # cooperatively already; only let what is ready run first.
            gevent.sleep(0)
            return
        timeout = gevent.Timeout(self.yield_max)
        timeout.start()
        try:
            gevent.idle()
        except gevent.Timeout as exc:
            if exc is not timeout:
                raise
        finally:
            timeout.close()

    def _on_exit(self, handle, generation, pid, exitcode):
        manager = self.manager
        if not manager.reap(handle, generation, pid, exitcode):
            return
        if manager.stopping or handle.mode == Mode.STOP:
            handle.transition(WorkerStatus.STOPPED)
            return
        if handle.mode == Mode.RESTART:
            # Asked for (worker.restart, reload): not a failure, not counted.
            handle.transition(WorkerStatus.RESTARTING)
            manager.spawn(handle, respawn=True)
            return
        if handle.mode == Mode.RECYCLE:
            # Recycled (see gdaemon.workers.recycle): a fresh instance at once,
            # whatever the exit, never a backoff, not a restart.
            handle.transition(WorkerStatus.RESTARTING)
            manager.spawn(handle)
            return
        program = handle.program
        # A program that could not even be exec'd says why (command not found...).
        reason = program.error if program is not None and program.error else describe_exit(exitcode)
        if handle.killed is None and exitcode != 0:
            manager.emit("worker.failed", name=handle.name, reason=reason)
        if not handle.forever:
            handle.transition(WorkerStatus.STOPPED)
            manager.logger.error("worker %r (pid %s) %s; it is not forever: stopping the daemon",
                                 handle.name, pid, reason)
            manager.stop_daemon(1)
            return
        self.respawn_later(handle, reason, exitcode=exitcode)

    def respawn_later(self, handle, reason, failed_start=False, exitcode=None):
        """Apply the policy to a dead forever worker: respawn now or after a backoff.

        :param failed_start: the instance could not even be started; a
            respawn "now" then goes through the respawn timer (no recursion
            into another start that may fail the same way).
        :param exitcode: how the instance ended (decides whether its
            respawn may take the standby: see ``deserves_standby``).
        """
        manager = self.manager
        handle.transition(WorkerStatus.RESTARTING)
        delay = handle.tracker.next_delay(self.clock(), exitcode)
        # One line per worker per interval, then a count: a crash loop
        # (backoff disabled, or many workers) cannot fill the log.
        log = self._crash_log
        if log is None:
            log = self._crash_log = RateLimitedLog(manager.logger, self.crash_log_interval)
        if delay <= 0 and failed_start:
            self.schedule_respawn(handle, 0.0)
        elif delay <= 0 and not manager.deserves_standby(*handle.tracker.last_death):
            # Crash-looping: a fresh fork, asked of the fork server by a greenlet
            # of its own, so that this one goes on with the queue (the exit of a
            # worker the standby is booting for, its LOOPING) meanwhile.
            gevent.spawn(self._respawn_detached, handle, handle.generation)
            log.log(handle.name, logging.WARNING, "worker %r %s: respawning", handle.name, reason)
        elif delay <= 0:
            manager.spawn(handle, respawn=True)
            log.log(handle.name, logging.WARNING, "worker %r %s: respawned (pid %s)",
                    handle.name, reason, handle.pid)
        else:
            log.log(handle.name, logging.WARNING, "worker %r %s: respawning in %.1fs (restarted %d "
                    "times within %gs)", handle.name, reason, delay,
                    handle.tracker.policy.intensity, handle.tracker.policy.period)
            self.schedule_respawn(handle, delay)

    def _respawn_detached(self, handle, generation):
        """The respawn :meth:`respawn_later` left to a greenlet of its own."""
        if (not self.manager.stopping and not handle.alive and handle.mode == Mode.RUN
                and handle.generation == generation):
            self.manager.spawn(handle, respawn=True)

    def _on_respawn(self, handle, timer):
        if handle.respawn_timer is not timer:
            return  # cancelled, or superseded by a manual restart
        handle.respawn_timer = None
        timer.close()
        if not self.manager.stopping and not handle.alive:
            self.manager.spawn(handle, respawn=True)

    def _on_tick(self):
        manager = self.manager
        now = self.clock()
        for handle in manager:
            if not handle.alive:
                continue
            try:
                state = handle.status_block.state
                heartbeat = handle.status_block.heartbeat
            except Exception:  # the block was released under us: the exit item follows
                continue
            if state != handle.status and handle.kind == WorkerKind.PROCESS:
                # Its queued messages first (they are older than the block)...
                generation = handle.generation
                manager.process_inbox(handle)  # (receivers may yield)
                if not handle.alive or handle.generation != generation:
                    continue  # that instance is gone meanwhile
                if state != handle.status and state in _STATUS_CODES:
                    # ...then the block shows a status whose STATE message never
                    # came (the channel was full): the block is what the instance did.
                    handle.transition(WorkerStatus(state))
            if (handle.timeout and handle.killed is None and state in WATCHED_STATES
                    and heartbeat_stalled(now, heartbeat, handle.timeout)):
                reason = "heartbeat stalled for %.2fs (timeout %gs)" % (now - heartbeat, handle.timeout)
                handle.killed = reason
                manager.logger.error("worker %r (pid %s): %s: killing it", handle.name, handle.pid, reason)
                manager.emit("worker.failed", name=handle.name, reason=reason)
                manager.kill(handle)
