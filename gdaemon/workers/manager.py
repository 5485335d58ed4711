"""The worker manager: installs workers, spawns, stops, reloads and reaps them.

``daemon.workers`` is a :class:`WorkerManager`.  Each installed worker has a
:class:`WorkerHandle`, the daemon's side of it across all its instances: its
status (read from the instance's status block), its ``output_channel``, its
restart history.  What happens when an instance dies is decided by the
:class:`~gdaemon.workers.watchdog.Watchdog`.

Per forked worker the daemon keeps two libev watchers and no greenlet: a
child watcher (libev reaps the process and calls back at once, no polling)
and an io watcher on the channel's doorbell for the messages the worker
writes.  A greenlet worker is its own greenlet plus a link callback.

Standby: a respawn is on the critical path of a crashed worker, and a fork
of a 30 MB Python process costs milliseconds before the child runs (more on
small VMs).  When there are forked ``forever`` workers, the daemon keeps one
*standby* process: forked ahead of need, it has done everything a forked
child does first (see :func:`~gdaemon.workers.base.run_forked`) and waits on
its own channel to be told which worker to become.  A respawn (or a restart)
then only sends it ``ACTIVATE``; a new standby is forked
:attr:`WorkerManager.standby_delay` seconds later, off the critical path.
A consequence: an instance is a copy of the daemon's memory as it was when
*its process* was forked, which may be a little before it was started; pass
what changes at run time to workers as commands.  ``standby = False``
turns this off.

Fork safety: see :func:`~gdaemon.workers.base.run_forked` for what a child
does.  The daemon freezes the garbage collector's view of its heap before the
first fork (``gc.freeze()``), so that its collections do not dirty the pages
it shares with its workers (copy-on-write).  Child exits are reported by libev
child watchers, which reap every child: no zombies, no polling.
"""

import contextlib
import gc
import itertools
import logging
import math
import os
import signal
import sys
import time
from collections import deque

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from ..errors import (ChannelClosed, ChannelFull, ConfigError, InvalidParams, RpcError,
                      UnknownWorker, WorkerError, WorkerUnavailable)
from ..forking import ForkRegistry
from ..process import closing_at_once, resource_usage
from .base import (ACTIVATE, CALL, CMD, LOG, MSG, REOPEN, REPLY, STATE, GreenletWorker, LocalLink,
                   LocalStatus, Worker, WorkerRuntime, WorkerStatus, decode, encode)
from .channel import DEFAULT_CAPACITY, Channel
from .child import run_forked
from .watchdog import RestartPolicy, Watchdog, describe_exit

__all__ = ["WorkerManager", "WorkerHandle", "OutputChannel"]


class OutputChannel:
    """Commands from the daemon to one worker (comodojo's ``getOutputChannel()``).

    The same object serves every instance of the worker, across respawns.
    """

    def __init__(self, handle):
        self._handle = handle

    def send(self, command, payload=None):
        """Send ``command`` (received as ``daemon.worker.<command>``) with ``payload``.

        :returns: bytes written (> 0).
        :raises ChannelFull: the worker's channel has no room now.
        :raises ChannelClosed: the worker is not running.
        """
        return self._handle.send(command, payload)


class WorkerHandle:
    """The daemon's side of one installed worker, across its instances."""

    # What the next exit of the current instance means (_mode).
    RUN, RESTART, STOP = "run", "restart", "stop"

    def __init__(self, manager, worker, looptime, forever, timeout, policy):
        self.manager = manager
        #: The installed :class:`Worker` (a forked instance runs a copy of it).
        self.worker = worker
        self.name = worker.name
        self.kind = worker.kind
        self.looptime = looptime
        self.forever = forever
        self.timeout = timeout
        #: ``handle.output_channel.send(command, payload)``.
        self.output_channel = OutputChannel(self)
        self.tracker = policy.tracker()
        #: Instances started after the first one.
        self.restarts = 0
        #: Epoch time the current (or last) instance started.
        self.started_at = None
        #: Exit code of the last instance (negative: killed by that signal).
        self.last_exit = None
        self.pid = None
        self.alive = False
        self.generation = 0
        self._state = WorkerStatus.STOPPED
        self._emitted = None
        self._status = None
        self._push = None
        self._channel = None
        self._end = None
        self._io = None
        self._link = None
        self._greenlet = None
        self._mode = self.RUN
        self._killed = None
        self._respawn_timer = None
        self._last_loops = 0
        self._calls = {}
        self._inbox = deque()
        self._changed = Event()
        self._exited = Event()
        self._exited.set()
        self._restart_lock = Semaphore()

    @property
    def status(self):
        """The current :class:`WorkerStatus`."""
        if self.alive:
            try:
                return WorkerStatus(self._status.state)
            except (ChannelClosed, ValueError):
                pass
        return self._state

    @property
    def loops(self):
        """Loops run by the current (or last) instance."""
        if self.alive:
            try:
                return self._status.loops
            except ChannelClosed:
                pass
        return self._last_loops

    def info(self):
        """The ``worker.info`` dict; ``rss`` (bytes) and ``cpu`` (seconds) are those of
        the worker's process, the daemon's for a greenlet worker (``None`` when down)."""
        status = self.status
        rss, cpu = resource_usage(self.pid) if self.pid else (None, None)
        return {"name": self.name, "kind": self.kind, "pid": self.pid, "status": int(status),
                "status_name": status.name, "looptime": self.looptime, "forever": self.forever,
                "restarts": self.restarts, "loops": self.loops, "started_at": self.started_at,
                "last_exit": self.last_exit, "rss": rss, "cpu": cpu}

    def send(self, command, payload=None):
        """See :meth:`OutputChannel.send`; also raises ``ValueError`` for a payload
        that can never be delivered (too large for the channel, or not encodable)."""
        if not isinstance(command, str) or not command:
            raise ValueError("a command must be a non-empty string, got %r" % (command,))
        return self._send(encode(CMD, command, payload))

    def _send(self, data):
        push = self._push
        if push is None or not self.alive:
            raise ChannelClosed("worker %r is not running (%s)" % (self.name, self.status.name))
        return push(data)

    def call(self, method, params=None, timeout=None):
        """Call the worker's ``@exposed`` method ``method``; return its result.

        :param params: a list (positional) or a dict (keyword arguments).
        :param timeout: seconds; default :attr:`WorkerManager.call_timeout`.
        :raises WorkerUnavailable: not running, channel full, no answer in time.
        :raises RpcError: what the worker's method raised (``-32601`` for an
            unknown method, ``-32603`` for an unexpected exception).
        """
        if timeout is None:
            timeout = self.manager.call_timeout
        call_id = next(self.manager._call_ids)
        result = AsyncResult()
        self._calls[call_id] = result
        try:
            try:
                self._send(encode(CALL, call_id, method, params))
            except ValueError as exc:  # can never be delivered: too large, unencodable
                raise InvalidParams("invalid param 'params': %s" % (exc,)) from None
            except (ChannelFull, ChannelClosed) as exc:
                raise WorkerUnavailable("worker %r: %s" % (self.name, exc)) from None
            try:
                ok, value = result.get(timeout=timeout)
            except gevent.Timeout:
                raise WorkerUnavailable("worker %r did not answer within %gs"
                                        % (self.name, timeout)) from None
        finally:
            self._calls.pop(call_id, None)
        if ok:
            return value
        raise RpcError.from_dict(value)

    def _fail_calls(self, why):
        calls, self._calls = self._calls, {}
        for result in calls.values():
            result.set_exception(WorkerUnavailable("worker %r %s" % (self.name, why)))

    def _notify(self):
        """Wake every greenlet waiting in :meth:`_wait` for a change."""
        event, self._changed = self._changed, Event()
        event.set()

    def _wait(self, predicate, timeout):
        """Wait until ``predicate()`` holds (re-checked on every change); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._changed
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Also re-check now and then: a LOOPING written to the status
            # block without its STATE message (full channel) is seen by the
            # watchdog's tick, which notifies too.
            event.wait(min(remaining, 1.0))

    def __repr__(self):
        return "<WorkerHandle %r %s pid=%s>" % (self.name, self.status.name, self.pid)


class _Standby:
    """A forked process waiting to become a worker (see the module docstring)."""

    __slots__ = ("pid", "channel", "end", "names", "epoch")

    def __init__(self, pid, channel, end, names, epoch):
        self.pid, self.channel, self.end, self.names = pid, channel, end, names
        #: :attr:`WorkerManager.epoch` when it was forked: it is stale after that changes.
        self.epoch = epoch


class WorkerManager:
    """``daemon.workers``: the daemon's workers.

    :param daemon: the :class:`~gdaemon.daemon.Daemon` (its ``config``,
        ``logger``, ``events``, ``stop()`` and ``child_after_fork()`` are used).
    """

    #: Bytes of each ring of a worker's channel (largest message: 4 less).
    channel_capacity = DEFAULT_CAPACITY
    #: Seconds ``worker.call`` waits for the worker's answer.
    call_timeout = 4.0
    #: Seconds a restarted worker gets to reach LOOPING, beyond ``shutdowntimeout``.
    restart_timeout = 10.0
    #: Seconds to wait for SIGKILLed workers to be reaped on stop.
    kill_wait = 5.0
    #: Keep a pre-forked standby process to respawn forked workers without
    #: waiting for a fork (see the module docstring).
    standby = True
    #: Seconds after a standby was used before the next one is forked.
    standby_delay = 0.1
    #: Consecutive failed activations after which no more standby is forked.
    standby_failures_max = 3
    #: Longest wait in seconds before re-forking a standby that keeps dying.
    standby_backoff_max = 30.0

    def __init__(self, daemon):
        self.daemon = daemon
        config = getattr(daemon, "config", None) or {}
        self.logger = getattr(daemon, "logger", None) or logging.getLogger("gdaemon")
        self.policy = RestartPolicy(config.get("restartintensity", 5),
                                    config.get("restartperiod", 10.0))
        self.watchdog = Watchdog(self)
        self._handles = {}
        self._started = False
        self._stopping = False
        self._call_ids = itertools.count(1)
        self._reload_lock = Semaphore()
        #: What every forked child closes (the daemon's, or our own without one).
        self.forking = getattr(daemon, "forking", None) or ForkRegistry()
        self._prctl = None
        self._comm = None
        self._fork_prepared = False
        self._held = None
        #: pid -> [handle, generation] of every unreaped child; [None, 0] for the standby.
        self._children = {}
        self._standby = None
        self._standby_failures = 0
        self._standby_delay = self.standby_delay
        #: Bumped whenever the daemon's state that children inherit changes
        #: (reload, log files reopened...): a standby forked before is stale.
        self.epoch = 0

    # -- the collection ---------------------------------------------------

    def install(self, worker, looptime=1.0, forever=False, timeout=None):
        """Install ``worker`` (spawned when the daemon starts, or now if it runs).

        :param looptime: seconds between the starts of two ``loop()`` runs (> 0).
        :param forever: respawn the worker when it dies (else its death stops
            the daemon with exit code 1).
        :param timeout: seconds the worker's heartbeat may stall before the
            watchdog kills it; ``None``: never.
        :returns: its :class:`WorkerHandle`.
        :raises ConfigError: a bad argument (the message names it).
        :raises WorkerError: a worker of that name is installed already.
        """
        if not isinstance(worker, Worker):
            raise ConfigError("install() takes a gdaemon.Worker, got %r" % (worker,))
        if not _positive_number(looptime):
            raise ConfigError("invalid looptime %r for worker %r: expected a positive number"
                              % (looptime, worker.name))
        if not isinstance(forever, bool):
            raise ConfigError("invalid forever %r for worker %r: expected a bool" % (forever, worker.name))
        if timeout is not None and not _positive_number(timeout):
            raise ConfigError("invalid timeout %r for worker %r: expected None or a positive number"
                              % (timeout, worker.name))
        if worker.name in self._handles:
            raise WorkerError("a worker named %r is installed already" % (worker.name,))
        worker.looptime = float(looptime)
        worker.forever = forever
        worker.timeout = float(timeout) if timeout is not None else None
        worker.daemon = self.daemon
        worker.logger = self.logger.getChild("worker." + worker.name)
        handle = WorkerHandle(self, worker, worker.looptime, forever, worker.timeout, self.policy)
        self._handles[worker.name] = handle
        if self._started and not self._stopping:
            self.watchdog.start_ticking()
            self._spawn(handle)
            self.refresh_standby()
        return handle

    def get(self, name):
        """The :class:`WorkerHandle` of worker ``name``.

        :raises UnknownWorker: no such worker.
        """
        try:
            return self._handles[name]
        except (KeyError, TypeError):
            raise UnknownWorker("unknown worker %r" % (name,)) from None

    def names(self):
        """Names of the installed workers, in install order."""
        return list(self._handles)

    def __iter__(self):
        return iter(list(self._handles.values()))

    def __len__(self):
        return len(self._handles)

    def __contains__(self, name):
        return name in self._handles

    def status_codes(self):
        """``{name: status code}`` for ``daemon.status``."""
        return {name: int(handle.status) for name, handle in self._handles.items()}

    def register_methods(self, registry):
        """Register the ``worker.*`` RPC methods on ``registry``."""
        from .rpc import register
        register(registry, self)

    # -- life ---------------------------------------------------------------

    def start(self):
        """Spawn every installed worker (the daemon calls it once serving)."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        self.watchdog.start()
        handles = list(self._handles.values())
        greenlets = [h for h in handles if h.kind == "greenlet"]
        for handle in greenlets:
            self._spawn(handle)
        if greenlets and len(greenlets) < len(handles):
            # Let greenlet workers run their spinup() and first loop (their
            # allocations) before forking: memory the daemon writes after a
            # fork becomes private to the child (copy-on-write).
            gevent.sleep(0)
        for handle in handles:
            if handle.kind != "greenlet":
                self._spawn(handle)
        self._ensure_standby()

    def stop(self, timeout=None):
        """Stop every worker: ``stop`` to all at once (their ``spindown()`` runs in
        parallel), SIGKILL for those still up after ``timeout`` seconds; returns
        once all are reaped.  Idempotent."""
        if not self._started:
            return
        if timeout is None:
            timeout = self._config("shutdowntimeout", 10)
        self._stopping = True
        standby = self._drop_standby()
        live = []
        for handle in self._handles.values():
            self.watchdog.cancel_respawn(handle)
            handle._mode = handle.STOP
            if not handle.alive:
                self._set_state(handle, WorkerStatus.STOPPED)
                continue
            live.append(handle)
            try:
                handle._send(encode(CMD, "stop", None))
            except (ChannelFull, ChannelClosed) as exc:
                self.logger.warning("cannot ask worker %r to stop (%s): killing it", handle.name, exc)
                self._kill(handle)
        gevent.wait([h._exited for h in live], timeout=timeout)
        late = [h for h in live if h.alive]
        for handle in late:
            self.logger.warning("worker %r (pid %s) did not stop within %gs: killing it",
                                handle.name, handle.pid, timeout)
            self._kill(handle)
        if late:
            gevent.wait([h._exited for h in late], timeout=self.kill_wait)
        for handle in live:
            if handle.alive:
                self.logger.error("worker %r (pid %s) could not be reaped", handle.name, handle.pid)
        if standby is not None:
            deadline = time.monotonic() + self.kill_wait
            while standby.pid in self._children and time.monotonic() < deadline:
                gevent.sleep(0.005)  # its child watcher reaps it
        self.watchdog.stop()
        self._started = False

    def reload(self):
        """Restart the workers one at a time, each once the previous is LOOPING again."""
        if not self._started or self._stopping:
            return
        with self._reload_lock:
            # Workers restarted now must be copies of the daemon as it is now.
            self.refresh_standby()
            for handle in list(self._handles.values()):
                if self._stopping:
                    return
                try:
                    self.restart(handle)
                except WorkerUnavailable as exc:
                    self.logger.warning("reload: %s; going on with the next worker", exc.message)

    def restart(self, name, timeout=None):
        """Restart worker ``name`` (or a handle) gracefully; return once the new
        instance is LOOPING.

        :raises UnknownWorker: no such worker.
        :raises WorkerUnavailable: the daemon is stopping, or the new instance
            was not LOOPING within ``timeout`` seconds (default
            ``shutdowntimeout`` + :attr:`restart_timeout`).
        """
        handle = name if isinstance(name, WorkerHandle) else self.get(name)
        if not self._started or self._stopping:
            raise WorkerUnavailable("workers are not running")
        grace = self._config("shutdowntimeout", 10)
        if timeout is None:
            timeout = grace + self.restart_timeout
        deadline = time.monotonic() + timeout
        with handle._restart_lock:
            first = handle.generation
            respawned = False
            if handle.alive and not self.owns_live_instance(handle):
                # It died and its exit waits in the watchdog's queue: let the
                # watchdog count that as the crash it is (backoff,
                # worker.failed); a respawn it makes is the restart asked for.
                handle._wait(lambda: handle.generation > first or not handle.alive
                             or self._stopping, min(grace, timeout))
                respawned = handle.generation > first
            if respawned:
                pass
            elif handle.alive:
                handle._mode = handle.RESTART
                try:
                    handle._send(encode(CMD, "stop", None))
                except (ChannelFull, ChannelClosed):
                    self._kill(handle)
                if not handle._wait(lambda: handle.generation > first or self._stopping,
                                    min(grace, timeout)):
                    if handle.generation == first and handle.alive:
                        self.logger.warning("worker %r did not stop within %gs: killing it",
                                            handle.name, grace)
                        self._kill(handle)
            else:
                self.watchdog.cancel_respawn(handle)
                self._spawn(handle, respawn=True)
            # LOOPING as emitted (worker.state sent), not only as written in
            # the status block: whoever waits on restart() sees the event first.
            looping = handle._wait(
                lambda: self._stopping or (handle.generation > first and (
                    not handle.alive or handle._emitted is WorkerStatus.LOOPING)),
                max(0.0, deadline - time.monotonic()))
        if self._stopping:
            raise WorkerUnavailable("the daemon is stopping")
        if looping and not handle.alive:
            raise WorkerUnavailable("worker %r %s during its restart"
                                    % (handle.name, describe_exit(handle.last_exit)))
        if not looping:
            raise WorkerUnavailable("worker %r is not LOOPING %gs after its restart (%s)"
                                    % (handle.name, timeout, handle.status.name))
        return True

    def wake(self):
        """Have the watchdog look at every worker now (``posix.sigchld``)."""
        self.watchdog.wake()

    # -- spawning ---------------------------------------------------------------

    def _spawn(self, handle, respawn=False):
        """Start a new instance of ``handle``'s worker (a process or a greenlet)."""
        if self._stopping:
            return
        handle.generation += 1
        handle._killed = None
        handle._mode = handle.RUN
        handle._exited.clear()
        handle.started_at = time.time()
        handle.tracker.started(self.watchdog.clock())
        try:
            if handle.kind == "greenlet" or isinstance(handle.worker, GreenletWorker):
                self._spawn_greenlet(handle)
            else:
                self._spawn_process(handle)
        except OSError as exc:
            handle._exited.set()
            reason = "cannot start: %s" % (exc,)
            self.logger.error("worker %r %s", handle.name, reason)
            self._emit("worker.failed", name=handle.name, reason=reason)
            if handle.forever:
                self.watchdog.respawn_later(handle, reason)
            else:
                self._set_state(handle, WorkerStatus.STOPPED)
                self._stop_daemon(1)
            return
        handle.alive = True
        if respawn:
            handle.restarts += 1
        self._emit("worker.spawned", name=handle.name, pid=handle.pid)
        if respawn:
            self._emit("worker.respawned", name=handle.name, pid=handle.pid)
        self._set_state(handle, WorkerStatus.SPINUP)
        handle._notify()

    def _spawn_greenlet(self, handle):
        generation = handle.generation
        status = LocalStatus()
        link = LocalLink(lambda data: self._on_bytes(handle, generation, data), self.channel_capacity)
        runtime = WorkerRuntime(handle.worker, link, status, cooperative=True)
        greenlet = gevent.spawn(runtime.run)
        greenlet.name = "greenlet worker %r" % handle.name  # in logs, e.g. a blocked hub
        greenlet.link(lambda g: self.watchdog.greenlet_exited(handle, generation, g))
        handle._status, handle._link, handle._push, handle._greenlet = status, link, link.push, greenlet
        handle.pid = os.getpid()

    def _spawn_process(self, handle):
        if not self._fork_prepared:
            self._prepare_fork()
        generation = handle.generation
        standby = self._standby
        if standby is not None and handle.name in standby.names:
            self._standby = None
            if self._activate(standby, handle, generation):
                self.watchdog.schedule_standby(self._standby_delay)
                return
        channel, pid = self._fork_child("worker %r" % handle.name, worker=handle.worker)
        with closing_at_once():
            end = self._daemon_end(channel)
        self._watch_child(pid, handle, generation)
        self._bind(handle, generation, pid, channel, end)

    def _fork_child(self, what, **kwargs):
        """Fork a child with a new channel; ``(channel, pid)`` in the daemon.

        The child runs :func:`~gdaemon.workers.child.run_forked` and never
        returns.  The channel's descriptors are registered on
        :attr:`forking` first, so every later child closes them.
        """
        channel = Channel(self.channel_capacity)
        try:
            status = channel.status
            status.state = WorkerStatus.SPINUP
            status.loops = 0
            status.beat()
            for fd in channel.fds():
                self.forking.add_fd(fd, "channel of " + what)
            parent = os.getpid()
            pid = self.forking.fork(keep=channel.fds())
        except BaseException:
            self._close_channel(channel)
            raise
        if pid == 0:  # pragma: no cover - runs in the child
            run_forked(self.daemon, channel, parent, self._prctl, comm=self._comm, **kwargs)
        return channel, pid

    def _daemon_end(self, channel):
        """The daemon's end of a new child's channel (the child's pipe ends are closed)."""
        before = channel.fds()
        end = channel.daemon_end()
        for fd in set(before) - set(channel.fds()):
            self.forking.discard_fd(fd)
        return end

    def _close_channel(self, channel):
        """Close a channel the daemon holds (no watcher on it any more)."""
        for fd in channel.fds():
            self.forking.discard_fd(fd)
        with closing_at_once():
            channel.close()

    def _bind(self, handle, generation, pid, channel, end):
        """Make (pid, channel) the current instance of ``handle``."""
        io = gevent.get_hub().loop.io(end.fileno(), 1)
        io.start(self._on_readable, handle, generation)
        handle._channel, handle._end, handle._io, handle._status = channel, end, io, channel.status
        handle._push = end.send
        handle.pid = pid

    def _watch_child(self, pid, handle, generation):
        self._children[pid] = [handle, generation]
        watcher = gevent.get_hub().loop.child(pid, False)
        watcher.start(self.watchdog.child_exited, watcher)

    # -- the standby ----------------------------------------------------------------

    def _ensure_standby(self):
        """Fork a standby if one is wanted and there is none."""
        if (not self.standby or not self._started or self._stopping or self._standby is not None
                or self._standby_failures >= self.standby_failures_max):
            return
        names = frozenset(h.name for h in self._handles.values() if h.kind == "process")
        if not any(h.forever for h in self._handles.values() if h.name in names):
            return
        if not self._fork_prepared:
            self._prepare_fork()
        workers = {name: self._handles[name].worker for name in names}
        try:
            channel, pid = self._fork_child("the standby", workers=workers)
        except OSError as exc:
            self.logger.warning("cannot fork a standby process: %s", exc)
            self._standby_retry()
            return
        with closing_at_once():
            end = self._daemon_end(channel)
        self._watch_child(pid, None, 0)
        self._standby = _Standby(pid, channel, end, names, self.epoch)

    def refresh_standby(self):
        """Replace the standby by a new fork of the daemon as it is now.

        A standby is a copy of the daemon from when it was forked; a worker
        it becomes inherits that state.  The daemon calls this whenever that
        state changes in a way workers inherit (reload, log files reopened, a
        worker installed at run time); call it too after changing such state
        yourself.  Respawns never use an older standby.
        """
        self.epoch += 1
        standby, self._standby = self._standby, None
        if standby is not None:
            self._discard_standby(standby)
        if self._started and not self._stopping:
            self.watchdog.schedule_standby(self.standby_delay)

    def _activate(self, standby, handle, generation):
        """Turn ``standby`` into the new instance of ``handle``; False if it is unusable."""
        owner = self._children.get(standby.pid)
        if standby.epoch != self.epoch:
            # Forked before the daemon's state changed: not a failure of it.
            self._discard_standby(standby)
            return False
        status = standby.channel.status
        status.state = WorkerStatus.SPINUP
        status.loops = 0
        status.beat()
        try:
            if owner is None:  # reaped already; its exit is in the watchdog's queue
                raise ChannelClosed("the process is gone")
            standby.end.send(encode(ACTIVATE, handle.name))
        except (ChannelFull, ChannelClosed) as exc:
            self._standby_failures += 1
            self.logger.warning("standby process %d unusable (%s): forking instead", standby.pid, exc)
            if self._standby_failures >= self.standby_failures_max:
                self.logger.warning("no more standby processes after %d failed activations: "
                                    "respawns fork on demand", self._standby_failures)
            self._discard_standby(standby)
            return False
        owner[:] = [handle, generation]
        self._bind(handle, generation, standby.pid, standby.channel, standby.end)
        self._standby_failures = 0
        self._standby_delay = self.standby_delay
        return True

    def _drop_standby(self):
        """Kill the standby (on stop); return it so the caller may wait for its reaping."""
        standby, self._standby = self._standby, None
        if standby is not None:
            self._discard_standby(standby)
        return standby

    def _discard_standby(self, standby):
        self._signal_child(standby.pid, None, signal.SIGKILL)
        self._close_channel(standby.channel)  # no watcher on its descriptors

    def _standby_exited(self, pid, exitcode):
        """In the watchdog greenlet: a standby process ended (reaped already).

        A standby that dies on its own (killed from outside, or crashing at
        boot) is replaced after a delay that doubles while it keeps dying;
        only failed *activations* count toward giving the standby up.
        """
        standby = self._standby
        if standby is None or standby.pid != pid:
            return  # one we discarded
        self._standby = None
        self._close_channel(standby.channel)
        self.logger.warning("standby process %d %s: forking another in %.1fs",
                            pid, describe_exit(exitcode), self._standby_delay)
        self._standby_retry()

    def _standby_retry(self):
        self.watchdog.schedule_standby(self._standby_delay)
        self._standby_delay = min(self._standby_delay * 2, self.standby_backoff_max)

    def _prepare_fork(self):
        """In the daemon, before the first fork: freeze the heap for copy-on-write
        and resolve ``prctl`` (so children need not import ctypes)."""
        self._fork_prepared = True
        gc.collect()
        gc.freeze()
        if self._prctl is None and sys.platform.startswith("linux"):
            try:
                import ctypes
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                self.logger.warning("prctl() unavailable: workers rely on getppid() checks only",
                                    exc_info=True)
            try:
                with open("/proc/self/comm", "rb") as f:
                    self._comm = f.read().strip()[:15]
            except OSError:
                self._comm = None

    def _kill(self, handle):
        """SIGKILL the current instance (greenlet: kill it); the exit is reaped as usual."""
        if not handle.alive:
            return
        if handle._greenlet is not None:
            handle._greenlet.kill(block=False)
            return
        self._signal_child(handle.pid, handle, signal.SIGKILL)

    def _signal_child(self, pid, handle, signum):
        """Send ``signum`` to ``pid`` only while it is our unreaped child; True if sent.

        Between libev reaping a child and the watchdog handling its exit, the
        pid may already belong to another process: never signal it then.
        """
        owner = self._children.get(pid)
        if owner is None or owner[0] is not handle:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False  # a zombie being reaped
        return True

    def owns_live_instance(self, handle):
        """True while ``handle``'s current instance runs (a process not reaped yet)."""
        if not handle.alive:
            return False
        if handle._greenlet is not None:
            return not handle._greenlet.dead
        owner = self._children.get(handle.pid)
        return owner is not None and owner[0] is handle and owner[1] == handle.generation

    def reopen_logs(self):
        """Have every forked worker reopen its log files; replace the standby."""
        for handle in self._handles.values():
            if handle.kind == "process" and handle.alive:
                try:
                    handle._send(encode(REOPEN))
                except (ChannelFull, ChannelClosed) as exc:
                    self.logger.warning("cannot ask worker %r to reopen its logs: %s", handle.name, exc)
        if self._standby is not None:
            self.refresh_standby()

    # -- what comes back from workers -----------------------------------------

    def _on_readable(self, handle, generation):
        """Doorbell io watcher (hub context): drain the worker's messages."""
        if generation != handle.generation or handle._end is None:
            return
        try:
            messages = handle._end.drain()
        except ChannelClosed:
            # The worker is gone (EOF on the doorbell): stop watching, or the
            # watcher would fire forever; its child watcher reports the exit.
            handle._io.stop()
            return
        for data in messages:
            self._on_bytes(handle, generation, data)

    def _on_bytes(self, handle, generation, data):
        """One message from a worker (may run in the hub: never blocks).

        Replies wake their caller at once; the rest goes, in order, to the
        handle's inbox, which the watchdog greenlet empties (and empties again
        before it records the worker's death, so that its last words come
        before ``worker.exited``).
        """
        if generation != handle.generation or not handle.alive:
            return
        try:
            message = decode(data)
        except Exception:
            self.logger.exception("undecodable message from worker %r", handle.name)
            return
        if message[0] == REPLY:
            result = handle._calls.get(message[1])
            if result is not None:
                result.set((message[2], message[3]))
            return
        handle._inbox.append(message)
        if len(handle._inbox) == 1:
            self.watchdog.post("message", handle)

    def _process_inbox(self, handle):
        """In the watchdog greenlet: handle the worker's queued messages."""
        inbox = handle._inbox
        while inbox:
            self._on_message(handle, inbox.popleft())

    def _on_message(self, handle, message):
        """A STATE or MSG message, in the watchdog greenlet."""
        kind = message[0]
        if kind == STATE:
            if handle.alive:
                self._set_state(handle, message[1])
        elif kind == MSG:
            self._emit("worker.message", name=handle.name, command=message[1], payload=message[2])
        elif kind == LOG:
            logring = getattr(self.daemon, "logring", None)
            if logring is not None and isinstance(message[1], dict):
                logring.ingest(message[1])
        else:
            self.logger.warning("worker %r sent a message of unknown kind %r", handle.name, kind)

    def _reap(self, handle, generation, pid, exitcode):
        """Bookkeeping of an instance's death; False if it is not the current one."""
        if generation != handle.generation or not handle.alive:
            return False
        if handle._io is not None:
            handle._io.stop()
            handle._io.close()  # before its fd is closed below
            handle._io = None
        if handle._end is not None:
            try:
                leftovers = handle._end.drain()  # written just before it died
            except ChannelClosed:
                leftovers = []
            for data in leftovers:
                self._on_bytes(handle, generation, data)
        self._process_inbox(handle)  # its last states (SPINDOWN) and messages, in order
        try:
            handle._last_loops = handle._status.loops
        except ChannelClosed:
            pass
        if handle._channel is not None:
            self._close_channel(handle._channel)  # its io watcher is closed already
        if handle._link is not None:
            handle._link.close()
        handle._channel = handle._end = handle._link = handle._greenlet = handle._push = None
        handle.alive = False
        handle.pid = None
        handle.last_exit = exitcode
        handle._state = WorkerStatus(handle._emitted) if handle._emitted is not None else handle._state
        handle._fail_calls("exited")
        handle._exited.set()
        handle._notify()
        self._emit("worker.exited", name=handle.name, pid=pid, exitcode=exitcode)
        return True

    # -- helpers -----------------------------------------------------------------

    def _set_state(self, handle, state):
        """Record a status change of ``handle`` and emit ``worker.state`` once per change."""
        try:
            state = WorkerStatus(state)
        except ValueError:
            self.logger.warning("worker %r reported an invalid status %r", handle.name, state)
            return
        if not handle.alive:
            handle._state = state
        if handle._emitted is state:
            return
        handle._emitted = state
        self._emit("worker.state", name=handle.name, status=int(state), status_name=state.name)
        handle._notify()

    def _emit(self, event, /, **data):
        if self._held is not None:
            self._held.append((event, data))
            return
        events = getattr(self.daemon, "events", None)
        if events is not None:
            # Not events.emit(): worker events carry a ``name`` keyword.
            events.signal(event).send(events.sender, **data)

    @contextlib.contextmanager
    def _holding_events(self):
        """Emit the events of the block when it ends, in order.

        The watchdog handles a death inside this block: the respawn (a fork,
        milliseconds) happens first and ``worker.exited``... ``worker.state
        SPINUP`` follow, instead of receivers running between the death and
        the fork.  Nothing in the block may yield; emitting them afterwards
        does (in the watchdog greenlet).
        """
        if self._held is not None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for event, data in held:
                # Receivers and taps (subscribers, logs) take time: let RPC
                # requests in between, e.g. those waiting for the new LOOPING.
                gevent.sleep(0)
                self._emit(event, **data)

    def _stop_daemon(self, exitcode):
        stop = getattr(self.daemon, "stop", None)
        if stop is not None:
            stop(exitcode=exitcode)

    def _config(self, key, default):
        config = getattr(self.daemon, "config", None) or {}
        value = config.get(key)
        return default if value is None else value

    def __repr__(self):
        return "<WorkerManager %d workers%s>" % (len(self._handles), " started" if self._started else "")


def _positive_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
