"""gdaemon: multi-process Unix daemons on gevent.

A daemon serves JSON-RPC 2.0 on a unix/TCP socket (and a websocket), turns
POSIX signals into named events on a blinker bus, and supervises workers
(forked processes or greenlets) with shared-memory channels and a watchdog.

The library never monkey-patches on import.  Exec scripts whose handlers use
blocking standard-library I/O should call ``gevent.monkey.patch_all()`` first.
"""

__version__ = "0.1.0"

from .errors import (ConfigError, GDaemonError, ProcessError, RpcError,  # noqa: E402
                     WorkerError)
from .daemon import Daemon  # noqa: E402
from .rpc.methods import RpcMethod  # noqa: E402
from .workers import GreenletWorker, Worker, WorkerStatus, exposed  # noqa: E402

__all__ = ["Daemon", "Worker", "GreenletWorker", "WorkerStatus", "exposed", "RpcMethod",
           "RpcError", "ConfigError", "GDaemonError", "ProcessError", "WorkerError",
           "__version__"]
