"""Workers as the user writes them, and the loop that runs them.

A worker is a subclass of :class:`Worker` (a forked process) or
:class:`GreenletWorker` (a greenlet inside the daemon) with a ``loop()``
method, and optional ``spinup()`` / ``spindown()``.  Both kinds share one
worker-side machinery, :class:`WorkerRuntime`::

    spinup()  ->  LOOPING: loop() every ``looptime`` s, commands in between  ->  spindown()

Between two runs of ``loop()`` the runtime waits for "the next run time or a
message from the daemon, whichever comes first", so a command reaches a
worker within milliseconds even with ``looptime=10``.  Every message is a
pickled tuple (both ends run the same program, and pickle is the fastest
codec the standard library has); the first field says what it is:

=================  ==========================================  ===============
kind               fields                                       direction
=================  ==========================================  ===============
``CMD``            ``command, payload``                         daemon -> worker
``CALL``           ``call_id, method, params``                  daemon -> worker
``STATE``          ``status code``                              worker -> daemon
``MSG``            ``command, payload`` (``self.send``)         worker -> daemon
``REPLY``          ``call_id, ok, result or error dict``        worker -> daemon
=================  ==========================================  ===============

(and ``ACTIVATE``, ``REOPEN`` and ``LOG``: see the comment at their
definition and :mod:`gdaemon.workers.child`.)

The worker's status, heartbeat and loop count live in a status block
(shared memory for a forked worker, :class:`LocalStatus` for a greenlet one)
that only the worker writes; the ``STATE`` message only tells the daemon at
once that the block changed, so it can emit ``worker.state`` without polling.

Heartbeat: the runtime bumps the heartbeat after each ``loop()`` and each time
it wakes up while waiting (at least every :attr:`Worker.heartbeat_interval`
seconds), never from a separate greenlet: a ``loop()`` that hangs stalls the
heartbeat, which is what the watchdog's ``timeout`` detects.

Fork safety: :class:`Worker` ``__init__`` runs in the daemon and changes
nothing in the process; everything a run needs is built by the runtime in
the process (or greenlet) that runs it.  The life of a forked child is in
:mod:`gdaemon.workers.child`.
"""

import enum
import inspect
import logging
import os
import pickle
import time
from collections import deque

import gevent
from gevent.event import Event

from ..errors import (ChannelClosed, ChannelFull, ChannelMessageTooLarge, InternalError,
                      InvalidParams, MethodNotFound, RpcError)
from ..events import EventBus
from ..logfiles import reopen_file_handlers
from ..process import closing_at_once

__all__ = ["Worker", "GreenletWorker", "WorkerStatus", "WorkerExit", "exposed", "WorkerRuntime",
           "LocalStatus", "LocalLink", "encode", "decode", "UnencodableMessage", "closing_at_once",
           "CMD", "CALL", "STATE", "MSG", "REPLY", "ACTIVATE", "REOPEN", "LOG"]


class _Wakeup(Exception):
    """Thrown into a runtime waiting for its next loop (see :meth:`WorkerRuntime.wake`)."""


class WorkerStatus(enum.IntEnum):
    """Status codes of a worker (SPEC 4.3; the first four are comodojo's)."""

    SPINUP = 0
    LOOPING = 1
    PAUSED = 2
    SPINDOWN = 3
    #: dead, respawn pending or backing off.
    RESTARTING = 4
    STOPPED = 5


class WorkerExit(enum.IntEnum):
    """Exit codes of a forked worker process (a greenlet worker returns them)."""

    OK = 0
    #: ``loop()`` or ``spindown()`` raised.
    ERROR = 1
    #: ``spinup()`` raised; ``loop()`` never ran.
    SPINUP_FAILED = 2
    #: the daemon went away; the worker spun down on its own.
    ORPHANED = 3
    #: the forked child failed before the worker could start.
    BOOT_FAILED = 4
    #: SIGTERM reached the worker itself (not through the daemon): it spun down.
    TERMINATED = 5


# Message kinds (first field of every message tuple).  ACTIVATE (``name``)
# goes from the daemon to a standby process: "become worker NAME"; REOPEN
# (no field) asks a forked worker to reopen its log files; LOG (a dict of a
# log record's fields) carries a forked worker's log records to the daemon.
CMD, CALL, STATE, MSG, REPLY, ACTIVATE, REOPEN, LOG = range(8)

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class UnencodableMessage(ValueError):
    """A message cannot be encoded (nested too deeply, or not picklable)."""


def encode(*fields):
    """One message as bytes.

    :raises UnencodableMessage: a field cannot be pickled (a payload nested
        deeper than the interpreter's recursion limit allows, an object
        pickle refuses): a clear error instead of a traceback.
    """
    try:
        return pickle.dumps(fields, _PROTOCOL)
    except RecursionError:
        raise UnencodableMessage("nested too deeply to be sent to a worker") from None
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise UnencodableMessage("cannot be sent to a worker: %s" % (exc,)) from None


#: Bytes -> the message tuple.
decode = pickle.loads

_EXPOSED = "_gdaemon_exposed"

def exposed(fn):
    """Decorator: make a worker method callable with the ``worker.call`` RPC.

    The method runs in the worker (between two ``loop()`` runs) with the
    call's params (a JSON array as positional, an object as keyword
    arguments); what it returns is the RPC result.  Raise
    :class:`gdaemon.RpcError` to send a specific error; any other exception
    becomes ``-32603``.
    """
    setattr(fn, _EXPOSED, True)
    return fn


def _record_size(data):
    """Bytes a message takes in a ring: a 4-byte header, the data padded to 4."""
    return 4 + ((len(data) + 3) & ~3)


class LocalStatus:
    """The status block of a greenlet worker: same fields as the shared one."""

    __slots__ = ("state", "pid", "heartbeat", "loops")

    def __init__(self):
        self.state = int(WorkerStatus.SPINUP)
        self.pid = os.getpid()
        self.heartbeat = time.monotonic()
        self.loops = 0

    def beat(self):
        self.heartbeat = now = time.monotonic()
        return now


class LocalLink:
    """The channel of a greenlet worker: an in-process queue, same API as an
    :class:`~gdaemon.workers.channel.Endpoint` on the worker side.

    It accepts what a forked worker's ring accepts and refuses the same way:
    the same largest message (``capacity - 4`` bytes,
    :class:`~gdaemon.errors.ChannelMessageTooLarge` beyond), the same
    accounting of bytes (4-byte records), :class:`~gdaemon.errors.ChannelFull`
    when no room is left.  A forked worker drains its ring in parallel with
    the daemon; a greenlet worker drains only when the sender yields, so a
    full queue first lets a waiting worker run (a few times, while it makes
    progress) before refusing: a pipelined burst that a forked worker takes
    is taken here too.

    :param deliver: called with each message the worker sends (bytes).
    :param capacity: bytes the daemon -> worker queue may hold, like a ring.
    """

    #: Times a sender facing a full queue yields to a draining worker.
    drain_attempts = 8

    def __init__(self, deliver, capacity):
        self._deliver = deliver
        self._capacity = capacity
        self._queue = deque()
        self._used = 0
        self._event = Event()
        self._waiting = False
        self.closed = False
        #: Largest message :meth:`push` accepts, in bytes (as a ring's).
        self.max_message_size = capacity - 4

    # -- daemon side ------------------------------------------------------

    def push(self, data):
        """Queue a message for the worker; return the bytes written (> 0).

        :raises ChannelClosed: the worker is gone.
        :raises ChannelMessageTooLarge: the message can never fit.
        :raises ChannelFull: the queue holds ``capacity`` bytes already.
        """
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        if len(data) > self.max_message_size:
            raise ChannelMessageTooLarge(
                "message of %d bytes exceeds the channel's max_message_size of %d bytes"
                % (len(data), self.max_message_size))
        size = _record_size(data)
        if self._used + size > self._capacity:
            self._let_worker_drain(size)
            if self.closed:
                raise ChannelClosed("the greenlet worker's channel is closed")
            if self._used + size > self._capacity:
                raise ChannelFull("channel full: %d bytes needed, %d free of %d"
                                  % (size, self._capacity - self._used, self._capacity))
        self._queue.append(data)
        self._used += size
        self._event.set()
        return size

    def _let_worker_drain(self, size):
        hub = gevent.get_hub()
        if gevent.getcurrent() is hub:
            return  # hub callbacks cannot yield
        for _ in range(self.drain_attempts):
            if not self._waiting or self.closed:
                return  # busy in loop(): it cannot drain now, like a busy forked worker
            before = self._used
            # The worker's wake-up is already queued (Event.set): sleep(0)
            # queues us after it.  Not idle(): a busy daemon is never idle.
            gevent.sleep(0)
            if self._used + size <= self._capacity or self._used >= before:
                return

    def close(self):
        self.closed = True
        self._event.set()

    # -- worker side (the Endpoint API the runtime uses) -----------------

    def send(self, data):
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        self._deliver(data)
        return _record_size(data)

    def recv_nowait(self):
        if self._queue:
            data = self._queue.popleft()
            self._used -= _record_size(data)
            return data
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        return None

    def recv(self, timeout=None):
        data = self.recv_nowait()
        if data is not None:
            return data
        if timeout is not None and timeout <= 0:
            return None
        self._event.clear()
        self._waiting = True
        try:
            self._event.wait(timeout)
        finally:
            self._waiting = False
        return self.recv_nowait()


class Worker:
    """A worker run as a forked process; subclass it and implement :meth:`loop`.

    :param name: the worker's name, unique in its daemon.

    ``__init__`` runs in the daemon before anything is forked: keep it cheap
    and open nothing there (open files and connections in :meth:`spinup`).
    :meth:`~gdaemon.workers.manager.WorkerManager.install` sets
    :attr:`looptime`, :attr:`forever`, :attr:`timeout`, :attr:`daemon` and
    :attr:`logger`.
    """

    #: ``"process"`` or ``"greenlet"`` (``worker.info``).
    kind = "process"
    #: Longest time in seconds between two heartbeats while the worker waits
    #: for its next loop (shortened to a quarter of ``timeout`` when smaller).
    heartbeat_interval = 0.5

    def __init__(self, name):
        if not isinstance(name, str) or not name:
            raise ValueError("a worker name must be a non-empty string, got %r" % (name,))
        #: The worker's name.
        self.name = name
        #: ``<daemon logger>.worker.<name>`` once installed.
        self.logger = logging.getLogger("gdaemon.worker." + name)
        #: The worker's own event namespace: commands arrive as
        #: ``daemon.worker.<command>`` with ``payload``.
        self.events = EventBus(sender=self)
        #: Seconds between the starts of two ``loop()`` runs.
        self.looptime = 1.0
        #: Respawned when it dies.
        self.forever = False
        #: Seconds the heartbeat may stall before the watchdog kills it.
        self.timeout = None
        #: The daemon it is installed in.
        self.daemon = None
        self._runtime = None

    # -- to override -------------------------------------------------------

    def spinup(self):
        """Called once when the worker starts, before the first ``loop()``."""

    def loop(self):
        """Called every :attr:`looptime` seconds while LOOPING (required)."""
        raise NotImplementedError("workers implement loop()")

    def spindown(self):
        """Called once when the worker stops (also after ``loop()`` raised)."""

    # -- API for the worker's own code --------------------------------------

    def send(self, command, payload=None):
        """Write a message to the daemon (``worker.message`` event there).

        :returns: bytes written (> 0).
        :raises ChannelFull: the channel to the daemon has no room now.
        :raises ChannelClosed: the worker is not running (or the daemon is gone).
        """
        runtime = self._runtime
        if runtime is None:
            raise ChannelClosed("worker %r is not running" % (self.name,))
        return runtime.link.send(encode(MSG, command, payload))

    def beat(self):
        """Bump the heartbeat from inside a long ``loop()`` (see ``timeout``)."""
        if self._runtime is not None:
            self._runtime.status.beat()

    def stop(self):
        """Ask the loop to stop after the current ``loop()``; spindown follows."""
        if self._runtime is not None:
            self._runtime.request_stop()

    @property
    def status(self):
        """The current :class:`WorkerStatus` (STOPPED outside a run)."""
        runtime = self._runtime
        return runtime.state if runtime is not None else WorkerStatus.STOPPED

    @property
    def loops(self):
        """How many times ``loop()`` has run in this instance."""
        runtime = self._runtime
        return runtime.loops if runtime is not None else 0

    def __repr__(self):
        return "<%s %r %s>" % (type(self).__name__, self.name, self.status.name)


class GreenletWorker(Worker):
    """A worker run as a greenlet inside the daemon; same API as :class:`Worker`.

    Its ``loop()`` must cooperate (gevent I/O, ``gevent.sleep``): a loop that
    blocks the process blocks the whole daemon.  The same instance is run
    again when the worker is restarted, so :meth:`spinup` should (re)set its
    state.
    """

    kind = "greenlet"


class WorkerRuntime:
    """One run of a worker: spinup, the loop and its commands, spindown.

    :param worker: the :class:`Worker` to run.
    :param link: the worker's end of its channel (``send``, ``recv``,
        ``recv_nowait``).
    :param status: its status block (``state``, ``pid``, ``heartbeat``,
        ``loops``, ``beat()``).
    :param parent_pid: in a forked worker, the daemon's pid (checked
        periodically: a worker never outlives its daemon).
    :param cooperative: yield to the hub after every ``loop()`` (greenlet
        workers share the daemon's process).
    """

    def __init__(self, worker, link, status, parent_pid=None, cooperative=False):
        self.worker = worker
        self.link = link
        self.status = status
        self.parent_pid = parent_pid
        self.cooperative = cooperative
        self.state = WorkerStatus.SPINUP
        self.loops = 0
        self.exitcode = WorkerExit.OK
        self._stopping = False
        self._waiting = None
        self._builtins = (("pause", self._on_pause), ("resume", self._on_resume),
                          ("stop", self._on_stop))

    def request_stop(self, exitcode=None):
        """Leave the loop at the next chance (signal-safe: only sets flags)."""
        if exitcode is not None:
            self.exitcode = exitcode
        self._stopping = True

    def wake(self):
        """End the wait between two ``loop()`` runs now (from another greenlet).

        A no-op while ``loop()`` runs: the runtime never interrupts the
        user's code, it only stops waiting for the next run time.
        """
        waiting = self._waiting
        if waiting is not None:
            gevent.get_hub().loop.run_callback(self._interrupt, waiting)

    def _interrupt(self, greenlet):
        if self._waiting is greenlet:
            greenlet.throw(_Wakeup)

    # -- the run ----------------------------------------------------------

    def run(self):
        """Run the worker to completion; return its :class:`WorkerExit` code."""
        worker = self.worker
        worker._runtime = self
        for command, receiver in self._builtins:
            worker.events.signal("daemon.worker." + command).connect(receiver, weak=False)
        try:
            return self._run()
        finally:
            for command, receiver in self._builtins:
                worker.events.signal("daemon.worker." + command).disconnect(receiver)
            worker._runtime = None

    def _run(self):
        worker = self.worker
        status = self.status
        status.pid = os.getpid()
        status.loops = 0
        status.beat()
        self._set_state(WorkerStatus.SPINUP, notify=False)
        try:
            worker.spinup()
        except Exception:
            worker.logger.exception("spinup() of worker %r failed", worker.name)
            return WorkerExit.SPINUP_FAILED
        self._set_state(WorkerStatus.LOOPING)
        try:
            self._serve()
        except Exception:
            worker.logger.exception("loop of worker %r failed", worker.name)
            self.exitcode = WorkerExit.ERROR
        self._set_state(WorkerStatus.SPINDOWN)
        try:
            worker.spindown()
        except Exception:
            worker.logger.exception("spindown() of worker %r failed", worker.name)
            self.exitcode = self.exitcode or WorkerExit.ERROR
        return self.exitcode

    def _beat_interval(self):
        interval = self.worker.heartbeat_interval
        timeout = self.worker.timeout
        if timeout:
            return min(interval, timeout / 4.0)
        # A greenlet worker without timeout has nobody to beat for: it sleeps
        # until its next run or a message.  A forked one wakes up anyway to
        # check that its daemon is still there.
        return interval if self.parent_pid is not None else None

    def _serve(self):
        worker = self.worker
        link = self.link
        beat_every = self._beat_interval()
        monotonic = time.monotonic
        next_run = monotonic()
        while not self._stopping:
            now = monotonic()
            if self.state is WorkerStatus.LOOPING and now >= next_run:
                self._run_loop()
                now = monotonic()
                next_run += worker.looptime
                if next_run < now:  # loop() overran: run again at once, no burst
                    next_run = now
                if self.cooperative:
                    gevent.sleep(0)
                self._dispatch_pending()
                continue
            wait = beat_every
            if self.state is WorkerStatus.LOOPING:
                wait = next_run - now if wait is None else min(wait, next_run - now)
            self._waiting = gevent.getcurrent()
            try:
                data = link.recv(timeout=wait)
            except ChannelClosed:
                self._orphaned("its channel was closed")
                break
            except _Wakeup:
                continue
            finally:
                self._waiting = None
            self.status.beat()
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                self._orphaned("its daemon (pid %d) is gone" % self.parent_pid)
                break
            if data is not None:
                self._dispatch(data)
                self._dispatch_pending()

    def _run_loop(self):
        worker = self.worker
        events = worker.events
        events.emit("daemon.worker.loopstart")
        worker.loop()
        self.loops += 1
        self.status.loops = self.loops
        self.status.beat()
        events.emit("daemon.worker.loopstop")

    def _orphaned(self, why):
        self.worker.logger.warning("worker %r stops: %s", self.worker.name, why)
        self.request_stop(WorkerExit.ORPHANED)

    # -- messages ---------------------------------------------------------

    def _dispatch_pending(self, limit=1000):
        """Handle the messages already waiting (at most ``limit``)."""
        for _ in range(limit):
            if self._stopping:
                return
            try:
                data = self.link.recv_nowait()
            except ChannelClosed:
                return  # noticed by the next wait
            if data is None:
                return
            self._dispatch(data)

    def _dispatch(self, data):
        try:
            message = decode(data)
            kind = message[0]
        except Exception:
            self.worker.logger.exception("worker %r got an undecodable message", self.worker.name)
            return
        if kind == CMD:
            self.worker.events.emit("daemon.worker." + str(message[1]), payload=message[2])
        elif kind == CALL:
            self._answer(*message[1:])
        elif kind == REOPEN:
            reopen_file_handlers()
        else:
            self.worker.logger.warning("worker %r got a message of unknown kind %r",
                                       self.worker.name, kind)

    def _answer(self, call_id, method, params):
        try:
            reply = encode(REPLY, call_id, True, self._call(method, params))
        except RpcError as exc:
            reply = encode(REPLY, call_id, False, exc.to_dict())
        except Exception:
            # The traceback stays in the log; the caller gets -32603 only.
            self.worker.logger.exception("worker %r: call of %r failed", self.worker.name, method)
            reply = encode(REPLY, call_id, False, InternalError().to_dict())
        try:
            try:
                self.link.send(reply)
            except ChannelFull as exc:  # too large for the ring (or ring full): say so
                error = InternalError("reply of worker method %r not delivered: %s" % (method, exc))
                self.link.send(encode(REPLY, call_id, False, error.to_dict()))
        except (ChannelFull, ChannelClosed) as exc:
            self.worker.logger.warning("worker %r cannot reply to a call of %r: %s",
                                       self.worker.name, method, exc)

    def _call(self, method, params):
        worker = self.worker
        if not isinstance(method, str) or method.startswith("_"):
            raise MethodNotFound("worker %r has no exposed method %r" % (worker.name, method))
        attribute = getattr(type(worker), method, None)
        if attribute is None or not getattr(attribute, _EXPOSED, False):
            raise MethodNotFound("worker %r has no exposed method %r" % (worker.name, method))
        bound = getattr(worker, method)
        args, kwargs = (), {}
        if isinstance(params, (list, tuple)):
            args = tuple(params)
        elif isinstance(params, dict):
            kwargs = params
        elif params is not None:
            raise InvalidParams("params must be an array or an object")
        try:
            inspect.signature(bound).bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidParams("invalid params for %s.%s: %s" % (worker.name, method, exc)) from None
        except ValueError:
            pass  # no signature to check (a builtin): let the call decide
        result = bound(*args, **kwargs)
        pickle.dumps(result, _PROTOCOL)  # fail here (-32603, logged) rather than in send
        return result

    # -- built-in receivers -------------------------------------------------

    def _set_state(self, state, notify=True):
        self.state = state
        self.status.state = int(state)
        if notify:
            try:
                self.link.send(encode(STATE, int(state)))
            except (ChannelFull, ChannelClosed):
                # The status block is authoritative: the daemon's watchdog
                # picks the change up on its next tick.
                pass

    def _on_pause(self, sender, **kw):
        if self.state is WorkerStatus.LOOPING:
            self._set_state(WorkerStatus.PAUSED)

    def _on_resume(self, sender, **kw):
        if self.state is WorkerStatus.PAUSED:
            self._set_state(WorkerStatus.LOOPING)

    def _on_stop(self, sender, **kw):
        self.request_stop()
