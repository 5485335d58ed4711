"""Noticing a blocked hub: a greenlet that stops every other one from running.

Everything in a daemon runs in one gevent hub: the RPC server, the watchdog,
greenlet workers.  A greenlet that blocks the process (an unpatched
``time.sleep``, a CPU-bound loop, blocking I/O in a greenlet worker) freezes
all of it, and nothing that runs in the hub can even say so.

:class:`HubMonitor` is a native thread that pings the hub every
``max_blocking_time`` seconds (``loop.run_callback_threadsafe``).  A ping the
hub has not answered by the next one means the hub has been blocked at least
that long: the thread then reads the main thread's current stack
(``sys._current_frames``), and logs where it is blocked and, when it is a
worker's ``loop()``, which worker.  It logs once per blocking episode, then
again only at doubling intervals while the hub stays blocked.

Why not gevent's own monitoring thread (``gevent.config.monitor_thread``):
it traces every greenlet switch (a cost on every RPC) and imports
``zope.interface`` (about 3 MB of the daemon's idle memory); this ping costs
one wake-up per period and nothing per switch.

Thread safety: the thread only reads frames and calls the logger
(``logging`` is thread-safe); the hub side only stores an integer.  The
thread is a raw thread (``_thread``, never monkey-patched) and a daemon
thread: it does not survive a fork, and a forked worker has none.
"""

import signal
import sys
import time
from typing import Optional

from .unpatched import original

__all__ = ["HubMonitor"]

_start_new_thread = original("_thread", "start_new_thread")
_get_ident = original("_thread", "get_ident")
_sleep = original("time", "sleep")


class HubMonitor:
    """Logs greenlets that block the hub (see the module docstring).

    :param logger: where to log (the daemon's logger).
    :param max_blocking_time: seconds the hub may stay blocked unnoticed.
    :param hub: the hub to watch (default: this thread's).
    """

    def __init__(self, logger, max_blocking_time=1.0, hub=None):
        self.logger = logger
        self.max_blocking_time = float(max_blocking_time)
        self._hub = hub
        self._thread_ident: Optional[int] = None
        self._sent = 0
        self._answered = 0
        self._running = False
        #: Blocking episodes reported so far.
        self.reports = 0

    def start(self):
        import gevent
        if self._hub is None:
            self._hub = gevent.get_hub()
        self._thread_ident = _get_ident()  # the hub's (main) thread
        self._running = True
        _start_new_thread(self._run, ())

    def stop(self):
        """Stop the thread (it notices within one period); idempotent."""
        self._running = False

    def _answer(self, ping):
        self._answered = ping

    def _run(self):
        # Process signals are the main thread's (its handlers run there): were
        # one delivered here while the main thread blocks it for a moment
        # (SignalRouter.uninstall), its default action would apply.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        period = self.max_blocking_time
        #: When the hub stopped answering, while it does not answer.
        blocked_since: Optional[float] = None
        #: When to report the episode next (meaningful while blocked_since is set).
        next_report = 0.0
        while self._running:
            self._sent += 1
            try:
                self._hub.loop.run_callback_threadsafe(self._answer, self._sent)
            except Exception:  # the loop is gone: the daemon is ending
                return
            _sleep(period)
            if not self._running:
                return
            now = time.monotonic()
            if self._answered >= self._sent:
                blocked_since = None
                continue
            if blocked_since is None:
                blocked_since, next_report = now - period, now
            if now >= next_report:
                self._safe_report(now - blocked_since)
                next_report = now + (now - blocked_since)
            # Wait for the answer rather than pile up pings.
            while self._running and self._answered < self._sent:
                _sleep(min(period, 0.1))
                now = time.monotonic()
                if now >= next_report:
                    self._safe_report(now - blocked_since)
                    next_report = now + (now - blocked_since)
            blocked_since = None

    def _safe_report(self, blocked_for):
        try:
            self._report(blocked_for)
        except Exception:  # pragma: no cover - _report guards itself; this is the last line
            pass  # nowhere to report to: the thread must outlive any report

    def _report(self, blocked_for):
        self.reports += 1
        assert self._thread_ident is not None  # start() set it before starting this thread
        try:
            frame = sys._current_frames().get(self._thread_ident)
            where, worker = _where(frame)
        except Exception:  # whatever the stack holds, the monitor reports and lives on
            where, worker = None, None
        finally:
            frame = None  # no reference cycle through the blocked stack
        try:
            self.logger.error("the hub has been blocked for %.1fs%s%s: every RPC connection, the "
                              "watchdog and greenlet workers wait (use gevent-cooperative calls, "
                              "or a forked Worker)", blocked_for,
                              " by greenlet worker %r" % worker if worker else "",
                              " at " + where if where else "")
        except Exception:  # never let the monitor die of a logging error
            pass


def _where(frame):
    """``("file:line in function: code", worker name or None)`` for a blocked stack."""
    import linecache
    where = None
    worker = None
    depth = 0
    while frame is not None and depth < 200:
        # Each frame on its own: one that cannot be described (f_lineno is
        # None in some frames, a file may be unreadable, an owner's attribute
        # may raise) is skipped, never the end of the monitor thread (issue 14).
        try:
            code = frame.f_code
            if where is None and "/gevent/" not in code.co_filename:
                lineno = frame.f_lineno
                line = linecache.getline(code.co_filename, lineno).strip() if lineno else ""
                where = "%s:%s in %s%s" % (code.co_filename, lineno if lineno else "?", code.co_name,
                                           ": " + line if line else "")
            if worker is None and code.co_name in ("_run_loop", "_serve"):
                owner = frame.f_locals.get("self")
                name = getattr(getattr(owner, "worker", None), "name", None)
                worker = name if isinstance(name, str) else None
        except Exception:
            pass  # see above: this frame stays undescribed
        frame = frame.f_back
        depth += 1
    return where, worker

