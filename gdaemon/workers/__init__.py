"""Workers: forked processes or greenlets, supervised by the daemon.

The user's side:

- :mod:`~gdaemon.workers.worker`: :class:`Worker`, :class:`GreenletWorker`,
  :func:`exposed`, :class:`WorkerStatus`, :class:`WorkerExit`, :class:`WorkerKind`;
- :mod:`~gdaemon.workers.exec`: :class:`ExecWorker`, a worker that runs a program;

what runs a worker:

- :mod:`~gdaemon.workers.runtime`: the loop (spinup, loop and commands, spindown);
- :mod:`~gdaemon.workers.messages`: the messages between daemon and worker;
- :mod:`~gdaemon.workers.channel`: the shared-memory channel of a forked worker;
- :mod:`~gdaemon.workers.local`: the in-process channel of a greenlet worker;
- :mod:`~gdaemon.workers.child`: the life of a forked child;
- :mod:`~gdaemon.workers.output`: a program's stdout and stderr into the log;

and the daemon's side:

- :mod:`~gdaemon.workers.manager`: :class:`WorkerManager` (``daemon.workers``);
- :mod:`~gdaemon.workers.handle`: a worker's handle (``daemon.workers.get(name)``);
- :mod:`~gdaemon.workers.spawn`, :mod:`~gdaemon.workers.standby`: making instances;
- :mod:`~gdaemon.workers.forkserver`: the process that forks them, off the daemon's hub;
- :mod:`~gdaemon.workers.watchdog`: respawn policy and heartbeat timeouts;
- :mod:`~gdaemon.workers.rpc`: the ``worker.*`` RPC methods.
"""

from ..lazy import lazy_exports

# The names below are imported at first use (PEP 562): the daemon imports
# gdaemon.workers.rpc when it is made, and the rest of the worker layer only
# once it has workers, so that a daemon without any starts faster.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .exec import ExecWorker
    from .manager import WorkerManager
    from .worker import GreenletWorker, Worker, WorkerExit, WorkerKind, WorkerStatus, exposed

_LAZY = {"Worker": ".worker", "GreenletWorker": ".worker", "exposed": ".worker", "WorkerStatus": ".worker",
         "WorkerExit": ".worker", "WorkerKind": ".worker", "ExecWorker": ".exec", "WorkerManager": ".manager"}

__all__ = ["Worker", "GreenletWorker", "ExecWorker", "exposed", "WorkerStatus", "WorkerExit", "WorkerKind",
           "WorkerManager"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
