"""gdaemon: multi-process Unix daemons on gevent.

A daemon serves JSON-RPC 2.0 on a unix/TCP socket (and a websocket), turns
POSIX signals into named events on a blinker bus, and supervises workers
(forked processes or greenlets) with shared-memory channels and a watchdog.

The library never monkey-patches on import.  Exec scripts whose handlers use
blocking standard-library I/O should call ``gevent.monkey.patch_all()`` first.
"""

from .lazy import lazy_exports
from .version import __version__  # noqa: F401
from .errors import (ConfigError, GDaemonError, ProcessError, RpcError,  # noqa: F401
                     WorkerError)

#: The rest of the public API, imported at first use (PEP 562): ``gdaemon-ctl``
#: and ``gdaemon.client`` import this package without the daemon, its workers
#: or gevent, and start in a fraction of the time.
_LAZY = {
    "Daemon": "gdaemon.daemon",
    "RpcMethod": "gdaemon.rpc.methods",
    "Worker": "gdaemon.workers.worker",
    "GreenletWorker": "gdaemon.workers.worker",
    "ExecWorker": "gdaemon.workers.exec",
    "exposed": "gdaemon.workers.worker",
    "WorkerStatus": "gdaemon.wire.status",
}


# Type checkers see the lazy names as plain imports (at run time ``typing`` is
# not even imported: ``gdaemon-ctl`` starts without it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .daemon import Daemon
    from .rpc.methods import RpcMethod
    from .wire.status import WorkerStatus
    from .workers.exec import ExecWorker
    from .workers.worker import GreenletWorker, Worker, exposed


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


def _install_excepthook():
    """Make an uncaught start-up error one line, ``error: ...``, exit status 1 (docs/reference/config.rst; docs/reference/console.rst).

    ``Daemon({...})`` raises :class:`ConfigError` at construction, before
    ``init()`` parses the command line, so an exec script with a bad config
    would otherwise end in a traceback.  Start-up errors (configuration,
    operating-system steps, worker set-up) print their message alone; with
    ``-v``/``--verbose`` on the command line the traceback is printed too.
    Everything else goes to the hook that was installed before ours.
    """
    import sys

    from .errors import ConnectionLost, RpcError

    previous = sys.excepthook

    def excepthook(kind, value, tb):
        if (isinstance(value, GDaemonError) and not isinstance(value, (RpcError, ConnectionLost))):
            if "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]:
                previous(kind, value, tb)
            sys.stderr.write("error: %s\n" % value)
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    excepthook.previous = previous  # type: ignore[attr-defined]  # the hook it wraps, for whoever unwraps it
    sys.excepthook = excepthook


_install_excepthook()

__all__ = ["Daemon", "Worker", "GreenletWorker", "ExecWorker", "WorkerStatus", "exposed", "RpcMethod",
           "RpcError", "ConfigError", "GDaemonError", "ProcessError", "WorkerError",
           "__version__"]
