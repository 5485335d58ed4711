"""Rate-limited logging for errors that clients (or workers) cause.

A daemon must log what goes wrong, but a hostile or broken client can make
the same mistake thousands of times a second; one log line (let alone a
traceback) per bad request turns the log file into the attacker's disk
quota.  :class:`RateLimitedLog` logs the first line of each *kind* at once,
then counts further lines of that kind for ``interval`` seconds, and ends
the interval with one summary line carrying the count::

    limiter = RateLimitedLog(logging.getLogger("gdaemon.rpc"), interval=60)
    limiter.log("parse", logging.INFO, "closing %s: request incomplete", peer)
    # ... 5,000 more within the minute: nothing, then at its end:
    # "closing unix:pid=42: request incomplete (and 5000 similar lines in the last 60s)"

The summary repeats the *last* suppressed line, so the newest peer is named.
A kind is any hashable (a short string is clearest: ``"xmlrpc.decode"``).

Use it for errors caused by input from outside (a malformed request, a
timed-out connection, a payload that cannot be pickled), never for bugs in
our own or the user's code: those keep their full traceback every time.
Never pass ``exc_info``: a traceback per request is what this avoids.

Fork safety: the pending summary timers are greenlets of the hub they were
scheduled on; a forked worker starting on a fresh hub simply never runs
them.  Create one limiter per object that logs (a server, a worker
channel), not a module-level one.
"""

import logging
import time

import gevent

__all__ = ["RateLimitedLog", "DEFAULT_INTERVAL"]

_OVERFLOW = object()

#: The interval of a limiter created without one, in seconds.  Read when a
#: limiter is created, so a program (or a test) may change it before.
DEFAULT_INTERVAL = 60.0


class _Kind:
    __slots__ = ("window_end", "suppressed", "level", "msg", "args", "timer")

    def __init__(self):
        self.window_end = 0.0
        self.suppressed = 0
        self.level = logging.INFO
        self.msg = ""
        self.args = ()
        self.timer = None


class RateLimitedLog:
    """Log each kind of line at most once per ``interval``, then a count of the rest.

    :param logger: the :class:`logging.Logger` to write to.
    :param interval: seconds during which further lines of a kind are only
        counted (a positive number); default :data:`DEFAULT_INTERVAL`.
    """

    #: Kinds remembered at most; past it, kinds whose window is over are
    #: forgotten, so that varying kinds cannot grow memory without bound.
    max_kinds = 256

    def __init__(self, logger, interval=None):
        if interval is None:
            interval = DEFAULT_INTERVAL
        if not interval > 0:
            raise ValueError("interval must be positive, got %r" % (interval,))
        self.logger = logger
        self.interval = interval
        self._kinds = {}

    def log(self, kind, level, msg, *args):
        """Log ``msg % args`` at ``level`` unless a line of ``kind`` was logged
        within the last ``interval`` seconds; then only count it.

        :returns: ``True`` if the line was written, ``False`` if suppressed.
        """
        if not self.logger.isEnabledFor(level):
            return False
        now = time.monotonic()
        state = self._kinds.get(kind)
        if state is None:
            if len(self._kinds) >= self.max_kinds:
                self._forget_expired(now)
                if len(self._kinds) >= self.max_kinds:
                    kind = _OVERFLOW  # too many live kinds: share one window
            state = self._kinds.get(kind)
            if state is None:
                state = self._kinds[kind] = _Kind()
        if now >= state.window_end and not state.suppressed:
            state.window_end = now + self.interval
            self.logger.log(level, msg, *args)
            return True
        state.suppressed += 1
        state.level, state.msg, state.args = level, msg, args
        if state.timer is None:
            state.timer = gevent.spawn_later(max(0.0, state.window_end - now), self._summarize, kind)
        return False

    def suppressed(self, kind):
        """How many lines of ``kind`` are counted and not yet summarised."""
        state = self._kinds.get(kind)
        return state.suppressed if state is not None else 0

    def flush(self):
        """Write every pending summary now (before the daemon stops, say)."""
        for kind in list(self._kinds):
            self._summarize(kind)

    def close(self):
        """Drop pending summaries without writing them (idempotent)."""
        for state in self._kinds.values():
            if state.timer is not None:
                state.timer.kill(block=False)
                state.timer = None
        self._kinds.clear()

    def _summarize(self, kind):
        state = self._kinds.get(kind)
        if state is None:
            return
        if state.timer is not None and state.timer is not gevent.getcurrent():
            state.timer.kill(block=False)
        state.timer = None
        count, state.suppressed = state.suppressed, 0
        if count:
            # This line opens a new window: the next line of the kind is
            # counted again, so a steady flood gives one line per interval.
            state.window_end = time.monotonic() + self.interval
            self.logger.log(state.level, state.msg + " (and %d similar lines in the last %gs)",
                            *state.args, count, self.interval)
        state.args = ()

    def _forget_expired(self, now):
        for kind, state in list(self._kinds.items()):
            if now >= state.window_end and not state.suppressed:
                del self._kinds[kind]
