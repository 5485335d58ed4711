"""The daemon's side of a worker: :class:`WorkerHandle` and its ``output_channel``.

``daemon.workers.get(name)`` returns a handle.  It lives as long as the
worker is installed and outlives each instance (process or greenlet): it
holds the worker's status (see :class:`WorkerHandle`), its restart
history, the channel to the current instance, the pending ``worker.call``
replies, and :class:`Mode`, what the next exit of the instance means.
"""

import enum
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Optional, Tuple

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from ..errors import (ChannelClosed, ChannelFull, InvalidParams, MethodNotFound, RpcError,
                      WorkerUnavailable)
from ..process import resource_usage
from .exec import is_exec
from .messages import CALL, CMD, encode
from .worker import Worker, WorkerStatus

if TYPE_CHECKING:
    from .channel import Endpoint

__all__ = ["WorkerHandle", "OutputChannel", "Mode"]


class OutputChannel:
    """Commands from the daemon to one worker (comodojo's ``getOutputChannel()``).

    The same object serves every instance of the worker, across respawns.
    """

    def __init__(self, handle):
        self._handle = handle

    def send(self, command: str, payload: Any = None) -> int:
        """Send ``command`` (received as ``daemon.worker.<command>``) with ``payload``.

        :returns: bytes written (> 0).
        :raises ChannelFull: the worker's channel has no room now.
        :raises ChannelClosed: the worker is not running.
        """
        return self._handle.send(command, payload)


class Mode(enum.Enum):
    """What the next exit of a handle's current instance means."""

    #: A death: respawn a forever worker (policy applies), else stop the daemon.
    RUN = "run"
    #: Asked for (``worker.restart``, a reload): start a new instance at once.
    RESTART = "restart"
    #: Asked for (stop, scale down): the worker stays STOPPED.
    STOP = "stop"
    #: Recycled (``maxrss``, ``maxloops``, ``maxage``): a fresh instance at
    #: once, not counted as a restart.
    RECYCLE = "recycle"


class WorkerHandle:
    """The daemon's side of one worker (one instance of a pool), across its lives.

    **Status.**  :attr:`status` is the daemon's record of the worker's
    status, and :meth:`transition` the only way to change it: it records
    the new status, emits ``worker.state`` (once per change) and wakes the
    greenlets in :meth:`wait_until`.  A running instance writes its status
    to its status block (:attr:`status_block`, shared memory for a forked
    instance) and sends it as a STATE message; the manager turns each
    message into a transition (in the hub, as soon as it is read, when
    nothing of the instance waits before it: the event then follows from the
    watchdog greenlet through the inbox, in order), and the watchdog's tick
    transitions to what
    the block shows when a message was lost (a full channel).  The daemon
    itself makes the transitions around an instance's life: SPINUP at its
    start, RESTARTING or STOPPED after its death.

    **Settings.**  ``looptime``, ``forever`` and ``timeout`` are those of
    :attr:`worker` (set by ``install()``); the handle only reads them.

    The watchdog, the lifecycle functions and the manager use the public
    attributes and methods below; the underscored ones are the handle's own.
    """

    def __init__(self, manager, worker, policy):
        self.manager = manager
        #: The installed :class:`~gdaemon.Worker` (a forked instance runs a copy of it).
        self.worker: Worker = worker
        self.name: str = worker.name
        #: Its pool's name and its index there.
        self.pool = worker.pool
        self.instance = worker.instance
        self.kind = worker.kind
        #: ``handle.output_channel.send(command, payload)``.
        self.output_channel = OutputChannel(self)
        #: Its restart history (:class:`~gdaemon.workers.watchdog.RestartTracker`).
        self.tracker = policy.tracker()
        #: Instances started after the first one (recycles not counted).
        self.restarts = 0
        #: Times an instance was recycled, the last reason, and the count per reason.
        self.recycles = 0
        self.recycle_reason = None
        self.recycle_counts: Dict[str, int] = {}
        #: Epoch time the current (or last) instance started.
        self.started_at: Optional[float] = None
        #: Exit code of the last instance (negative: killed by that signal).
        self.last_exit: Optional[int] = None
        self.pid: Optional[int] = None
        self.alive = False
        #: True while a new instance is being forked (by the fork server).
        self.spawning = False
        #: Counts the instances started: tells the current one from those before.
        self.generation = 0
        self._status = WorkerStatus.STOPPED
        #: The status block of the current (or last) instance: its channel's, or
        #: a greenlet instance's link's (duck-typed: ``state``, ``loops``...).
        self.status_block: Any = None
        self._push = None
        self._channel = None
        self._end: Optional[Endpoint] = None
        self._io = None
        self._link = None
        #: The greenlet of a greenlet worker's current instance.
        self.greenlet = None
        #: An exec worker's current (or last) :class:`~gdaemon.workers.exec.Program`.
        self.program = None
        #: What the next exit of the current instance means.
        self.mode = Mode.RUN
        #: Why the daemon killed the current instance (heartbeat, recycle), else ``None``.
        self.killed: Optional[str] = None
        #: The watchdog's timer of a pending respawn, else ``None``.
        self.respawn_timer: Any = None
        #: Messages from the instance waiting for the watchdog greenlet, in order.
        self.inbox: Deque[Any] = deque()
        #: Held by a restart of this worker (one at a time).
        self.restart_lock = Semaphore()
        self._last_loops = 0
        self._calls: Dict[int, AsyncResult] = {}
        self._changed = Event()
        self._exited = Event()
        self._exited.set()

    # -- settings (the worker's) ------------------------------------------------

    @property
    def looptime(self) -> float:
        """Seconds between the starts of two ``loop()`` runs."""
        return self.worker.looptime

    @property
    def forever(self) -> bool:
        """Whether the worker is respawned when it dies."""
        return self.worker.forever

    @property
    def timeout(self) -> Optional[float]:
        """Seconds its heartbeat may stall before the watchdog kills it; ``None``: never.

        ``None`` for a worker that runs a program: a program has no heartbeat
        (its worker's ``timeout`` is how long it gets to stop).
        """
        return None if is_exec(self.worker) else self.worker.timeout

    # -- status ----------------------------------------------------------------------

    @property
    def status(self) -> WorkerStatus:
        """The current :class:`WorkerStatus` (see the class docstring)."""
        return self._status

    def transition(self, status: WorkerStatus, announce: bool = True) -> bool:
        """Make ``status`` the worker's status: emit ``worker.state`` and wake the
        waiters; nothing when it is the status already.  True if it changed.

        ``announce=False``: from the hub, where receivers must not run: the
        status is recorded now (what ``worker.info`` reads) and the caller
        has it announced later with :meth:`announce`
        (:meth:`WorkerManager.on_message_bytes`: through the inbox, in order
        with what the instance says next and before its exit); the waiters
        wake then, after the event, so what they do follows it.
        """
        if status is self._status:
            return False
        self._status = status
        if announce:
            self.announce(status)
        return True

    def announce(self, status: WorkerStatus) -> None:
        """Emit ``worker.state`` for ``status`` and wake the waiters (see :meth:`transition`)."""
        self.manager.emit("worker.state", name=self.name, status=int(status), status_name=status.name)
        self._notify()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checked on every change of the
        handle (a transition, an instance started or gone); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._changed
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Also re-check now and then, for a predicate on something else.
            event.wait(min(remaining, 1.0))

    @property
    def exited(self) -> Event:
        """Set while no instance runs (``gevent.wait([h.exited for h in handles])``)."""
        return self._exited

    def _notify(self):
        """Wake every greenlet waiting in :meth:`wait_until`."""
        event, self._changed = self._changed, Event()
        event.set()

    @property
    def loops(self) -> int:
        """Loops run by the current (or last) instance."""
        if self.alive:
            try:
                return self.status_block.loops
            except ChannelClosed:
                pass
        return self._last_loops

    def info(self) -> Dict[str, Any]:
        """The ``worker.info`` dict; ``rss`` (bytes) and ``cpu`` (seconds) are those of
        the worker's process, the daemon's for a greenlet worker (``None`` when down);
        ``recycles`` counts its recycles, ``recycle_reason`` is the last one's
        (``"maxrss"``, ``"maxloops"``, ``"maxage"``; ``None`` before any)."""
        status = self.status
        rss, cpu = resource_usage(self.pid) if self.pid else (None, None)
        return {"name": self.name, "kind": str(self.kind), "pid": self.pid, "status": int(status),
                "status_name": status.name, "looptime": self.looptime, "forever": self.forever,
                "restarts": self.restarts, "loops": self.loops, "started_at": self.started_at,
                "last_exit": self.last_exit, "rss": rss, "cpu": cpu, "recycles": self.recycles,
                "recycle_reason": self.recycle_reason}

    # -- the current instance ----------------------------------------------------

    def begin_instance(self):
        """A new instance is being started: a new generation, in :attr:`Mode.RUN`."""
        self.generation += 1
        self.killed = None
        self.mode = Mode.RUN
        self._exited.clear()
        self.started_at = time.time()

    def start_failed(self):
        """The instance :meth:`begin_instance` announced could not be started."""
        self._exited.set()
        self._notify()

    def instance_started(self, respawn):
        """The instance runs (attached already); ``respawn``: count it as a restart."""
        self.alive = True
        if respawn:
            self.restarts += 1
        self._notify()

    def attach_process(self, pid, channel, end, io):
        """A forked instance now runs: its pid, channel, daemon end and io watcher."""
        self._channel, self._end, self._io, self.status_block = channel, end, io, channel.status
        self._push = end.send
        self.pid = pid

    def attach_greenlet(self, greenlet, status, link):
        """A greenlet instance now runs."""
        self.status_block, self._link, self._push, self.greenlet = status, link, link.push, greenlet
        self.pid = os.getpid()

    def detach(self, exitcode, drain, before_release):
        """The current instance died: stop watching it, hand its last messages to
        ``drain(data)``, call ``before_release()`` (the daemon handles what they
        said while the handle is still alive), then release the instance.

        :returns: the channel the caller must close, or ``None``.
        """
        if self._io is not None:
            self._io.stop()
            self._io.close()  # before its fd is closed
            self._io = None
        if self._end is not None:
            try:
                leftovers = self._end.drain()  # written just before it died
            except ChannelClosed:
                leftovers = []
            for data in leftovers:
                drain(data)
        before_release()
        try:
            self._last_loops = self.status_block.loops
        except ChannelClosed:
            pass
        if self._link is not None:
            self._link.close()
        channel = self._channel
        self._channel = self._end = self._link = self.greenlet = self._push = None
        self.alive = False
        self.pid = None
        self.last_exit = exitcode
        self._fail_calls("exited")
        self._exited.set()
        self._notify()
        return channel

    def drain_channel(self):
        """The messages the current forked instance wrote (hub context); raises ChannelClosed."""
        assert self._end is not None  # a forked instance is attached
        return self._end.drain()

    def stop_watching(self):
        """Its doorbell reports EOF: stop the io watcher (the child watcher reports the exit)."""
        if self._io is not None:
            self._io.stop()

    # -- talking to it ----------------------------------------------------------------

    def send(self, command: str, payload: Any = None) -> int:
        """See :meth:`OutputChannel.send`; also raises ``ValueError`` for a payload
        that can never be delivered (too large for the channel, or not encodable)."""
        if not isinstance(command, str) or not command:
            raise ValueError("a command must be a non-empty string, got %r" % (command,))
        return self.send_raw(encode(CMD, command, payload))

    def send_raw(self, data: bytes) -> int:
        """Write ``data``, an encoded message (:mod:`~gdaemon.workers.messages`), to
        the current instance; raises as :meth:`send`."""
        if is_exec(self.worker):
            raise ChannelClosed("worker %r runs a program: it takes signals (worker.signal), "
                                "not commands" % (self.name,))
        push = self._push
        if push is None or not self.alive:
            raise ChannelClosed("worker %r is not running (%s)" % (self.name, self.status.name))
        return push(data)

    def call(self, method: str, params: Any = None, timeout: Optional[float] = None) -> Any:
        """Call the worker's ``@exposed`` method ``method``; return its result.

        :param params: a list (positional) or a dict (keyword arguments).
        :param timeout: seconds; default :attr:`WorkerManager.call_timeout`.
        :raises WorkerUnavailable: not running, channel full, no answer in time.
        :raises RpcError: what the worker's method raised (``-32601`` for an
            unknown method, ``-32603`` for an unexpected exception).
        """
        if is_exec(self.worker):
            raise MethodNotFound("worker %r runs a program: it has no methods to call" % (self.name,))
        if timeout is None:
            timeout = self.manager.call_timeout
        call_id = self.manager.next_call_id()
        result: AsyncResult[Tuple[bool, Any]] = AsyncResult()
        self._calls[call_id] = result
        try:
            try:
                self.send_raw(encode(CALL, call_id, method, params))
            except ValueError as exc:  # can never be delivered: too large, unencodable
                raise InvalidParams("invalid param 'params': %s" % (exc,)) from None
            except (ChannelFull, ChannelClosed) as exc:
                raise WorkerUnavailable("worker %r: %s" % (self.name, exc)) from None
            try:
                # (its stubs say get() may return None: it raises Timeout instead)
                ok, value = result.get(timeout=timeout)  # type: ignore[misc]
            except gevent.Timeout:
                raise WorkerUnavailable("worker %r did not answer within %gs"
                                        % (self.name, timeout)) from None
        finally:
            self._calls.pop(call_id, None)
        if ok:
            return value
        raise RpcError.from_dict(value)

    def resolve_call(self, call_id: int, ok: bool, value: Any) -> None:
        """The instance answered ``worker.call`` ``call_id``: wake its caller
        (nothing if it gave up waiting already)."""
        result = self._calls.get(call_id)
        if result is not None:
            result.set((ok, value))

    def _fail_calls(self, why):
        calls, self._calls = self._calls, {}
        for result in calls.values():
            result.set_exception(WorkerUnavailable("worker %r %s" % (self.name, why)))

    def __repr__(self):
        return "<WorkerHandle %r %s pid=%s>" % (self.name, self.status.name, self.pid)
