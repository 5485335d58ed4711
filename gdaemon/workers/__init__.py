"""Workers: forked processes or greenlets, supervised by the daemon.

- :mod:`~gdaemon.workers.base`: :class:`Worker`, :class:`GreenletWorker`,
  :func:`exposed`, :class:`WorkerStatus` and the worker-side loop;
- :mod:`~gdaemon.workers.channel`: the shared-memory channel of a forked worker;
- :mod:`~gdaemon.workers.manager`: :class:`WorkerManager` (``daemon.workers``);
- :mod:`~gdaemon.workers.watchdog`: respawn policy and heartbeat timeouts;
- :mod:`~gdaemon.workers.rpc`: the ``worker.*`` RPC methods.
"""

from .base import GreenletWorker, Worker, WorkerStatus, exposed
from .manager import WorkerManager

__all__ = ["Worker", "GreenletWorker", "exposed", "WorkerStatus", "WorkerManager"]
