"""Noticing a blocked hub: a greenlet that stops every other one from running.

Everything in a daemon runs in one gevent hub: the RPC server, the watchdog,
greenlet workers.  A greenlet that blocks the process (an unpatched
``time.sleep``, a CPU-bound loop, blocking I/O in a greenlet worker) freezes
all of it, and nothing that runs in the hub can even say so.  gevent's
monitoring thread (a native thread) notices when the hub has not switched
greenlets for ``max_blocking_time`` seconds and sends an
:class:`gevent.events.EventLoopBlocked`; :class:`HubMonitor` logs it once per
blocking episode, naming the greenlet and where it blocked, then again only
at doubling intervals while it stays blocked.

Thread safety: :meth:`HubMonitor._on_event` runs in the monitoring thread;
it only formats a message and calls the logger (``logging`` is thread-safe).
"""

import time

import gevent
from gevent import events

__all__ = ["HubMonitor"]


class HubMonitor:
    """Logs greenlets that block the hub (see the module docstring).

    :param logger: where to log (the daemon's logger).
    :param max_blocking_time: seconds the hub may stay blocked unnoticed.
    """

    def __init__(self, logger, max_blocking_time=1.0):
        self.logger = logger
        self.max_blocking_time = float(max_blocking_time)
        self._hub = None
        self._episode = None     # [greenlet id, first seen, next report, last seen]
        self.reports = 0

    def start(self):
        gevent.config.max_blocking_time = self.max_blocking_time
        gevent.config.print_blocking_reports = False  # we log instead (stderr is /dev/null with -d)
        gevent.config.monitor_thread = True
        if self._on_event not in events.subscribers:
            events.subscribers.append(self._on_event)
        self._hub = gevent.get_hub()
        self._hub.start_periodic_monitoring_thread()

    def stop(self):
        try:
            events.subscribers.remove(self._on_event)
        except ValueError:
            pass
        hub, self._hub = self._hub, None
        thread = getattr(hub, "periodic_monitoring_thread", None)
        if thread is not None:
            thread.kill()
            hub.periodic_monitoring_thread = None
        gevent.config.monitor_thread = False

    def _on_event(self, event):
        if not isinstance(event, events.EventLoopBlocked):
            return
        now = time.monotonic()
        key = id(event.greenlet)
        episode = self._episode
        # The monitor reports every period while the hub stays blocked; a gap
        # means the hub ran in between, so this is a new episode.
        if episode is None or episode[0] != key or now - episode[3] > 3 * self.max_blocking_time:
            self._episode = [key, now, now + 2 * self.max_blocking_time, now]
            blocked_for = self.max_blocking_time
        else:
            episode[3] = now
            _, first, next_report, _ = episode
            if now < next_report:
                return
            blocked_for = now - first + self.max_blocking_time
            episode[2] = now + (now - first) + self.max_blocking_time
        self.reports += 1
        where = _innermost(event.info)
        self.logger.error("the hub has been blocked for %.1fs by %r%s: every RPC connection, "
                          "the watchdog and greenlet workers wait (use gevent-cooperative "
                          "calls or a forked Worker)", blocked_for, event.greenlet,
                          " at " + where if where else "")


def _innermost(info):
    """The innermost frame of gevent's report: ``File "...", line N, in f: code``."""
    lines = "\n".join(str(line) for line in info or ()).splitlines()
    for index in range(len(lines) - 1, -1, -1):
        text = lines[index].strip()
        if text.startswith("File "):
            code = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if code.startswith("File ") or not code:
                return text
            return "%s: %s" % (text, code)
    return None
