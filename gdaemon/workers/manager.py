"""The worker manager: ``daemon.workers``, the daemon's workers and their lifecycle.

:class:`WorkerManager` holds the installed workers (a
:class:`~gdaemon.workers.handle.WorkerHandle` each) and sequences their
lives: start, stop, rolling reload, restart.  It delegates

- making instances to the :class:`~gdaemon.workers.spawn.Spawner` (forks,
  greenlets, the table of unreaped children) and the
  :class:`~gdaemon.workers.standby.StandbyPool` (the pre-forked standby);
- deciding what happens when an instance dies to the
  :class:`~gdaemon.workers.watchdog.Watchdog`, which uses the manager only
  through its supervision interface: :meth:`~WorkerManager.spawn`,
  :meth:`~WorkerManager.reap`, :meth:`~WorkerManager.kill`,
  :meth:`~WorkerManager.emit`, :meth:`~WorkerManager.setting`,
  :meth:`~WorkerManager.holding_events`, :meth:`~WorkerManager.process_inbox`,
  :meth:`~WorkerManager.forget_child`, :meth:`~WorkerManager.stop_daemon`
  and the standby's :meth:`~WorkerManager.ensure_standby` /
  :meth:`~WorkerManager.standby_exited`.

Messages from workers arrive in the hub (io watchers, greenlet links):
replies wake their caller at once, the rest queues in the handle's inbox,
which the watchdog greenlet empties in order.

The pools are the one registry of the workers: :meth:`WorkerManager.get` finds an
instance in its pool by its name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import gevent
from gevent.lock import Semaphore

from ..errors import (ChannelClosed, ChannelFull, InvalidParams, UnknownWorker, WorkerError,
                      WorkerUnavailable)
from ..events import posix_event_name
from ..rpc.endpoint import TimeSlice
from .channel import DEFAULT_CAPACITY
from .handle import Mode, OutputChannel, WorkerHandle
from .exec import is_exec, mark_looping
from .lifecycle import (grow, reload_pools, restart_instance, shrink, start_pools, stop_handles,
                        stop_pools)
from .messages import EXEC_FAILED, LOG, MSG, REOPEN, REPLY, STATE, decode, encode
from .output import OutputRelay
from .recycle import RecyclePolicy
from .pool import (Pool, check_after, check_identities, check_install, instance_name, listen_address,
                   process_settings, start_layers)
from .spawn import Spawner
from .standby import StandbyPool
from .watchdog import RestartPolicy, Watchdog, describe_exit
from .worker import Worker, WorkerKind, WorkerStatus

__all__ = ["WorkerManager", "WorkerHandle", "OutputChannel"]

#: An inbox item (never a message from a worker): emit ``worker.state`` for a
#: status recorded from the hub (see :meth:`WorkerManager.on_message_bytes`).
_ANNOUNCE = object()


class WorkerManager:
    """``daemon.workers``: the daemon's workers.

    :param daemon: the :class:`~gdaemon.daemon.Daemon` (its ``config``,
        ``logger``, ``events``, ``forking``, ``logring`` and ``stop()`` are used).

    The pools (:meth:`pools`) hold the handles: every lookup by name goes
    through them, so there is no second registry to keep in step.
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
    #: waiting for a fork (see :mod:`gdaemon.workers.standby`).
    standby = True
    #: Seconds after a standby was used before the next one is forked.  The
    #: fork server forks it off the daemon's hub, so the only reason to wait
    #: at all is to let the worker that just took the standby boot first.
    standby_delay = 0.01
    #: Fork workers and standbys in a fork server, never in the daemon's hub
    #: (Linux; see :mod:`gdaemon.workers.forkserver`).
    use_forkserver = True
    #: An instance that ended by itself (an exit, or a signal other than
    #: SIGKILL) sooner than this many seconds after its start is crash-looping
    #: (supervisord's ``startsecs`` is 1 s too): its respawn is a fresh fork by
    #: the fork server (off the hub as well), and the standby stays for the
    #: others, so a healthy worker killed during a crash loop is back as fast
    #: as on an idle daemon.
    standby_min_uptime = 1.0
    #: Most instances :meth:`scale` has starting at once (not yet LOOPING):
    #: each starting process takes a core for a few milliseconds, and the
    #: daemon needs one to answer meanwhile: one less than the CPUs, at
    #: least one.  On two cores, 1 -> 64 instances took 0.57-0.61 s instead
    #: of 0.32-0.44 s, and ``daemon.status`` meanwhile kept p99 3.7-4.4 ms
    #: instead of 5.6-7.1 ms.
    starting_limit = max(1, (os.cpu_count() or 2) - 1)
    #: Seconds after :meth:`start` the first standby is forked at the latest;
    #: the daemon asks for it sooner, once its start-up workers are LOOPING
    #: (:meth:`started_up`).  Forked and rehearsing beside the first workers,
    #: on two cores, it delayed their LOOPING by 2-3 ms.
    standby_first_delay = 1.0
    #: Seconds after the start-up is over (:meth:`started_up`) that the first
    #: standby is forked: not at once, when the ``-d`` launcher is exiting
    #: and the first client connecting.  Forked and rehearsing on one core
    #: just then, on two cores, it delayed the first answered call by 1.5 ms.
    standby_after_start = 0.05
    #: Consecutive failed activations after which no more standby is forked.
    standby_failures_max = 3
    #: Longest wait in seconds before re-forking a standby that keeps dying.
    standby_backoff_max = 30.0

    def __init__(self, daemon):
        self.daemon = daemon
        self.logger = daemon.logger
        self.policy = RestartPolicy(self.setting("restartintensity", 5),
                                    self.setting("restartperiod", 10.0))
        #: What every forked child closes (the daemon's).
        self.forking = daemon.forking
        self.watchdog = Watchdog(self)
        self.spawner = Spawner(self)
        #: Reads the output of exec workers' programs into the log.
        self.output = OutputRelay(self.forking)
        self.standbys = StandbyPool(self, self.spawner)
        self._pools: Dict[str, Pool] = {}
        self._started = False
        self._stopping = False
        self._call_ids = itertools.count(1)
        self._reload_lock = Semaphore()
        self._held = None
        self._holder = None

    @property
    def stopping(self):
        """True once :meth:`stop` began."""
        return self._stopping

    @property
    def running(self):
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stopping

    def next_call_id(self):
        """A new id for a ``worker.call`` (unique among the daemon's calls)."""
        return next(self._call_ids)

    # -- the collection ---------------------------------------------------

    def install(self, worker: Worker, looptime: float = 1.0, forever: bool = False,
                timeout: Optional[float] = None, instances: int = 1, after: Iterable[str] = (),
                listen: Optional[str] = None, user: Optional[Union[str, int]] = None,
                group: Optional[Union[str, int]] = None,
                rlimits: Optional[Mapping[str, Union[int, Tuple[int, int]]]] = None,
                maxrss: Optional[Union[int, str]] = None, maxloops: Optional[int] = None,
                maxloopsjitter: int = 0, maxage: Optional[float] = None,
                maxagejitter: float = 0) -> Optional[WorkerHandle]:
        """Install ``worker`` (spawned when the daemon starts, or now if it runs).

        :param looptime: seconds between the starts of two ``loop()`` runs (> 0).
        :param forever: respawn the worker when it dies (else its death stops
            the daemon with exit code 1).
        :param timeout: seconds the worker's heartbeat may stall before the
            watchdog kills it; ``None``: never.
        :param instances: run it as a pool of that many instances, named
            ``NAME.0`` ... (one instance keeps the plain ``NAME``).
        :param after: names of workers that must be LOOPING (all their
            instances) before this one starts; it stops before them.
        :param listen: ``"tcp://HOST:PORT"`` or ``"unix://PATH"``: a listening
            socket the daemon binds once and every instance gets as
            ``self.listener`` (the prefork model).
        :param user: run the worker's processes as this user (a name or a
            numeric id); the daemon must be root, unless it names the
            daemon's own user.
        :param group: ... and this group (default: the user's primary group).
        :param rlimits: resource limits set in the worker's process before
            ``spinup()``: ``{"nofile": 4096, "core": 0}``, names as
            ``resource.RLIMIT_*`` without the prefix, lower-case; an int
            (soft and hard) or a ``(soft, hard)`` pair.
        :param maxrss: recycle a forked instance found over that resident
            memory twice in a row (bytes, or ``"512M"``, ``"2G"``; read every
            ``rssinterval`` seconds).
        :param maxloops: recycle an instance after that many loops, plus
            ``randint(0, maxloopsjitter)``.
        :param maxloopsjitter: up to that many more loops, drawn for each
            instance, so that a pool's instances do not recycle together.
        :param maxage: recycle an instance after that many seconds up, plus
            up to ``maxagejitter``.  A recycle is a graceful restart, one
            instance of a pool at a time (see :mod:`gdaemon.workers.recycle`).
        :param maxagejitter: up to that many more seconds, drawn for each
            instance.
        :returns: the :class:`WorkerHandle` of its first instance (``None``
            for a pool of 0 instances; see :meth:`pool`).
        :raises ConfigError: a bad argument (the message names it).
        :raises WorkerError: the name is taken, it starts after itself, its
            ``after=`` makes a cycle, the daemon would run more than
            ``workerlimit`` instances in all, or a bad ``user``, ``group``
            or ``rlimits`` (the message names the worker and what is wrong).
        """
        check_install(worker, looptime, forever, timeout, instances)
        settings = process_settings(worker, user, group, rlimits)
        recycling = RecyclePolicy.from_options(worker, maxrss, maxloops, maxloopsjitter, maxage,
                                               maxagejitter)
        limit = self.setting("workerlimit", 1024)
        installed = len(self)
        if installed + instances > limit:
            # Before anything is allocated (issue 14: 10**30 instances).
            raise WorkerError("cannot install %d instances of worker %r: %d are installed and "
                              "workerlimit is %d" % (instances, worker.name, installed, limit))
        after = check_after(after, worker.name)
        listen = listen_address(listen, worker, self.daemon.config)
        plain = instances == 1
        names = [instance_name(worker.name, i, plain) for i in range(max(instances, 1))]
        for name in [worker.name] + names:
            if name in self or name in self._pools:
                raise WorkerError("a worker named %r is installed already" % (name,))
        worker.looptime = float(looptime)
        worker.forever = forever
        worker.timeout = float(timeout) if timeout is not None else None
        worker.daemon = self.daemon
        worker.logger = self.logger.getChild("worker." + worker.name)
        #: Taken by each of its processes before spinup() (gdaemon.identity).
        worker.process_settings = settings
        #: When its instances are recycled (gdaemon.workers.recycle), or None.
        worker.recycle_policy = recycling
        pool = Pool(worker, after, listen, plain)
        if after:
            start_layers(dict(self._pools, **{pool.name: pool}), known_only=True)
        self._pools[pool.name] = pool
        if self.running:
            pool.bind(self.forking)
        handles = self._add_instances(pool, instances)
        if self.running:
            self.watchdog.start_ticking()
            for handle in handles:
                self.spawn(handle)
            self.refresh_standby()
        return handles[0] if handles else None

    def make_missing_instance(self, name: str) -> bool:
        """In a copy of the daemon (the fork server, a standby): make instance
        ``name`` of a pool scaled up since the copy was made, as :meth:`scale`
        made it in the daemon (``Pool.make_worker``: a copy of the installed
        worker), with the instances before it.  False when ``name`` is no such
        instance."""
        pool_name, dot, index = name.rpartition(".")
        pool = self._pools.get(pool_name) if dot and index.isdigit() else None
        if pool is None or int(index) < len(pool.handles):
            return False
        if instance_name(pool.name, int(index), pool.plain) != name:
            return False
        self._add_instances(pool, int(index) + 1 - len(pool.handles))
        return True

    def _add_instances(self, pool, count, time_slice=None):
        """Make ``count`` new instances of ``pool`` and add them to it together
        (``time_slice``: give the hub away between two when it is due)."""
        start = len(pool.handles)
        handles = []
        for index in range(start, start + count):
            if time_slice is not None:
                time_slice.check()
            handles.append(WorkerHandle(self, pool.make_worker(index), self.policy))
        if time_slice is not None:
            # Others may have grown while this gave the hub away: the limit
            # again, with nothing that yields from here to the adding.
            self._check_scale_limit(pool, start + count)
        pool.handles.extend(handles)
        return handles

    def uninstall(self, name, timeout=None):
        """Stop every instance of worker (pool) ``name`` and forget it.

        The instances get a graceful ``stop`` together (SIGKILL for those
        still up after ``timeout`` seconds, default ``shutdowntimeout``);
        then the worker leaves ``names()``, ``worker.list`` and
        ``daemon.status``, its channels are closed, its ``listen=`` socket
        is closed (a unix socket file removed), and the standby and the fork
        server, which hold copies of that socket, are replaced.  Workers that
        start ``after`` it keep running; the name may be installed again.

        :raises UnknownWorker: no such worker.
        """
        pool = self.pool(name)
        if timeout is None:
            timeout = self.setting("shutdowntimeout", 10)
        with pool.lock:
            handles = list(pool.handles)
            if self._started:
                # Highest index first, as when a pool shrinks.
                for handle in stop_handles(self, handles[::-1], timeout, timeout):
                    self.logger.error("worker %r (pid %s) could not be reaped", handle.name, handle.pid)
            for handle in handles:
                self.watchdog.cancel_respawn(handle)
            if self._pools.get(name) is pool:
                del self._pools[name]
            pool.close(self.forking)
        if self.running:
            self.refresh_standby()

    def replace(self, worker, instances=1, **options):
        """Put ``worker`` (a new object, named as an installed one) in the place of the
        installed worker of that name, with new ``install()`` options, one instance
        at a time; return once done.

        The new worker and options are checked as ``install()`` checks them
        before anything changes.  Then, like a rolling reload, each instance in
        turn spins down gracefully and an instance of the new worker takes its
        place (``restart``: its name, its restart count), the next one once that
        one is LOOPING; a pool keeps its ``listen`` socket, so no connection is
        refused.  Then the pool is scaled to ``instances``.  A change that
        cannot be made that way (another kind of worker, another ``listen``,
        the daemon not running) uninstalls the old worker and installs the new.

        :raises UnknownWorker: no worker of that name.
        :raises ConfigError: a bad option (nothing changed).
        :raises WorkerError: as ``install()`` (nothing changed).
        """
        name = worker.name
        old = self.pool(name)
        listen = options.get("listen")
        address = listen_address(listen, worker, self.daemon.config) if listen is not None else None
        if (not self.running or worker.kind != old.kind
                or str(address or "") != str(old.listen or "")):
            self.uninstall(name)
            self.install(worker, instances=instances, **options)
            return
        # install() checks and configures the new worker, in a pool of no
        # instance taken aside at once: nothing else runs in between (no yield).
        order = list(self._pools)
        del self._pools[name]
        try:
            self.install(worker, instances=0, **dict(options, listen=None))
            fresh = self._pools.pop(name)
        finally:
            self._pools[name] = old
            self._pools = {key: self._pools[key] for key in order if key in self._pools}
        grace = self.setting("shutdowntimeout", 10)
        with old.lock:
            # The settings (looptime, forever, timeout) come with the new worker.
            old.template, old.after = fresh.template, fresh.after
            for handle in old.handles:
                handle.worker = old.make_worker(handle.instance)
            # Standbys and the fork server are copies holding the old objects.
            self.refresh_standby()
            for handle in list(old.handles):
                if not self.running:
                    return
                if handle.mode == Mode.STOP and not handle.alive:
                    continue  # stopped on request (worker.stop): its next start is the new worker
                try:
                    restart_instance(self, handle, grace, grace + self.restart_timeout)
                except WorkerUnavailable as exc:
                    self.logger.warning("replacing worker %r: %s; going on with the next instance",
                                        name, exc.message)
        if len(old.handles) != instances:
            self.scale(name, instances)

    def wait_looping(self, name, timeout):
        """Wait until every instance of pool ``name`` is LOOPING (but those stopped
        on request, ``worker.stop``); False after ``timeout`` seconds, or when
        one of them is down and not respawning.

        :raises UnknownWorker: no such pool.
        """
        pool = self.pool(name)
        deadline = time.monotonic() + timeout
        for handle in list(pool.handles):
            if handle.mode == Mode.STOP and not handle.alive:
                continue
            if not handle.wait_until(lambda: not self.running or handle.status is WorkerStatus.LOOPING
                                     or handle.status is WorkerStatus.STOPPED,
                                     max(0.0, deadline - time.monotonic())):
                return False
            if handle.status is not WorkerStatus.LOOPING:
                return False
        return True

    def get(self, name: str) -> WorkerHandle:
        """The :class:`WorkerHandle` of worker (instance) ``name``.

        :raises UnknownWorker: no such worker.
        """
        handle = self._find(name)
        if handle is None:
            raise UnknownWorker("unknown worker %r" % (name,))
        return handle

    def _find(self, name):
        """The handle named ``name`` in its pool, else ``None``.  An instance is
        its pool's ``NAME`` (installed as one instance) or ``NAME.INDEX``."""
        if not isinstance(name, str):
            return None
        pool = self._pools.get(name)
        if pool is not None and pool.plain and pool.handles:
            return pool.handles[0]
        pool_name, _, index = name.rpartition(".")
        pool = self._pools.get(pool_name)
        if pool is None or not index.isdigit() or not index.isascii():
            return None
        handles = pool.handles
        position = int(index)
        if position < len(handles) and handles[position].name == name:
            return handles[position]
        return None

    def pool(self, name: str) -> Pool:
        """The :class:`~gdaemon.workers.pool.Pool` ``name`` (its ``handles``, in index order).

        :raises UnknownWorker: no such pool.
        """
        return _lookup(self._pools, name, "worker pool")

    def pools(self) -> Dict[str, Pool]:
        """``{name: Pool}`` of every installed worker, in install order."""
        return dict(self._pools)

    def names(self) -> List[str]:
        """Names of the installed workers (every instance), pool by pool in index order."""
        return [h.name for pool in self._pools.values() for h in pool.handles]

    def __iter__(self):
        return iter([h for pool in self._pools.values() for h in pool.handles])

    def __len__(self):
        return sum(len(pool.handles) for pool in self._pools.values())

    def __contains__(self, name):
        return self._find(name) is not None

    def status_codes(self):
        """``{name: status code}`` for ``daemon.status``."""
        return {handle.name: int(handle.status) for handle in self}

    # -- life ---------------------------------------------------------------

    def bind_listeners(self):
        """Bind the ``listen=`` socket of every pool installed so far (the daemon
        does it before it drops root; :meth:`start` binds those installed later)."""
        for pool in self._pools.values():
            pool.bind(self.forking)

    def listener_paths(self):
        """The socket files of the pools' bound unix ``listen=`` sockets."""
        return [pool.listen.path for pool in self._pools.values()
                if pool.listener is not None and pool.listen.scheme == "unix"]

    def start(self):
        """Spawn every installed worker in start order (the daemon calls it once serving).

        :raises WorkerError: an ``after=`` names a worker that is not
            installed, or makes a cycle.
        """
        if self._started:
            return
        layers = start_layers(self._pools)
        check_identities(self._pools.values())
        for pool in self._pools.values():
            pool.bind(self.forking)  # before any instance starts
        self._started = True
        self._stopping = False
        self.watchdog.start()
        start_pools(self, layers)
        # Off the start-up path: the daemon is ready without waiting for it,
        # and the first workers start without it beside them (see started_up).
        self.watchdog.schedule_standby(self.standby_first_delay)

    def before_detaching(self):
        """The daemon is about to detach (``-d``): do now what the first fork
        would otherwise do in the detached daemon at a higher cost."""
        self.spawner.resolve_prctl()

    def started_up(self):
        """The daemon's start-up is over (every worker installed at start is
        LOOPING, or one failed): fork the first standby shortly."""
        if self.running:
            self.watchdog.schedule_standby(self.standby_after_start, sooner=True)

    def stop(self, timeout=None):
        """Stop every worker, the dependent ones first: ``stop`` to a whole layer at
        once (their ``spindown()`` runs in parallel), SIGKILL for those still up
        after ``timeout`` seconds in all; returns once all are reaped.  Idempotent."""
        if not self._started:
            return
        if timeout is None:
            timeout = self.setting("shutdowntimeout", 10)
        self._stopping = True
        standby = self.standbys.drop()
        for handle in stop_pools(self, timeout):
            self.logger.error("worker %r (pid %s) could not be reaped", handle.name, handle.pid)
        if standby is not None:
            deadline = time.monotonic() + self.kill_wait
            while standby in self.spawner.children and time.monotonic() < deadline:
                gevent.sleep(0.005)  # its child watcher reaps it
        self.watchdog.stop()
        self.spawner.stop_forkserver()
        for pool in self._pools.values():
            pool.close(self.forking)
        self.output.close()  # the last lines of the programs first
        self._started = False

    def reload(self):
        """Restart the workers one at a time in start order, each once the previous
        is LOOPING again; scaled pools keep their size."""
        if not self.running:
            return
        with self._reload_lock:
            # Workers restarted now must be copies of the daemon as it is now.
            self.refresh_standby()
            reload_pools(self)

    def scale(self, name: str, instances: int, timeout: Optional[float] = None) -> List[str]:
        """Give pool ``name`` that many instances; return their names in index order
        once the new ones are LOOPING and the surplus ones (highest index first)
        have spun down.

        :raises UnknownWorker: no such pool.
        :raises ValueError: ``instances`` is not an int >= 0.
        :raises InvalidParams: the daemon would run more than ``workerlimit``
            instances in all.
        :raises WorkerUnavailable: a new instance did not reach LOOPING.
        """
        pool = self.pool(name)
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
            raise ValueError("instances must be an integer >= 0, got %r" % (instances,))
        # Refused at once, before anything is allocated (issue 14: worker.scale
        # to 10**30 allocated until the kernel killed the daemon); checked
        # again once the pool is ours, with nothing in between that yields.
        self._check_scale_limit(pool, instances)
        grace = self.setting("shutdowntimeout", 10)
        with pool.lock:
            current = len(pool.handles)
            if instances > current:
                self._check_scale_limit(pool, instances)
                # Made in time slices, the hub serving others between them (64
                # handles made at once held it 2 ms), and added together.  No
                # new standby nor fork server: both make the new instances in
                # their copies as they are made here (make_missing_instance).
                handles = self._add_instances(pool, instances - current, TimeSlice())
                if self.running:
                    grow(self, pool, handles, grace + self.restart_timeout)
            elif instances < current:
                surplus = pool.handles[instances:]
                del pool.handles[instances:]  # out of worker.list and daemon.status at once
                if self.running:
                    shrink(self, surplus, grace)
                    self.refresh_standby()
        return pool.names()

    def _check_scale_limit(self, pool, instances):
        """:class:`InvalidParams` when ``pool`` at ``instances`` passes ``workerlimit``."""
        limit = self.setting("workerlimit", 1024)
        total = len(self) - len(pool.handles) + instances
        if instances > len(pool.handles) and total > limit:
            raise InvalidParams("invalid param 'instances': %d instances of %r would make %d "
                                "workers in all, past workerlimit %d" % (instances, pool.name, total, limit))
        for index in range(len(pool.handles), instances):
            name = instance_name(pool.name, index, pool.plain)
            if name in self or name in self._pools:
                raise InvalidParams("invalid param 'instances': instance %d of %r would be named "
                                    "%r, the name of another worker" % (index, pool.name, name))

    def restart(self, name, timeout=None):
        """Restart worker ``name`` (or a handle) gracefully; return once the new
        instance is LOOPING.

        :raises UnknownWorker: no such worker.
        :raises WorkerUnavailable: the daemon is stopping, or the new instance
            was not LOOPING within ``timeout`` seconds (default
            ``shutdowntimeout`` + :attr:`restart_timeout`).
        """
        handle = name if isinstance(name, WorkerHandle) else self.get(name)
        if not self.running:
            raise WorkerUnavailable("workers are not running")
        grace = self.setting("shutdowntimeout", 10)
        if timeout is None:
            timeout = grace + self.restart_timeout
        return restart_instance(self, handle, grace, timeout)

    # -- one worker or pool, by name (worker.stop, worker.start, worker.signal) ---

    def targets(self, name):
        """The handles ``name`` designates: a pool's instances, or one instance.

        :raises UnknownWorker: neither a pool nor a worker of that name.
        """
        pool = self._pools.get(name) if isinstance(name, str) else None
        if pool is not None:
            return list(pool.handles)
        return [self.get(name)]

    def stop_worker(self, name, timeout=None):
        """Stop worker (or pool) ``name`` and keep it STOPPED: a forever worker is
        not respawned, a reload leaves it alone, until :meth:`start_worker`.

        Graceful: the ``stop`` command (a program's ``stopsignal``), SIGKILL
        after ``timeout`` seconds (default ``shutdowntimeout``).  Returns True
        once every instance is STOPPED.

        :raises UnknownWorker: no such worker or pool.
        :raises WorkerUnavailable: the daemon is stopping, or an instance could
            not be reaped.
        """
        handles = self.targets(name)
        if not self.running:
            raise WorkerUnavailable("workers are not running")
        grace = self.setting("shutdowntimeout", 10) if timeout is None else timeout
        unreaped = stop_handles(self, handles, grace, grace)
        if unreaped:
            raise WorkerUnavailable("worker %r (pid %s) could not be reaped"
                                    % (unreaped[0].name, unreaped[0].pid))
        return True

    def start_worker(self, name, timeout=None):
        """Start worker (or pool) ``name`` again if stopped (a pending respawn
        happens now); return True once every instance is LOOPING (or PAUSED).

        :raises UnknownWorker: no such worker or pool.
        :raises WorkerUnavailable: the daemon is stopping, or an instance died
            or did not reach LOOPING within ``timeout`` seconds (default
            :attr:`restart_timeout`).
        """
        handles = self.targets(name)
        if not self.running:
            raise WorkerUnavailable("workers are not running")
        if timeout is None:
            timeout = self.restart_timeout
        for handle in handles:
            if not handle.alive and not handle.spawning:
                self.watchdog.cancel_respawn(handle)
                self.spawn(handle, respawn=handle.generation > 0)
        deadline = time.monotonic() + timeout
        up = (WorkerStatus.LOOPING, WorkerStatus.PAUSED)
        for handle in handles:
            ok = handle.wait_until(lambda: not self.running or not handle.alive or handle.status in up,
                                   max(0.0, deadline - time.monotonic()))
            if not self.running:
                raise WorkerUnavailable("the daemon is stopping")
            if not handle.alive:
                program = handle.program
                why = (program.error if program is not None and program.error
                       else describe_exit(handle.last_exit))
                raise WorkerUnavailable("worker %r did not start: %s" % (handle.name, why))
            if not ok:
                raise WorkerUnavailable("worker %r is not LOOPING %gs after its start (%s)"
                                        % (handle.name, timeout, handle.status.name))
        return True

    def signal_worker(self, name, signum):
        """Send signal ``signum`` to worker (or every instance of pool) ``name``:
        to a program's whole process group, to a forked worker's process; a
        greenlet worker gets it as the ``posix.<name>`` event on its bus.

        :raises UnknownWorker: no such worker or pool.
        :raises WorkerUnavailable: none of them is running.
        """
        handles = self.targets(name)
        sent = 0
        for handle in handles:
            if not handle.alive:
                continue
            if handle.greenlet is not None:
                try:
                    event = posix_event_name(signum)
                except ValueError:
                    continue
                handle.worker.events.emit(event, signum=signum)
                sent += 1
            elif handle.program is not None and handle.program.pid == handle.pid:
                sent += handle.program.signal(signum)
            else:
                sent += self.spawner.signal_child(handle.pid, handle, signum)
        if not sent:
            raise WorkerUnavailable("worker %r is not running" % (name,))
        return True

    def worker_loggers(self, name):
        """The names of the loggers of worker (or pool) ``name``: its own and its
        program's output (``daemon.logtail``'s ``worker``).

        :raises UnknownWorker: no such worker or pool.
        """
        names = set()
        for handle in self.targets(name):
            names.add(handle.worker.logger.name)
            names.add(self.output_logger(handle.name).name)
        return names

    def wake(self):
        """Have the watchdog look at every worker now (``posix.sigchld``)."""
        self.watchdog.wake()

    def reopen_logs(self):
        """Have every forked worker reopen its log files; replace the standby."""
        for handle in self:
            if handle.kind == WorkerKind.PROCESS and handle.alive and not is_exec(handle.worker):
                try:
                    handle.send_raw(encode(REOPEN))
                except (ChannelFull, ChannelClosed) as exc:
                    self.logger.warning("cannot ask worker %r to reopen its logs: %s", handle.name, exc)
        # The standby and the fork server hold the old files: replace them.
        self.refresh_standby()

    def refresh_standby(self):
        """Replace the standby by a new fork of the daemon as it is now.

        A standby is a copy of the daemon from when it was forked; a worker
        it becomes inherits that state.  The daemon calls this whenever that
        state changes in a way workers inherit (reload, log files reopened, a
        worker installed at run time); call it too after changing such state
        yourself.  Respawns never use an older standby.
        """
        self.standbys.refresh()

    # -- the supervision interface (the watchdog's) ------------------------------

    def deserves_standby(self, uptime, exitcode):
        """May an instance that was up ``uptime`` seconds (``None``: unknown) and
        ended with ``exitcode`` be replaced from the standby?  Not when it is
        crash-looping: it ended by itself soon after its start.  SIGKILL comes
        from outside (an operator, the OOM killer, a heartbeat timeout), so a
        SIGKILLed instance always may."""
        return (exitcode == -signal.SIGKILL or uptime is None
                or uptime >= self.standby_min_uptime)

    def spawn(self, handle, respawn=False):
        """Start a new instance of ``handle``'s worker (a process or a greenlet)."""
        if self._stopping or handle.spawning:
            return
        handle.begin_instance()
        # Whether the instance that died (if any) may be replaced from the standby.
        death = handle.tracker.last_death
        standby = not respawn or death is None or self.deserves_standby(*death)
        handle.tracker.started(self.watchdog.clock())
        try:
            if handle.kind == WorkerKind.GREENLET:
                self.spawner.spawn_greenlet(handle)
            elif not (standby and self.standbys.activate(handle)):
                # This greenlet may wait for the fork server (the hub does not):
                # no second spawn of this worker meanwhile.
                handle.spawning = True
                try:
                    self.spawner.spawn_process(handle)
                finally:
                    handle.spawning = False
        except OSError as exc:
            handle.start_failed()
            reason = "cannot start: %s" % (exc,)
            self.logger.error("worker %r %s", handle.name, reason)
            self.emit("worker.failed", name=handle.name, reason=reason)
            if handle.forever:
                self.watchdog.respawn_later(handle, reason, failed_start=True)
            else:
                handle.transition(WorkerStatus.STOPPED)
                self.stop_daemon(1)
            return
        handle.instance_started(respawn)
        self.emit("worker.spawned", name=handle.name, pid=handle.pid)
        if respawn:
            self.emit("worker.respawned", name=handle.name, pid=handle.pid)
        handle.transition(WorkerStatus.SPINUP)
        if self._stopping or handle.mode == Mode.STOP:
            self.kill(handle)  # stopped while the fork server forked it

    def kill(self, handle):
        """SIGKILL the current instance (greenlet: kill it); the exit is reaped as usual."""
        self.spawner.kill(handle)

    def forget_child(self, pid):
        """``pid`` was reaped: whose it was, ``[handle, generation]`` (``None``: not ours)."""
        return self.spawner.forget(pid)

    def ensure_standby(self):
        """Fork a standby if one is wanted and there is none."""
        self.standbys.ensure()

    def standby_exited(self, pid, exitcode):
        """A standby process ended (reaped already)."""
        self.standbys.exited(pid, exitcode)

    # -- what comes back from workers -----------------------------------------

    def on_readable(self, handle, generation):
        """Doorbell io watcher (hub context): drain the worker's messages."""
        if generation != handle.generation or not handle.alive or handle.greenlet is not None:
            return
        try:
            messages = handle.drain_channel()
        except ChannelClosed:
            # The worker is gone (EOF on the doorbell): stop watching, or the
            # watcher would fire forever; its child watcher reports the exit.
            handle.stop_watching()
            if handle.program is not None:
                self._program_started(handle, generation)
            return
        for data in messages:
            self.on_message_bytes(handle, generation, data, in_hub=True)

    def on_message_bytes(self, handle, generation, data, in_hub=False):
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
            handle.resolve_call(message[1], message[2], message[3])
            return
        if message[0] == EXEC_FAILED and handle.program is not None:
            handle.program.error = str(message[1])  # before the EOF that follows it
        if (in_hub and message[0] == STATE and not handle.inbox
                and handle.status not in (WorkerStatus.RESTARTING, WorkerStatus.STOPPED)):
            # The instance is announced (SPINUP recorded) and nothing of it
            # waits before this: record the status at once (a respawned
            # instance is LOOPING for worker.info as soon as it says so, not
            # once the watchdog is done with the death it replaces); its
            # worker.state goes out from the watchdog greenlet through the
            # inbox, in order with what the instance says next and before its
            # worker.exited (the inbox is emptied before a death is recorded).
            status = self._status_of(handle, message[1])
            if status is not None and handle.transition(status, announce=False):
                handle.inbox.append((_ANNOUNCE, status))
                self.watchdog.post("message", handle)
            return
        handle.inbox.append(message)
        if len(handle.inbox) == 1:
            self.watchdog.post("message", handle)

    def _status_of(self, handle, value):
        """The :class:`WorkerStatus` a STATE message of a live instance reports, or ``None``."""
        if not handle.alive:
            return None
        try:
            return WorkerStatus(value)
        except ValueError:
            self.logger.warning("worker %r reported an invalid status %r", handle.name, value)
            return None

    def process_inbox(self, handle):
        """In the watchdog greenlet: handle the worker's queued messages."""
        inbox = handle.inbox
        while inbox:
            self._on_message(handle, inbox.popleft())

    def _on_message(self, handle, message):
        """A STATE or MSG message, in the watchdog greenlet."""
        kind = message[0]
        if kind == STATE:
            status = self._status_of(handle, message[1])
            if status is not None:
                handle.transition(status)
        elif kind is _ANNOUNCE:
            handle.announce(message[1])  # a status recorded from the hub
        elif kind == MSG:
            self.emit("worker.message", name=handle.name, command=message[1], payload=message[2])
        elif kind == LOG:
            if isinstance(message[1], dict):
                self.daemon.logring.ingest(message[1])
        elif kind == EXEC_FAILED:
            pass  # the exit's reason (logged with the exit, rate-limited), see on_message_bytes
        else:
            self.logger.warning("worker %r sent a message of unknown kind %r", handle.name, kind)

    def reap(self, handle, generation, pid, exitcode):
        """Bookkeeping of an instance's death; False if it is not the current one."""
        if generation != handle.generation or not handle.alive:
            return False
        channel = handle.detach(exitcode, drain=lambda data: self.on_message_bytes(handle, generation, data),
                                before_release=lambda: self.process_inbox(handle))
        if channel is not None:
            self.spawner.close_channel(channel)  # its io watcher is closed already
        if handle.program is None:
            self.emit("worker.exited", name=handle.name, pid=pid, exitcode=exitcode)
            return True
        # A program's exit: also the signal that ended it, and also as
        # ``worker.exit``, the name the exec workers' documentation uses.
        data = {"name": handle.name, "pid": pid, "exitcode": exitcode,
                "signal": _signal_name(-exitcode) if exitcode is not None and exitcode < 0 else None}
        self.emit("worker.exited", **data)
        self.emit("worker.exit", **data)
        return True

    def _program_started(self, handle, generation):
        """EOF on an exec worker's doorbell (hub context): its exec succeeded, or it died."""
        program = handle.program
        if generation != handle.generation or program.generation != generation or not program.started():
            return
        mark_looping(handle)
        self.logger.info("worker %r runs %s (pid %d)", handle.name, handle.worker.describe(), program.pid)
        handle.inbox.append((STATE, int(WorkerStatus.LOOPING)))
        if len(handle.inbox) == 1:
            self.watchdog.post("message", handle)

    def output_logger(self, name):
        """The logger of worker ``name``'s program output: ``gdaemon.<slug>.<name>``."""
        return self.logger.getChild(name)

    # -- helpers -----------------------------------------------------------------

    def emit(self, event, /, **data):
        """Emit ``event`` with ``data`` on the daemon's bus (later, within :meth:`holding_events`)."""
        if self._held is not None and self._holder is gevent.getcurrent():
            self._held.append((event, data))
            return
        events = self.daemon.events
        # Not events.emit(): worker events carry a ``name`` keyword.
        events.signal(event).send(events.sender, **data)

    @contextlib.contextmanager
    def holding_events(self):
        """Emit the events of the block when it ends, in order.

        The watchdog handles a death inside this block: the respawn (a fork,
        milliseconds) happens first and ``worker.exited``... ``worker.state
        SPINUP`` follow, instead of receivers running between the death and
        the fork.  Only the events of the greenlet that holds them wait: the
        block may yield (waiting for the fork server), and what other
        greenlets emit meanwhile goes out at once.  Emitting the held ones
        afterwards yields too (in the watchdog greenlet).
        """
        if self._held is not None:
            yield
            return
        self._held = []
        self._holder = gevent.getcurrent()
        try:
            yield
        finally:
            held, self._held, self._holder = self._held, None, None
            for event, data in held:
                # Receivers and taps (subscribers, logs) take time: let RPC
                # requests in between, e.g. those waiting for the new LOOPING.
                gevent.sleep(0)
                self.emit(event, **data)

    def stop_daemon(self, exitcode):
        """Stop the daemon with ``exitcode`` (a worker that is not forever died)."""
        self.daemon.stop(exitcode=exitcode)

    def setting(self, key, default):
        """The daemon's configuration ``key``; ``default`` when it is unset (``None``)."""
        value = self.daemon.config.get(key)
        return default if value is None else value

    def __repr__(self):
        return "<WorkerManager %d workers%s>" % (len(self), " started" if self._started else "")


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def _lookup(mapping, name, what):
    try:
        return mapping[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from RPC
        raise UnknownWorker("unknown %s %r" % (what, name)) from None
