"""The log in memory: recent formatted lines, and ``log.record`` events (docs/reference/rpc.rst, Methods; docs/reference/events.rst).

:class:`LogRing` is a :class:`logging.Handler` the daemon attaches to the root
logger beside its file (or stderr) handler.  For every record it keeps the
line exactly as the log file has it, in a bounded ring that
``daemon.logtail`` reads, and sends a ``log.record`` event on the daemon's
bus with ``level``, ``logger``, ``message``, ``pid``, ``time`` and ``line``,
so ``events.subscribe(["log.*"])`` follows the log without a shell on the
host (in ``-f`` mode under systemd or in a container the log is no file).
Like the file's, the ring's lines and the events' ``message`` hold one line
of text per record (:class:`~gdaemon.logfiles.LogFormatter`): control
characters a client sent are escaped.

Forked workers' records reach the daemon through :meth:`LogRing.ingest`
(called by the worker manager with what a worker forwarded over its
channel): the line joins the ring and the event is sent, but nothing is
written to the log file, which the worker has already written itself.

What this module refuses to do:

- grow without bound: at most :attr:`LogRing.capacity` lines and
  :attr:`LogRing.max_bytes` characters are kept, each line cut at
  :attr:`LogRing.max_line`;
- loop: a record logged while its own ``log.record`` event is being sent
  (by a receiver, by the event tap, in the same greenlet) joins the ring but
  sends no event of its own;
- block the caller on a subscriber: events go into each subscriber's bounded
  queue (which drops the oldest), never onto its socket;
- run receivers where they must not run: a record logged from another
  thread (gevent's monitoring thread) or from the hub greenlet itself is
  sent from a greenlet spawned on the daemon's hub.

Fork safety: the handler remembers the pid that created it.  In a forked
child it neither keeps lines nor sends events on the (copied) bus; it hands
each record's fields to :attr:`LogRing.forward` when the worker side set one
(:meth:`LogRing.forward_to`), else drops them.
"""

import collections
import logging
import os
from typing import Any, Callable, Counter, Deque, Dict, Optional, Set, Tuple

import gevent
from greenlet import getcurrent

from .logfiles import LogFormatter, escape_control
from .unpatched import original

_thread_ident = original("_thread", "get_ident")

__all__ = ["LogRing", "MAX_LINES", "DEFAULT_LINES"]

#: The most lines ``daemon.logtail`` returns, and the ring's default capacity.
MAX_LINES = 10000
#: ``daemon.logtail`` without ``lines``.
DEFAULT_LINES = 100

_EVENT = "log.record"


class LogRing(logging.Handler):
    """A bounded ring of formatted log lines that also emits ``log.record`` events.

    :param bus: the daemon's :class:`~gdaemon.events.EventBus` (``None``: no events).
    :param capacity: most lines kept.
    """

    #: Most characters kept over all lines (oldest lines go first).
    max_bytes = 8 * 1024 * 1024
    #: A longer line is cut to this many characters (a huge traceback).
    max_line = 16 * 1024
    #: Events waiting for the publishing greenlet, at most (oldest dropped).
    max_pending = 1000

    def __init__(self, bus=None, capacity=MAX_LINES, level=logging.NOTSET):
        super().__init__(level)
        # One record, one line, as in the log file (the daemon gives the ring
        # its file's formatter, a LogFormatter too).
        self.setFormatter(LogFormatter())
        self.bus = bus
        self.capacity = capacity
        self._lines: Deque[Tuple[str, Optional[str]]] = collections.deque()  # (line, logger)
        self._chars = 0
        #: Records seen, by level name (``gdaemon_log_records_total``).
        self.counts: Counter[str] = collections.Counter()
        #: In a forked child: ``forward(fields)`` ships a record to the daemon.
        self.forward: Optional[Callable[[Dict[str, Any]], Any]] = None
        self._pid = os.getpid()
        self._thread = _thread_ident()
        self._hub: Optional[Any] = None
        self._sending: Set[Any] = set()      # greenlets sending a log.record right now
        self._pending: Deque[Dict[str, Any]] = collections.deque(maxlen=self.max_pending)
        self._publisher: Optional[gevent.Greenlet] = None

    # -- logging.Handler ------------------------------------------------------

    def handle(self, record):
        """Filter, format, keep and publish ``record``.

        Overrides :meth:`logging.Handler.handle` so the handler lock is not
        held while receivers of ``log.record`` run (they may switch greenlets
        and log themselves).
        """
        if not self.filter(record):
            return False
        try:
            self.emit(record)
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record):
        line = self.format(record)
        fields = {"level": record.levelname, "logger": record.name,
                  "message": escape_control(record.getMessage()),
                  "pid": record.process, "time": record.created, "line": line}
        if os.getpid() != self._pid:
            forward = self.forward
            if forward is not None:
                forward(fields)
            return
        self._add(fields)

    # -- the daemon side ------------------------------------------------------

    def ingest(self, fields):
        """Add a record a forked worker forwarded: ``{"level", "logger",
        "message", "pid", "time", "line"}``; the line joins the ring and a
        ``log.record`` event is sent.  Nothing is written to the log file.

        Records below this handler's level are ignored, as the worker's own
        would have been.
        """
        if not isinstance(fields, dict):
            return
        levelno = logging.getLevelName(fields.get("level", ""))
        if isinstance(levelno, int) and levelno < self.level:
            return
        line = fields.get("line")
        if not isinstance(line, str):
            line = escape_control("%s %s %s[%s]: %s" % (fields.get("time"), fields.get("level"),
                                                        fields.get("logger"), fields.get("pid"),
                                                        fields.get("message")))
        self._add(dict(fields, line=line))

    def attach(self, logger=None):
        """Start collecting: add this handler to ``logger`` (the root logger).

        Called by the daemon process itself (after daemonizing, whose forks
        change the pid), on the thread and hub that will publish events.
        """
        self._pid = os.getpid()
        self._thread = _thread_ident()
        self._hub = gevent.get_hub()
        logger = logger if logger is not None else logging.getLogger()
        if self not in logger.handlers:
            logger.addHandler(self)
        return self

    def forward_to(self, forward):
        """In a forked worker: ship records with ``forward(fields)`` (``None`` stops)."""
        self.forward = forward

    def tail(self, lines=DEFAULT_LINES, loggers=None):
        """The last ``lines`` lines, oldest first.

        :param loggers: only lines of records of these loggers (a set of names).
        """
        if lines <= 0:
            return []
        found = []
        for line, logger in reversed(self._lines):
            if loggers is None or logger in loggers:
                found.append(line)
                if len(found) >= lines:
                    break
        found.reverse()
        return found

    def clear(self):
        self._lines.clear()
        self._chars = 0

    def __len__(self):
        return len(self._lines)

    # -- internals ------------------------------------------------------------

    def _add(self, fields):
        line = fields["line"]
        if len(line) > self.max_line:
            line = line[:self.max_line] + " [... %d characters cut]" % (len(line) - self.max_line)
            fields["line"] = line
        lines = self._lines
        lines.append((line, fields.get("logger")))  # the logger: daemon.logtail's worker filter
        self._chars += len(line)
        while len(lines) > self.capacity or (self._chars > self.max_bytes and len(lines) > 1):
            self._chars -= len(lines.popleft()[0])
        self.counts[fields["level"]] += 1
        if self.bus is not None:
            self._publish(fields)

    def _publish(self, fields):
        if _thread_ident() != self._thread:
            # Another thread: hand over to the daemon's hub.
            self._pending.append(fields)
            hub = self._hub
            if hub is not None:
                hub.loop.run_callback_threadsafe(self._start_publisher)
            return
        current = getcurrent()
        if current in self._sending:
            return  # logged while sending our own event: keep the line, no event
        if current is self._hub:
            # Receivers may block: never run them in the hub.
            self._pending.append(fields)
            self._start_publisher()
            return
        self._send(current, fields)

    def _send(self, current, fields):
        self._sending.add(current)
        try:
            self.bus.emit(_EVENT, **fields)
        finally:
            self._sending.discard(current)

    def _start_publisher(self):
        if self._publisher is None:
            self._publisher = gevent.spawn(self._drain)

    def _drain(self):
        current = getcurrent()
        try:
            while self._pending:
                self._send(current, self._pending.popleft())
        finally:
            self._publisher = None
