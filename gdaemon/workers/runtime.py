"""The loop that runs a worker, in a forked process or in a greenlet.

:class:`WorkerRuntime` runs one instance of a worker::

    spinup()  ->  LOOPING: loop() every ``looptime`` s, commands in between  ->  spindown()

Between two runs of ``loop()`` it waits for "the next run time or a message
from the daemon, whichever comes first", so a command reaches a worker within
milliseconds even with ``looptime=10``.

The worker's status, heartbeat and loop count live in a status block
(shared memory for a forked worker, :class:`~gdaemon.workers.local.LocalStatus`
for a greenlet one) that only the worker writes; the ``STATE`` message only
tells the daemon at once that the block changed, so it can emit
``worker.state`` without polling.

Heartbeat: the runtime bumps the heartbeat after each ``loop()`` and each time
it wakes up while waiting (at least every :attr:`Worker.heartbeat_interval`
seconds), never from a separate greenlet: a ``loop()`` that hangs stalls the
heartbeat, which is what the watchdog's ``timeout`` detects.
"""

import inspect
import os
import time
from typing import TYPE_CHECKING, Optional

import gevent

from ..errors import ChannelClosed, ChannelFull, InternalError, InvalidParams, MethodNotFound, RpcError
from ..logfiles import reopen_file_handlers
from .messages import CALL, CMD, PROTOCOL, REOPEN, REPLY, STATE, decode, dumps, encode
from .worker import WorkerExit, WorkerStatus, bind_runtime, is_exposed

if TYPE_CHECKING:
    from greenlet import greenlet

__all__ = ["WorkerRuntime"]

_sched_yield = getattr(os, "sched_yield", lambda: None)


class _Wakeup(Exception):
    """Thrown into a runtime waiting for its next loop (see :meth:`WorkerRuntime.wake`)."""


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
        #: The greenlet sleeping until the next run time, if any.
        self._waiting: Optional[greenlet] = None
        self._builtins = (("pause", self._on_pause), ("resume", self._on_resume),
                          ("stop", self._on_stop))

    def rehearse(self):
        """In a standby, before it waits: go through what :meth:`run` does up to
        LOOPING, without its effects, so that the pages it writes are this
        process's own already.

        A standby is a fork: the first write to each page it shares with the
        fork server (a reference count in a module, a class, the worker's
        signals) costs a copy-on-write fault, some 100 of them on the way from
        ``ACTIVATE`` to LOOPING, half a millisecond of a respawn.  Taken now,
        they are off its critical path.
        """
        worker = self.worker
        bind_runtime(worker, self)
        try:
            for command, receiver in self._builtins:
                signal = worker.events.signal("daemon.worker." + command)
                signal.connect(receiver, weak=False)
                signal.disconnect(receiver)
        finally:
            bind_runtime(worker, None)
        decode(encode(STATE, int(WorkerStatus.LOOPING)))
        # Map the status block's and the ring's shared pages (reads only: the
        # daemon may be writing them already, to activate this standby).
        _ = self.status.state, self.status.loops
        self.link.free()

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

    def _interrupt(self, waiting: "greenlet") -> None:
        if self._waiting is waiting:
            waiting.throw(_Wakeup)

    # -- the run ----------------------------------------------------------

    def run(self):
        """Run the worker to completion; return its :class:`WorkerExit` code."""
        worker = self.worker
        bind_runtime(worker, self)
        for command, receiver in self._builtins:
            worker.events.signal("daemon.worker." + command).connect(receiver, weak=False)
        try:
            return self._run()
        finally:
            for command, receiver in self._builtins:
                worker.events.signal("daemon.worker." + command).disconnect(receiver)
            bind_runtime(worker, None)

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
        if not self.cooperative:
            # The daemon was just woken on this CPU by our LOOPING (see
            # StandbyPool._go): let it record the new instance before our
            # first loop() runs.
            _sched_yield()
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
        if attribute is None or not is_exposed(attribute):
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
        dumps(result, PROTOCOL)  # fail here (-32603, logged) rather than in send
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
