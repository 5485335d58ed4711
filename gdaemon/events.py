"""The daemon's signal bus: a blinker :class:`~blinker.Namespace` of named events.

Every event the daemon emits goes through :meth:`EventBus.emit` (or a plain
``bus.signal(name).send(sender, **data)``), which

- calls each receiver in turn, logging (not propagating) a receiver's
  exception, so one faulty receiver cannot take the daemon down or keep the
  other receivers from running;
- then hands ``(name, data)`` to the bus's *taps*, which is how RPC
  subscribers (``events.subscribe``) see events without a receiver per name.

POSIX signals are turned into ``posix.<name>`` events by :class:`SignalRouter`.

Signal safety: handlers are installed with :func:`gevent.signal_handler`, so
libev only records the signal and the hub later runs our callback in a fresh
greenlet: receivers may log, do I/O and block cooperatively.  Nothing runs
inside a raw C-level signal handler.
"""

import logging
import signal as _signal
import time
from typing import NamedTuple, Optional, Tuple

import gevent
from blinker import NamedSignal, Namespace

from .compat.gevent_hub import watch_any_child

__all__ = ["EventBus", "SignalRouter", "HANDLED_SIGNALS", "EVENTS", "EVENT_NAMES", "Event", "posix_event_name"]

log = logging.getLogger("gdaemon.events")

#: The POSIX signals the daemon turns into events (docs/reference/events.rst).
HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGWINCH",
                   "SIGCHLD")

class Event(NamedTuple):
    """One event gdaemon emits, as the documentation's event reference lists it."""

    #: The event's name (what receivers connect to and subscribers match).
    name: str
    #: Keyword arguments every emission carries (pushed to subscribers as ``data``).
    keys: Tuple[str, ...]
    #: When it is sent, and what the keys hold (reStructuredText).
    meaning: str
    #: Where it is sent: ``"daemon"`` (the daemon's bus, and so to subscribers),
    #: ``"worker"`` (a worker's own ``self.events``), or ``"push"`` (only to
    #: subscribers, never on a bus).
    where: str = "daemon"
    #: Keys that only some emissions carry.
    optional: Tuple[str, ...] = ()


_POSIX = ("sigterm", "sigint", "sighup", "sigchld", "sigusr1", "sigusr2", "sigquit", "sigwinch")

#: Every event gdaemon itself emits, with its payload keys.  A test checks a
#: real daemon's events against it; the documentation's event reference is
#: generated from it.
EVENTS = tuple(
    [Event("posix." + sig, ("signum",),
           "The daemon received SIG%s (``signum``: its number)." % sig[3:].upper())
     for sig in _POSIX]
    + [
        Event("daemon.start", (), "The daemon is starting: its configuration is checked, "
              "``setup()`` not run yet."),
        Event("daemon.ready", (), "The daemon serves RPC and its workers are started."),
        Event("daemon.reload", (), "A reload began (SIGHUP or ``daemon.reload``)."),
        Event("daemon.stop", (), "The daemon began to stop."),
        Event("worker.spawned", ("name", "pid"), "A worker instance was started (``pid``: "
              "its process, the daemon's for a greenlet worker)."),
        Event("worker.respawned", ("name", "pid"), "A worker was started again after it died "
              "or was restarted (sent after ``worker.spawned``)."),
        Event("worker.state", ("name", "status", "status_name"), "A worker's status changed "
              "(``status``: the code, ``status_name``: ``SPINUP``, ``LOOPING``...)."),
        Event("worker.exited", ("name", "pid", "exitcode"), "A worker's process ended "
              "(``exitcode``: its exit status, or minus the signal that killed it; for an exec "
              "worker also ``signal``, that signal's name or ``null``).", optional=("signal",)),
        Event("worker.exit", ("name", "pid", "exitcode", "signal"), "An exec worker's program "
              "ended, sent after ``worker.exited`` with the same keys: ``exitcode`` (its exit "
              "status, or minus the signal that killed it) and ``signal`` (``\"SIGTERM\"``..., "
              "or ``null`` when it exited)."),
        Event("worker.failed", ("name", "reason"), "A worker could not be started or kept "
              "running (``reason``: one line saying why)."),
        Event("worker.recycled", ("name", "reason"), "A worker instance is being recycled "
              "(a graceful restart): ``reason`` is ``\"maxrss\"``, ``\"maxloops\"`` or "
              "``\"maxage\"``, with the figure that passed the limit: ``rss`` (bytes), "
              "``loops`` or ``age`` (seconds).", optional=("rss", "loops", "age")),
        Event("worker.message", ("name", "command", "payload"), "A worker wrote to the "
              "daemon (``self.send(command, payload)``)."),
        Event("rpc.connect", ("peer",), "A client connected (``peer``: its address; "
              "``transport``: ``\"websocket\"`` for a websocket).", optional=("transport",)),
        Event("rpc.disconnect", ("peer",), "A client's connection closed.", optional=("transport",)),
        Event("log.record", ("level", "logger", "message", "pid", "time", "line"),
              "A log record of INFO and above (DEBUG with ``-v``) of the daemon or a worker: "
              "``level`` (``\"WARNING\"``...), ``logger``, ``message``, ``pid``, ``time`` and "
              "``line``, the line as the log file has it."),
        Event("events.dropped", ("count",), "Pushed to a subscriber that did not keep up, in "
              "place of its ``count`` oldest events.", where="push"),
        Event("daemon.worker.<command>", ("payload",), "In a worker: the daemon sent it "
              "``command`` (``worker.send``); ``pause``, ``resume`` and ``stop`` have built-in "
              "receivers.", where="worker"),
        Event("daemon.worker.loopstart", (), "In a worker: a ``loop()`` run begins.", where="worker"),
        Event("daemon.worker.loopstop", (), "In a worker: a ``loop()`` run ended.", where="worker"),
        Event("posix.<name>", ("signum",), "In a forked worker: it received SIGHUP, SIGUSR1, "
              "SIGUSR2, SIGWINCH or SIGQUIT (ignored unless a receiver acts on it).", where="worker"),
    ])

#: Every event name the daemon itself sends on its bus.
EVENT_NAMES = tuple(event.name for event in EVENTS if event.where == "daemon")


def posix_event_name(signum):
    """``signal.SIGTERM`` -> ``"posix.sigterm"``."""
    return "posix." + _signal.Signals(signum).name.lower()


class BusSignal(NamedSignal):
    """A blinker signal whose receivers are isolated from each other."""

    #: The bus this signal belongs to (set by :meth:`EventBus.signal`).
    bus: Optional["EventBus"] = None

    def send(self, sender=None, /, **kwargs):
        """Call every receiver; log a receiver's exception and go on.

        Returns ``[(receiver, result), ...]`` as blinker does; a receiver that
        raised has its exception as result.
        """
        results = []
        if not self.is_muted:
            for receiver in self.receivers_for(sender):
                try:
                    result = receiver(sender, **kwargs)
                except Exception as exc:  # isolation: see the module docstring
                    log.exception("receiver %r of event %r failed", receiver, self.name)
                    result = exc
                results.append((receiver, result))
        if self.bus is not None:
            self.bus._tap(self.name, kwargs)
        return results


class EventBus(Namespace):
    """The daemon's own namespace of events (never blinker's global one).

    :param sender: what receivers get as ``sender`` from :meth:`emit`
        (the daemon).
    """

    def __init__(self, sender=None):
        super().__init__()
        self.sender = sender
        self._taps = []

    def signal(self, name, doc=None):
        """The :class:`BusSignal` called ``name``, created on first use."""
        if name not in self:
            sig = BusSignal(name, doc)
            sig.bus = self
            self[name] = sig
        return self[name]

    def emit(self, name, /, **data):
        """Send event ``name`` with ``data`` from the bus's sender."""
        return self.signal(name).send(self.sender, **data)

    def add_tap(self, tap):
        """Call ``tap(name, data, time)`` after every event; see :meth:`remove_tap`."""
        self._taps.append(tap)

    def remove_tap(self, tap):
        try:
            self._taps.remove(tap)
        except ValueError:
            pass

    def _tap(self, name, data):
        if not self._taps:
            return
        now = time.time()
        for tap in list(self._taps):
            try:
                tap(name, data, now)
            except Exception:
                log.exception("event tap %r failed on %r", tap, name)


class SignalRouter:
    """Installs gevent signal handlers that emit ``posix.*`` events on a bus.

    :meth:`install` remembers the previous Python-level handlers and
    :meth:`uninstall` restores them (so an embedding program, or a test, gets
    its process back as it was).

    SIGCHLD: libev's own SIGCHLD handling (the loop's child reaper) is what
    reaps children; our watcher for the same signal only turns it into the
    ``posix.sigchld`` event (libev allows several watchers per signal).  A
    catch-all child watcher (pid 0) makes sure that reaper is installed from
    the start, so every child the daemon has is reaped, workers or not: a
    process a handler started, or an orphan re-parented to a daemon running
    as PID 1 in a container.  Exit statuses are not stolen from
    ``subprocess`` under monkey-patching (gevent's ``waitpid`` keeps them) nor
    from a blocking ``wait()``; unpatched code that *polls* a child
    (``Popen.poll()``) may find it reaped already.
    """

    def __init__(self, bus, signals=HANDLED_SIGNALS):
        self.bus = bus
        self.signals = [getattr(_signal, name) for name in signals if hasattr(_signal, name)]
        self._handles = []
        self._previous = {}
        self._reaper = None

    def install(self):
        for signum in self.signals:
            self._previous[signum] = _signal.getsignal(signum)
            self._handles.append(gevent.signal_handler(signum, self._deliver, signum))
        if getattr(_signal, "SIGCHLD", None) in self.signals:
            self._reaper = watch_any_child(gevent.get_hub().loop, _reaped)

    def _deliver(self, signum):
        self.bus.emit(posix_event_name(signum), signum=signum)

    def uninstall(self, ignore=False):
        """Cancel our handlers and put the previous ones back (idempotent).

        :param ignore: instead of restoring, ignore the signals: for a
            process about to exit, where a late SIGTERM must not kill it
            with a signal status after a clean stop.
        """
        # Blocked meanwhile: stopping a signal's last watcher makes libev put
        # SIG_DFL back, and a SIGTERM in the moment before ours is set (a
        # systemd stop, an impatient admin) would kill an exiting daemon with
        # a signal status.  Blocked, it waits: ignored (discarded) or handled
        # by the handler put back.
        blocked = _signal.pthread_sigmask(_signal.SIG_BLOCK, list(self._previous))
        try:
            self._cancel()
            for signum, previous in self._previous.items():
                if ignore and signum != getattr(_signal, "SIGCHLD", None):
                    previous = _signal.SIG_IGN
                try:
                    _signal.signal(signum, previous if previous is not None else _signal.SIG_DFL)
                except (TypeError, ValueError, OSError):
                    log.debug("could not restore handler of signal %d", signum, exc_info=True)
            self._previous = {}
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, blocked)

    def _cancel(self):
        for handle in self._handles:
            handle.cancel()
        self._handles = []
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None

    def reset_in_child(self):
        """In a forked child, before it drops the daemon's loop: stop our watchers.

        They live in libev's process-wide signal table, which the child's new
        default loop would otherwise dispatch (see :mod:`gdaemon.forking`).
        Dispositions stay as they are: the child blocks these signals until
        it installs its own handlers.
        """
        self._handles_in_child = self._handles  # keep the objects alive: never deallocated there
        self._cancel()


def _reaped(*args):
    """Catch-all child watcher callback: libev reaped a child; nothing more to do."""
