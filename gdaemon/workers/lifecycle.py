"""Starting, stopping, reloading and scaling pools in their order (docs/reference/workers.rst).

These sequence whole pools; the :class:`~gdaemon.workers.manager.WorkerManager`
calls them from :meth:`start`, :meth:`stop`, :meth:`reload` and
:meth:`scale`.  Start order: a pool is spawned only once every pool it names
in ``after=`` is LOOPING (all instances); stop and shrink go the other way
round; a rolling reload restarts instances one at a time in start order.  A
respawn waits for nothing.
"""

import collections
import time
from typing import Any, Deque

import gevent

from ..errors import ChannelClosed, ChannelFull, WorkerUnavailable
from .exec import mark_spindown
from .handle import Mode
from .messages import CMD, encode
from .pool import start_layers
from .watchdog import describe_exit
from .worker import WorkerKind, WorkerStatus

__all__ = ["start_pools", "stop_pools", "reload_pools", "grow", "shrink", "restart_instance",
           "ask_to_stop"]


def _looping(handles):
    return all(h.alive and h.status is WorkerStatus.LOOPING for h in handles)


def start_pools(manager, layers):
    """Spawn the first layer now; the others from a greenlet, each once the
    pools it waits for are LOOPING.  Greenlet workers of a layer start
    before its forked ones: what they allocate in ``spinup()`` is then
    shared with the forked workers instead of copied."""
    if not layers:
        return
    _spawn_layer(manager, layers[0])
    if len(layers) > 1:
        gevent.spawn(_start_later_layers, manager, layers)


def _spawn_layer(manager, layer):
    handles = [h for pool in layer for h in pool.handles]
    greenlets = [h for h in handles if h.kind == WorkerKind.GREENLET]
    for handle in greenlets:
        manager.spawn(handle)
    if greenlets and len(greenlets) < len(handles):
        gevent.sleep(0)  # let them allocate before the forks (copy-on-write)
    for handle in handles:
        if handle.kind != WorkerKind.GREENLET:
            manager.spawn(handle)


def _start_later_layers(manager, layers):
    for index, layer in enumerate(layers[1:], 1):
        pools = {pool.name: pool for earlier in layers[:index] for pool in earlier}
        for pool in layer:
            waits_for = [h for name in pool.after for h in pools[name].handles]
            while not _looping(waits_for):
                if not manager.running:
                    return
                if waits_for:
                    waits_for[0].wait_until(lambda: _looping(waits_for) or not manager.running, 1.0)
        if not manager.running:
            return
        manager.logger.debug("starting %s", ", ".join(p.name for p in layer))
        _spawn_layer(manager, layer)
        manager.ensure_standby()


def stop_pools(manager, timeout):
    """Stop every instance, the last layer first; each layer's ``spindown()``
    runs in parallel; SIGKILL for what is still up at the deadline.
    Returns the handles that could not be reaped."""
    deadline = time.monotonic() + timeout
    try:
        layers = start_layers(manager.pools())
    except Exception:  # an order that never started: stop everything at once
        layers = [list(manager.pools().values())]
    unreaped = []
    for layer in reversed(layers):
        handles = [h for pool in layer for h in pool.handles]
        unreaped += stop_handles(manager, handles, max(0.0, deadline - time.monotonic()), timeout)
    return unreaped


def stop_handles(manager, handles, wait, timeout):
    """Ask ``handles`` to stop (in that order), wait ``wait`` s, then SIGKILL the late."""
    live = []
    for handle in handles:
        manager.watchdog.cancel_respawn(handle)
        handle.mode = Mode.STOP
        if not handle.alive:
            handle.transition(WorkerStatus.STOPPED)
            continue
        live.append(handle)
        try:
            ask_to_stop(manager, handle)
        except (ChannelFull, ChannelClosed) as exc:
            manager.logger.warning("cannot ask worker %r to stop (%s): killing it", handle.name, exc)
            manager.kill(handle)
    gevent.wait([h.exited for h in live], timeout=wait)
    late = [h for h in live if h.alive]
    for handle in late:
        manager.logger.warning("worker %r (pid %s) did not stop within %gs: killing it",
                               handle.name, handle.pid, timeout)
        manager.kill(handle)
    if late:
        gevent.wait([h.exited for h in late], timeout=manager.kill_wait)
    return [h for h in live if h.alive]


def ask_to_stop(manager, handle):
    """Ask ``handle``'s instance to spin down: the ``stop`` command, or for a
    program its ``stopsignal`` (SIGKILL after the worker's ``timeout``, if set).

    :raises ChannelFull, ChannelClosed: the command cannot be sent.
    """
    program = handle.program
    if program is not None and program.pid == handle.pid:
        if program.running and not program.stopping:
            mark_spindown(handle)
            handle.transition(WorkerStatus.SPINDOWN)
        program.request_stop(handle.worker.timeout)
        return
    handle.send_raw(encode(CMD, "stop", None))


def reload_pools(manager):
    """Restart every instance, one at a time in start order, each once the
    previous is LOOPING again."""
    try:
        layers = start_layers(manager.pools())
    except Exception:
        layers = [list(manager.pools().values())]
    for layer in layers:
        for pool in layer:
            for handle in list(pool.handles):
                if not manager.running:
                    return
                if handle not in pool.handles:
                    continue  # scaled away meanwhile
                if handle.mode == Mode.STOP and not handle.alive:
                    continue  # stopped on request (worker.stop): stays so until worker.start
                try:
                    manager.restart(handle)
                except WorkerUnavailable as exc:
                    manager.logger.warning("reload: %s; going on with the next worker", exc.message)


def grow(manager, pool, handles, timeout):
    """Spawn the new ``handles`` of ``pool``, at most
    :attr:`~gdaemon.workers.manager.WorkerManager.starting_limit` starting at
    once; wait until every one is LOOPING.

    A forked instance is busy with its start for a few milliseconds of CPU:
    64 of them at once on two cores left the daemon waiting for a core (its
    ``daemon.status`` p99 at 5-7 ms).  Each is spawned once an earlier one
    is LOOPING, has died, or the ``timeout`` passed; all are spawned whatever
    happens to the others.  Greenlet instances, which start in the daemon's
    own hub, are spawned at once.

    :raises WorkerUnavailable: one died or is not LOOPING within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    limit = max(1, manager.starting_limit)
    starting: Deque[Any] = collections.deque()  # handles spawned, not yet seen LOOPING
    failure = None
    for handle in handles:
        while len(starting) >= limit and handle.kind != WorkerKind.GREENLET:
            failure = failure or _started(manager, pool, starting.popleft(), deadline)
        manager.spawn(handle)
        starting.append(handle)
    for handle in starting:
        failure = failure or _started(manager, pool, handle, deadline)
    if failure is not None:
        raise WorkerUnavailable(failure)


def _started(manager, pool, handle, deadline):
    """Wait until ``handle`` is LOOPING (or dead, or ``deadline``): ``None``, or what went wrong."""
    ok = handle.wait_until(lambda: not manager.running or not handle.alive
                           or handle.status is WorkerStatus.LOOPING,
                           max(0.0, deadline - time.monotonic()))
    if not manager.running:
        return "the daemon is stopping"
    if not ok or not handle.alive:
        return "instance %r of pool %r is not LOOPING (%s)" % (handle.name, pool.name, handle.status.name)
    return None


def shrink(manager, handles, timeout):
    """Spin ``handles`` down gracefully one at a time, highest index first, within
    ``timeout`` seconds in all (SIGKILL for one still up then)."""
    deadline = time.monotonic() + timeout
    for handle in sorted(handles, key=lambda h: h.instance, reverse=True):
        stop_handles(manager, [handle], max(0.0, deadline - time.monotonic()), timeout)


def restart_instance(manager, handle, grace, timeout):
    """Restart ``handle``'s instance gracefully; True once the new one is LOOPING.

    A graceful ``stop`` first (SIGKILL after ``grace`` seconds), then the
    watchdog starts the new instance (:attr:`Mode.RESTART`: not a failure).
    An instance that crashed just before is counted as the crash it is, and
    the respawn the watchdog makes is the restart asked for.

    :raises WorkerUnavailable: the daemon is stopping, the new instance died,
        or it was not LOOPING within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with handle.restart_lock:
        first = handle.generation
        respawned = False
        if handle.alive and not manager.spawner.owns_live_instance(handle):
            # It died and its exit waits in the watchdog's queue: let the
            # watchdog count that as the crash it is (backoff,
            # worker.failed); a respawn it makes is the restart asked for.
            handle.wait_until(lambda: handle.generation > first or not handle.alive
                              or manager.stopping, min(grace, timeout))
            respawned = handle.generation > first
        if respawned:
            pass
        elif handle.alive:
            handle.mode = Mode.RESTART
            try:
                ask_to_stop(manager, handle)
            except (ChannelFull, ChannelClosed):
                manager.kill(handle)
            if not handle.wait_until(lambda: handle.generation > first or manager.stopping,
                                     min(grace, timeout)):
                if handle.generation == first and handle.alive:
                    manager.logger.warning("worker %r did not stop within %gs: killing it",
                                        handle.name, grace)
                    manager.kill(handle)
        else:
            manager.watchdog.cancel_respawn(handle)
            manager.spawn(handle, respawn=True)
        # LOOPING as the handle's status (worker.state sent), not only as
        # written in the status block: whoever waits on restart() sees the event first.
        looping = handle.wait_until(
            lambda: manager.stopping or (handle.generation > first and not handle.spawning and (
                not handle.alive or handle.status is WorkerStatus.LOOPING)),
            max(0.0, deadline - time.monotonic()))
    if manager.stopping:
        raise WorkerUnavailable("the daemon is stopping")
    if looping and not handle.alive:
        raise WorkerUnavailable("worker %r %s during its restart"
                                % (handle.name, describe_exit(handle.last_exit)))
    if not looping:
        raise WorkerUnavailable("worker %r is not LOOPING %gs after its restart (%s)"
                                % (handle.name, timeout, handle.status.name))
    return True
