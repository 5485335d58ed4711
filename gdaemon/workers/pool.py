"""Pools: a worker installed as N instances, its start order and its listener (docs/reference/workers.rst).

Every installed worker is a :class:`Pool`, most of them of one instance.
With ``instances=N`` the instances are named ``NAME.0`` ... ``NAME.{N-1}``;
a pool installed with one instance names it plainly ``NAME`` (and, scaled up
later, adds ``NAME.1``, ``NAME.2``...).  Instance 0 runs the worker object
that was installed; the others run shallow copies with their own name,
``instance`` index and event bus (connect receivers in ``spinup()``, which
every instance runs, rather than in ``__init__``).

Start order: ``after=["db", ...]`` names pools that must be LOOPING (every
instance) before this pool is spawned; stop runs the other way round.
:func:`start_layers` sorts pools into layers (each only after the layers
before it) and names the workers of an unknown dependency or a cycle.

A listening socket (``listen="tcp://HOST:PORT"`` or ``"unix://PATH"``) is
bound by the daemon once, before any instance starts, and kept for its whole
life: every instance gets it as ``self.listener``, and connections arriving
while an instance crashes, respawns or restarts wait in the backlog.
"""

import copy
import math
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, List

from gevent import socket as gsocket
from gevent.lock import Semaphore

from .. import inherited
from ..config import parse_address
from ..errors import ConfigError, WorkerError
from ..events import EventBus
from ..identity import ProcessSettings, check_limits, check_switchable, parse_rlimits, resolve_identity
from ..wire.unix import unix_socket_is_live
from .worker import Worker, bind_runtime

if TYPE_CHECKING:
    from .handle import WorkerHandle

__all__ = ["Pool", "instance_name", "start_layers", "bind_pool_listener", "check_after", "check_install",
           "listen_address", "process_settings", "check_identities"]

#: Backlog of a pool's listening socket.
LISTEN_BACKLOG = 1024


def instance_name(pool, index, plain):
    """The name of instance ``index`` of ``pool`` (``plain``: installed as one instance)."""
    return pool if plain and index == 0 else "%s.%d" % (pool, index)


class Pool:
    """One installed worker and its instances.

    :param worker: the installed :class:`~gdaemon.workers.worker.Worker` (instance 0);
        its ``looptime``, ``forever`` and ``timeout`` are the pool's.
    :param after: names of the pools that must be LOOPING before this one starts.
    :param listen: a parsed :class:`~gdaemon.config.Address`, or ``None``.
    """

    def __init__(self, worker, after=(), listen=None, plain=True):
        self.name = worker.name
        #: The installed worker; the other instances run copies of it.
        self.template = worker
        self.after = tuple(after)
        self.listen = listen
        #: The daemon's listening socket once bound (kept for the daemon's life).
        self.listener = None
        #: Whether the unix socket file is removed when the listener closes.
        self.owns_file = True
        self.plain = plain
        #: The instances' handles, in index order.
        self.handles: List[WorkerHandle] = []
        #: Held while the pool is being scaled.
        self.lock = Semaphore()

    @property
    def kind(self):
        return self.template.kind

    @property
    def looptime(self):
        return self.template.looptime

    @property
    def forever(self):
        return self.template.forever

    @property
    def timeout(self):
        return self.template.timeout

    def names(self):
        return [handle.name for handle in self.handles]

    def make_worker(self, index):
        """The worker object of instance ``index`` (the installed one for 0)."""
        if index == 0:
            worker = self.template
        else:
            worker = copy.copy(self.template)
            worker.events = EventBus(sender=worker)  # receivers are per instance
            bind_runtime(worker, None)  # the template's run (if any) is not the copy's
        worker.name = instance_name(self.name, index, self.plain)
        worker.instance = index
        worker.pool = self.name
        worker.listener = self.listener
        if index:
            worker.logger = self.template.logger.parent.getChild("worker." + worker.name)
        return worker

    def bind(self, forking):
        """Bind the listening socket (once); register it so other children close it."""
        if self.listen is None or self.listener is not None:
            return
        adopted = inherited.take("pool:" + self.name, self.listen)
        if adopted is not None:
            self.listener = adopted.socket(gsocket.socket)
            # systemd's socket file stays systemd's.
            self.owns_file = adopted.owns_file
        else:
            self.listener = bind_pool_listener(self.listen)
            self.owns_file = True
        forking.add_fd(self.listener.fileno(), "listener of pool %r" % self.name)
        for handle in self.handles:
            handle.worker.listener = self.listener

    def close(self, forking, keep_file=False):
        """Close the listening socket (the daemon stops); ``keep_file``: leave a
        unix socket's file for the daemon that took over."""
        listener, self.listener = self.listener, None
        if listener is None:
            return
        forking.discard_fd(listener.fileno())
        listener.close()
        if self.listen.scheme == "unix" and self.owns_file and not keep_file:
            try:
                os.unlink(self.listen.path)
            except OSError:
                pass

    def __repr__(self):
        return "<Pool %r x%d>" % (self.name, len(self.handles))


def bind_pool_listener(address):
    """A pool's listening gevent socket bound to ``address`` (tcp or unix); a
    unix socket file nobody listens on is replaced.  (The daemon's own RPC
    endpoints use :func:`gdaemon.rpc.endpoint.bind_listener`, which sets the
    file's mode and raises :class:`~gdaemon.errors.ProcessError`.)

    :raises WorkerError: the address cannot be bound (in use, permission...).
    """
    try:
        if address.scheme == "unix":
            sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _remove_stale_unix_socket(address.path)
            sock.bind(address.path)
        else:
            host, port = address.host, address.port
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = gsocket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        raise WorkerError("cannot listen on %s: %s" % (address, exc.strerror or exc)) from None
    return sock


def _remove_stale_unix_socket(path):
    """Remove a socket file nobody listens on (left by a daemon that was SIGKILLed)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode) and not unix_socket_is_live(path):
            os.unlink(path)
    except FileNotFoundError:
        pass


def start_layers(pools, known_only=False):
    """Pools in start order: a list of layers, each only after the ones before.

    :param pools: ``{name: Pool}``.
    :param known_only: check cycles among ``pools`` only (at ``install()``, when
        a dependency may still be installed later).
    :raises WorkerError: a pool waits for one that is not installed, or pools
        wait for each other in a cycle (the message names the workers).
    """
    if known_only:
        pools = {name: _Known(pool, pools) for name, pool in pools.items()}
    for pool in pools.values():
        unknown = [name for name in pool.after if name not in pools]
        if unknown:
            raise WorkerError("worker %r starts after %s, which %s not installed"
                              % (pool.name, ", ".join(repr(n) for n in unknown),
                                 "is" if len(unknown) == 1 else "are"))
    placed = {}
    layers: List[Any] = []
    remaining = dict(pools)
    while remaining:
        layer = [pool for pool in remaining.values() if all(dep in placed for dep in pool.after)]
        if not layer:
            raise WorkerError("workers wait for each other in a cycle: %s"
                              % " -> ".join(repr(name) for name in _cycle(remaining)))
        for pool in layer:
            placed[pool.name] = len(layers)
            del remaining[pool.name]
        layers.append(layer)
    return layers


class _Known:
    """A pool seen with only its dependencies that are installed already."""

    def __init__(self, pool, pools):
        self.name = pool.name
        self.after = tuple(dep for dep in pool.after if dep in pools)


def _cycle(pools):
    """The names along one cycle among ``pools`` (each of which waits for another of them)."""
    name = next(iter(pools))
    seen = []
    while name not in seen:
        seen.append(name)
        name = next(dep for dep in pools[name].after if dep in pools)
    return seen[seen.index(name):] + [name]


def check_after(after, name):
    """Validate an ``after=`` argument; return it as a tuple of names."""
    if isinstance(after, str):
        after = (after,)
    try:
        after = tuple(after)
    except TypeError:
        raise ConfigError("invalid after %r for worker %r: expected a list of worker names"
                          % (after, name)) from None
    if not all(isinstance(dep, str) and dep for dep in after):
        raise ConfigError("invalid after %r for worker %r: expected a list of worker names"
                          % (after, name))
    if name in after:
        raise WorkerError("worker %r cannot start after itself" % (name,))
    return after


def check_install(worker, looptime, forever, timeout, instances):
    """Validate the arguments of ``install()``; the ConfigError names the bad one."""
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
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
        raise ConfigError("invalid instances %r for worker %r: expected an integer >= 0"
                          % (instances, worker.name))


def process_settings(worker, user, group, rlimits):
    """Check ``install(..., user=, group=, rlimits=)``; the worker's
    :class:`~gdaemon.identity.ProcessSettings` (empty without them).

    :raises WorkerError: an unknown user, group or limit, a value the
        kernel would refuse, an identity this daemon cannot switch to (it is
        not root), or any of them for a greenlet worker (which runs in the
        daemon's own process).
    """
    what = "worker %r" % worker.name
    if worker.kind != "process" and (user is not None or group is not None or rlimits):
        raise WorkerError("%s: user, group and rlimits are for forked workers; a greenlet "
                          "worker runs in the daemon's process" % what)
    identity = resolve_identity(user, group, what, error=WorkerError)
    check_switchable(identity, what, error=WorkerError)
    return ProcessSettings(identity, parse_rlimits(rlimits, what))


def check_identities(pools):
    """At start: raise WorkerError for a worker whose ``user``/``group`` this
    daemon cannot take, or whose hard limit it cannot raise (it dropped root
    after the worker was installed)."""
    for pool in pools:
        settings = pool.template.process_settings  # set by install()
        what = "worker %r" % pool.name
        check_switchable(settings.identity, what, error=WorkerError)
        check_limits(settings.limits, what)


def listen_address(listen, worker, config):
    """Parse and check ``install(..., listen=...)``; ``None`` without one."""
    if listen is None:
        return None
    address = parse_address(listen, key="listen of worker %r" % worker.name, schemes=("tcp", "unix"))
    if address.scheme == "unix" and not os.path.isabs(address.path):
        address.path = os.path.join(config.get("basepath") or os.getcwd(), address.path)
    if not config.get("insecure") and not address.is_loopback:
        raise ConfigError("refusing listen=%s for worker %r on a non-loopback address: the "
                          "daemon cannot authenticate the worker's own protocol (set "
                          "'insecure': True)" % (listen, worker.name))
    return address


def _positive_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
