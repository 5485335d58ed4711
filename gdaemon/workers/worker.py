"""Workers as the user writes them: :class:`Worker` and :class:`GreenletWorker`.

A worker is a subclass of :class:`Worker` (a forked process) or
:class:`GreenletWorker` (a greenlet inside the daemon) with a ``loop()``
method, and optional ``spinup()`` / ``spindown()``.  Both kinds are run by
the same machinery, :class:`~gdaemon.workers.runtime.WorkerRuntime`::

    spinup()  ->  LOOPING: loop() every ``looptime`` s, commands in between  ->  spindown()

Also here: the status and exit codes (:class:`WorkerStatus`,
:class:`WorkerExit`) and the :func:`exposed` decorator.

Fork safety: :class:`Worker` ``__init__`` runs in the daemon and changes
nothing in the process; everything a run needs is built by the runtime in
the process (or greenlet) that runs it.  The life of a forked child is in
:mod:`gdaemon.workers.child`.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from ..errors import ChannelClosed
from ..events import EventBus
from ..wire.status import WorkerStatus
from .messages import MSG, encode

if TYPE_CHECKING:
    import socket

    from ..daemon import Daemon
    from ..identity import ProcessSettings
    from .recycle import RecyclePolicy
    from .runtime import WorkerRuntime

#: An exposed method, returned as it was given by :func:`exposed`.
_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["Worker", "GreenletWorker", "WorkerStatus", "WorkerExit", "WorkerKind", "exposed",
           "is_exposed"]


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


class WorkerKind(str, enum.Enum):
    """How a worker runs (``worker.info`` ``kind``); compares equal to its string."""

    PROCESS = "process"
    GREENLET = "greenlet"

    def __str__(self) -> str:
        return self.value


_EXPOSED = "_gdaemon_exposed"

def exposed(fn: _F) -> _F:
    """Decorator: make a worker method callable with the ``worker.call`` RPC.

    The method runs in the worker (between two ``loop()`` runs) with the
    call's params (a JSON array as positional, an object as keyword
    arguments); what it returns is the RPC result.  Raise
    :class:`gdaemon.RpcError` to send a specific error; any other exception
    becomes ``-32603``.
    """
    setattr(fn, _EXPOSED, True)
    return fn


def is_exposed(attribute: Any) -> bool:
    """True for a method decorated with :func:`exposed`."""
    return getattr(attribute, _EXPOSED, False)


def bind_runtime(worker: Worker, runtime: Optional[WorkerRuntime]) -> None:
    """Make ``runtime`` the run that ``worker``'s own API (``send``, ``beat``,
    ``status``...) acts on; ``None`` while it does not run."""
    worker._runtime = runtime


class Worker:
    """A worker run as a forked process; subclass it and implement :meth:`loop`.

    :param name: the worker's name, unique in its daemon.

    ``__init__`` runs in the daemon before anything is forked: keep it cheap
    and open nothing there (open files and connections in :meth:`spinup`).
    :meth:`~gdaemon.workers.manager.WorkerManager.install` sets
    :attr:`looptime`, :attr:`forever`, :attr:`timeout`, :attr:`daemon` and
    :attr:`logger`.
    """

    #: :attr:`WorkerKind.PROCESS` or :attr:`WorkerKind.GREENLET` (``worker.info``).
    kind = WorkerKind.PROCESS
    #: Longest time in seconds between two heartbeats while the worker waits
    #: for its next loop (shortened to a quarter of ``timeout`` when smaller).
    heartbeat_interval = 0.5

    if TYPE_CHECKING:  # set by install() (absent before: read with getattr)
        process_settings: ProcessSettings
        recycle_policy: Optional[RecyclePolicy]

    def __init__(self, name: str) -> None:
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
        self.looptime: float = 1.0
        #: Respawned when it dies.
        self.forever = False
        #: Seconds the heartbeat may stall before the watchdog kills it.
        self.timeout: Optional[float] = None
        #: The daemon it is installed in.
        self.daemon: Optional[Daemon] = None
        #: This instance's index in its pool (0 for a worker of one instance).
        self.instance = 0
        #: The name of its pool (its own name for a worker of one instance).
        self.pool = name
        #: The pool's listening socket (``install(..., listen=...)``), else ``None``.
        self.listener: Optional[socket.socket] = None
        self._runtime: Optional[WorkerRuntime] = None

    # -- to override -------------------------------------------------------

    def spinup(self) -> None:
        """Called once when the worker starts, before the first ``loop()``."""

    def loop(self) -> None:
        """Called every :attr:`looptime` seconds while LOOPING (required)."""
        raise NotImplementedError("workers implement loop()")

    def spindown(self) -> None:
        """Called once when the worker stops (also after ``loop()`` raised)."""

    # -- API for the worker's own code --------------------------------------

    def send(self, command: str, payload: Any = None) -> int:
        """Write a message to the daemon (``worker.message`` event there).

        :returns: bytes written (> 0).
        :raises ChannelFull: the channel to the daemon has no room now.
        :raises ChannelClosed: the worker is not running (or the daemon is gone).
        """
        runtime = self._runtime
        if runtime is None:
            raise ChannelClosed("worker %r is not running" % (self.name,))
        return runtime.link.send(encode(MSG, command, payload))

    def beat(self) -> None:
        """Bump the heartbeat from inside a long ``loop()`` (see ``timeout``)."""
        if self._runtime is not None:
            self._runtime.status.beat()

    def stop(self) -> None:
        """Ask the loop to stop after the current ``loop()``; spindown follows."""
        if self._runtime is not None:
            self._runtime.request_stop()

    @property
    def status(self) -> WorkerStatus:
        """The current :class:`WorkerStatus` (STOPPED outside a run)."""
        runtime = self._runtime
        return runtime.state if runtime is not None else WorkerStatus.STOPPED

    @property
    def loops(self) -> int:
        """How many times ``loop()`` has run in this instance."""
        runtime = self._runtime
        return runtime.loops if runtime is not None else 0

    def __repr__(self) -> str:
        return "<%s %r %s>" % (type(self).__name__, self.name, self.status.name)


class GreenletWorker(Worker):
    """A worker run as a greenlet inside the daemon; same API as :class:`Worker`.

    Its ``loop()`` must cooperate (gevent I/O, ``gevent.sleep``): a loop that
    blocks the process blocks the whole daemon.  The same instance is run
    again when the worker is restarted, so :meth:`spinup` should (re)set its
    state.
    """

    kind = WorkerKind.GREENLET
