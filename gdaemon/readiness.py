"""When a starting daemon is ready: RPC served and every worker installed at
start LOOPING, or the reason it never will be.

``-d`` returns 0 only then (else prints the reason and exits 1), and during
an upgrade the new daemon tells the old one it is ready only then.  A worker
that fails before it reached LOOPING (its ``spinup()`` raised, it died, it
could not be forked) makes the start fail, naming the worker and, when it
logged one, the error it died of.
"""

import logging
import time

from gevent.event import Event

from .wire.status import WorkerStatus

__all__ = ["StartupWatch"]

_LOOPING = int(WorkerStatus.LOOPING)
_RUNNING = (WorkerStatus.LOOPING, WorkerStatus.PAUSED)


class StartupWatch:
    """Watches the daemon's events from before its workers start.

    :param daemon: the starting :class:`~gdaemon.daemon.Daemon`; every worker
        installed now is waited for.
    """

    #: Seconds between two looks at whether the daemon was asked to stop.
    poll = 0.1

    def __init__(self, daemon):
        self.daemon = daemon
        self.pending = set(daemon.workers.names()) if daemon.workers_made else set()
        self.failure = None
        self._errors = {}
        self._changed = Event()
        signals = daemon.events
        self._receivers = [(signals.signal("worker.state"), self._on_state),
                           (signals.signal("worker.failed"), self._on_failed),
                           (signals.signal("log.record"), self._on_log)]
        for signal, receiver in self._receivers:
            signal.connect(receiver)

    def wait(self):
        """Block this greenlet until ready; ``None``, or why it cannot be."""
        try:
            while self.pending and self.failure is None:
                if self.daemon._stop_requested:
                    return self.failure_at_stop() or "stopped before its workers were ready (%s not LOOPING)" % (
                        ", ".join(repr(name) for name in sorted(self.pending)))
                self._changed.wait(self.poll)
                self._changed.clear()
                self._look_at_handles()
            return self.failure
        finally:
            for signal, receiver in self._receivers:
                signal.disconnect(receiver)

    def _look_at_handles(self):
        """Safety net for a state change whose event this watch did not see."""
        for name in list(self.pending):
            try:
                handle = self.daemon.workers.get(name)
            except Exception:  # scaled away meanwhile: nothing to wait for
                self.pending.discard(name)
                continue
            if handle.status in _RUNNING or handle.loops:
                self.pending.discard(name)

    def failure_at_stop(self, grace=0.5):
        """The daemon is stopping before it was ready: why, if a worker failed.

        The watchdog emits a worker's events once it has handled its death,
        possibly after it asked the daemon to stop (a worker that is not
        forever): they get ``grace`` seconds to arrive.
        """
        deadline = time.monotonic() + grace
        while self.failure is None and self.pending and time.monotonic() < deadline:
            self._changed.wait(0.02)
            self._changed.clear()
        if self.failure is None:
            for name in sorted(self.pending):
                if name in self._errors:
                    return "worker %r failed before it was ready: %s" % (name, self._errors[name])
        return self.failure

    def _on_state(self, sender, name=None, status=None, **kw):
        if status == _LOOPING and name in self.pending:
            self.pending.discard(name)
            self._changed.set()

    def _on_failed(self, sender, name=None, reason=None, **kw):
        if name in self.pending and self.failure is None:
            error = self._errors.get(name)
            self.failure = "worker %r failed before it was ready: %s" % (
                name, "%s (%s)" % (error, reason) if error else reason)
            self._changed.set()

    def _on_log(self, sender, level=None, logger=None, message=None, line=None, **kw):
        # A worker's logger is gdaemon.<slug>.worker.<name>: keep the last
        # error it logged, ending with the exception it died of.
        if not isinstance(logger, str) or ".worker." not in logger:
            return
        if logging.getLevelName(level or "") not in (logging.ERROR, logging.CRITICAL):
            return
        name = logger.split(".worker.", 1)[1]
        text = message or ""
        if isinstance(line, str) and "\n" in line:
            last = [part for part in line.splitlines() if part.strip()][-1].strip()
            text = "%s: %s" % (text, last) if text else last
        self._errors[name] = text
