"""Recycling: restarting a worker gracefully before it grows too big or too old.

What gunicorn's ``max_requests``, uWSGI's ``reload-on-rss`` and circus's
resource watcher give their users, as options of ``install()``:

- ``maxrss=BYTES`` (an int, or ``"512M"``, ``"2G"``): the watchdog reads the
  resident memory of each forked instance (``/proc/PID/statm``, no extra
  process) every ``rssinterval`` seconds; an instance found over the limit
  twice in a row is recycled (once is a spike, twice is growth);
- ``maxloops=N`` (``maxloopsjitter=J``): recycled after ``N + randint(0, J)``
  runs of ``loop()``;
- ``maxage=SECONDS`` (``maxagejitter=J``): recycled after that long up, plus
  up to ``J`` seconds.

The jitter is drawn again for every instance, so the instances of a pool
started together do not all come due together.

A recycle is a graceful restart: the instance gets ``stop`` (``spindown()``
runs), then a fresh one starts (from the pre-forked standby where there is
one).  It is not a crash: no ``worker.failed``, no count toward
``restartintensity``, never a backoff, and ``restarts`` does not grow; it is
counted in ``recycles`` instead, and announced by a ``worker.recycled``
event.  Within a pool one instance is recycled at a time, the next only once
the fresh one is LOOPING: a pool of N never has fewer than N-1 instances
LOOPING because of recycling.

Greenlet workers share the daemon's process, so ``maxrss`` is refused for
them; ``maxloops`` and ``maxage`` work for them as for forked workers.

Two layers, as in :mod:`~gdaemon.workers.watchdog`: :class:`RecyclePolicy`
and :class:`RecycleLife` are pure (a limit, and one instance's progress
toward it); the :class:`Recycler` applies them from the watchdog's greenlet.
"""

import math
import os
import re
import time

from ..errors import ConfigError, WorkerError
from .handle import Mode
from .worker import WorkerKind, WorkerStatus

__all__ = ["RecyclePolicy", "RecycleLife", "Recycler", "parse_size", "read_rss", "REASONS"]

#: Why an instance is recycled, and the figure its ``worker.recycled`` event carries.
REASONS = {"maxrss": "rss", "maxloops": "loops", "maxage": "age"}

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(value):
    """``"512M"`` -> 536870912; an int is bytes.  Units K, M, G, T are powers of 1024
    (``"512MB"``, ``"512MiB"`` alike).

    :raises ValueError: not a size.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size like \"512M\", got %r" % (value,))
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("expected a positive number of bytes, got %r" % (value,))
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected a size like \"512M\", got %r" % (value,))
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError("expected a size like \"512M\", got %r" % (value,))
    return size


def read_rss(pid, page_size=os.sysconf("SC_PAGE_SIZE")):
    """Resident bytes of process ``pid`` (``/proc/PID/statm``); ``None`` if it is gone."""
    try:
        with open("/proc/%d/statm" % pid, "rb") as f:
            return int(f.read().split()[1]) * page_size
    except (OSError, IndexError, ValueError):
        return None


class RecyclePolicy:
    """The recycling options of one installed worker (immutable).

    Build it with :meth:`from_options`, which checks them.
    """

    __slots__ = ("maxrss", "maxloops", "maxloopsjitter", "maxage", "maxagejitter")

    def __init__(self, maxrss=None, maxloops=None, maxloopsjitter=0, maxage=None, maxagejitter=0):
        self.maxrss = maxrss
        self.maxloops = maxloops
        self.maxloopsjitter = maxloopsjitter
        self.maxage = maxage
        self.maxagejitter = maxagejitter

    @classmethod
    def from_options(cls, worker, maxrss=None, maxloops=None, maxloopsjitter=0, maxage=None,
                     maxagejitter=0):
        """Check ``install()``'s recycling options; ``None`` when none is set.

        :raises ConfigError: a value of the wrong type or out of range (the
            message names the option and the worker).
        :raises WorkerError: ``maxrss`` for a greenlet worker.
        """
        name = worker.name
        if maxrss is not None:
            if worker.kind != WorkerKind.PROCESS:
                raise WorkerError("worker %r: maxrss is for forked workers; a greenlet worker "
                                  "shares the daemon's memory (maxloops and maxage work)" % (name,))
            try:
                maxrss = parse_size(maxrss)
            except ValueError as exc:
                raise ConfigError("invalid maxrss for worker %r: %s" % (name, exc)) from None
        if maxloops is not None and not _positive_int(maxloops):
            raise ConfigError("invalid maxloops %r for worker %r: expected an integer > 0"
                              % (maxloops, name))
        if not _positive_int(maxloopsjitter, zero=True):
            raise ConfigError("invalid maxloopsjitter %r for worker %r: expected an integer >= 0"
                              % (maxloopsjitter, name))
        if maxage is not None and not _positive_number(maxage):
            raise ConfigError("invalid maxage %r for worker %r: expected a positive number of "
                              "seconds" % (maxage, name))
        if not _positive_number(maxagejitter, zero=True):
            raise ConfigError("invalid maxagejitter %r for worker %r: expected a number of "
                              "seconds >= 0" % (maxagejitter, name))
        if maxloopsjitter and maxloops is None:
            raise ConfigError("maxloopsjitter of worker %r needs maxloops" % (name,))
        if maxagejitter and maxage is None:
            raise ConfigError("maxagejitter of worker %r needs maxage" % (name,))
        if maxrss is None and maxloops is None and maxage is None:
            return None
        return cls(maxrss, maxloops, maxloopsjitter, maxage, maxagejitter)

    def life(self, rng=None):
        """The limits of one new instance (the jitter drawn for it by ``rng``,
        the :mod:`random` module unless given)."""
        if rng is None:
            import random as rng  # only a daemon that recycles needs it (1-2 ms of start-up)
        loops = self.maxloops + rng.randint(0, self.maxloopsjitter) if self.maxloops else None
        age = self.maxage + rng.uniform(0, self.maxagejitter) if self.maxage else None
        return RecycleLife(loops, age, self.maxrss)

    def __repr__(self):
        return "<RecyclePolicy maxrss=%s maxloops=%s+%s maxage=%s+%s>" % (
            self.maxrss, self.maxloops, self.maxloopsjitter, self.maxage, self.maxagejitter)


class RecycleLife:
    """One instance's limits and how close it is to them.

    :param loops: recycle once it has run that many loops (``None``: never).
    :param age: ... once it is that many seconds old.
    :param rss: ... once found over that many resident bytes twice in a row.
    """

    __slots__ = ("loops", "age", "rss", "over", "due")

    def __init__(self, loops=None, age=None, rss=None):
        self.loops, self.age, self.rss = loops, age, rss
        #: Consecutive readings over ``rss``.
        self.over = 0
        #: ``(reason, figure)`` once it is due, else ``None``.
        self.due = None

    def check_rss(self, rss):
        """A reading of its resident bytes; True once it is due."""
        if self.due is None and self.rss is not None and rss is not None:
            self.over = self.over + 1 if rss > self.rss else 0
            if self.over >= 2:
                self.due = ("maxrss", rss)
        return self.due is not None

    def check(self, loops, age):
        """Its loop count and age in seconds now; True once it is due."""
        if self.due is None:
            if self.loops is not None and loops >= self.loops:
                self.due = ("maxloops", loops)
            elif self.age is not None and age >= self.age:
                self.due = ("maxage", round(age, 3))
        return self.due is not None


class Recycler:
    """Applies the recycling policies of a manager's workers (see the module docstring).

    Everything here runs in the watchdog's greenlet and never waits: a
    recycle is begun (``stop`` sent), and its end (the fresh instance
    LOOPING) is seen at a later tick.

    :param manager: the :class:`~gdaemon.workers.manager.WorkerManager`.
    :param clock: monotonic clock (seconds).
    """

    def __init__(self, manager, clock=time.monotonic):
        self.manager = manager
        self.clock = clock
        #: pool name -> ``[handle, generation, began]`` of its recycle under way.
        self.under_way = {}
        self._lives = {}  # handle -> (generation, RecycleLife)

    def wants_rss(self):
        """True when an installed worker has ``maxrss`` (the watchdog then reads memory)."""
        return any(_policy(pool) is not None and _policy(pool).maxrss is not None
                   for pool in self.manager.pools().values())

    def life(self, handle):
        """The :class:`RecycleLife` of ``handle``'s current instance (``None``: no policy)."""
        policy = _policy_of(handle)
        if policy is None:
            return None
        found = self._lives.get(handle)
        if found is None or found[0] != handle.generation:
            found = self._lives[handle] = (handle.generation, policy.life())
        return found[1]

    def check_rss(self):
        """Read the resident memory of every instance with ``maxrss``; recycle the due."""
        for handle in self.manager:
            if handle.kind != WorkerKind.PROCESS or not self._running(handle):
                continue
            life = self.life(handle)
            if life is not None and life.rss is not None:
                life.check_rss(read_rss(handle.pid))
        self.step()

    def step(self):
        """Check loops and ages, finish recycles under way, begin the due ones."""
        now = time.time()
        for pool_name in list(self.under_way):
            if self._finished(*self.under_way[pool_name]):
                del self.under_way[pool_name]
        for pool in self.manager.pools().values():
            if _policy(pool) is None:
                continue
            due = []
            for handle in pool.handles:
                if not self._running(handle):
                    continue
                started = handle.started_at or now
                if self.life(handle).check(handle.loops, now - started):
                    due.append((started, handle.instance, handle))
            if due and pool.name not in self.under_way:
                # The oldest first: a quick fresh instance due again must not
                # keep its siblings waiting for their turn.
                self.begin(pool, min(due, key=lambda found: found[:2])[2])
        self._forget_gone()

    def begin(self, pool, handle):
        """Recycle ``handle`` now: count it, announce it, ask it to stop."""
        manager = self.manager
        reason, figure = self.life(handle).due
        handle.recycles += 1
        handle.recycle_reason = reason
        handle.recycle_counts[reason] = handle.recycle_counts.get(reason, 0) + 1
        self.under_way[pool.name] = [handle, handle.generation, self.clock()]
        handle.mode = Mode.RECYCLE
        manager.logger.info("worker %r (pid %s) recycled: %s %s", handle.name, handle.pid,
                            REASONS[reason], figure)
        manager.emit("worker.recycled", name=handle.name, reason=reason, **{REASONS[reason]: figure})
        from .lifecycle import ask_to_stop  # (lifecycle imports the watchdog, which imports us)
        try:
            ask_to_stop(manager, handle)  # the stop command, or a program's stopsignal
        except Exception as exc:  # full or closed channel: it cannot spin down, kill it
            manager.logger.warning("cannot ask worker %r to stop (%s): killing it", handle.name, exc)
            manager.kill(handle)

    def _finished(self, handle, generation, began):
        """Is the recycle of ``handle`` over (its fresh instance LOOPING, or it ended otherwise)?"""
        manager = self.manager
        if handle.name not in manager or handle.mode == Mode.STOP or manager.stopping:
            return True
        if handle.generation != generation:
            return not handle.alive or handle.status in (WorkerStatus.LOOPING, WorkerStatus.PAUSED)
        # Still the old instance: past the grace it is killed (the exit is a recycle still).
        if handle.alive and handle.killed is None and self.clock() - began > manager.setting(
                "shutdowntimeout", 10):
            handle.killed = "did not stop within shutdowntimeout when recycled"
            manager.logger.warning("worker %r did not stop within %gs when recycled: killing it",
                                   handle.name, manager.setting("shutdowntimeout", 10))
            manager.kill(handle)
        return False

    def _running(self, handle):
        # LOOPING only: a paused instance is recycled once resumed (a fresh
        # one would not be paused).
        return (handle.alive and handle.mode == Mode.RUN and handle.killed is None
                and handle.status is WorkerStatus.LOOPING)

    def _forget_gone(self):
        if len(self._lives) > len(self.manager):
            self._lives = {h: life for h, life in self._lives.items() if h.name in self.manager
                           and self.manager.get(h.name) is h}


def _policy(pool):
    return pool.template.recycle_policy  # set by install(), as for every worker of a pool


def _policy_of(handle):
    return handle.worker.recycle_policy


def _positive_int(value, zero=False):
    return (isinstance(value, int) and not isinstance(value, bool)
            and (value >= 0 if zero else value > 0))


def _positive_number(value, zero=False):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value >= 0 if zero else value > 0))
