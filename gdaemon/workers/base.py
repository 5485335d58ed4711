"""Compatibility: the names :mod:`gdaemon.workers.base` held before the split.

The worker layer is now one module per concept: :mod:`~gdaemon.workers.worker`
(the user API and enums), :mod:`~gdaemon.workers.messages`,
:mod:`~gdaemon.workers.local`, :mod:`~gdaemon.workers.runtime`.
"""

from .local import LocalLink, LocalStatus
from .messages import (ACTIVATE, CALL, CMD, LOG, MSG, REOPEN, REPLY, STATE, UnencodableMessage, decode,
                       encode)
from .runtime import WorkerRuntime
from .worker import GreenletWorker, Worker, WorkerExit, WorkerKind, WorkerStatus, exposed

__all__ = ["Worker", "GreenletWorker", "WorkerStatus", "WorkerExit", "WorkerKind", "exposed",
           "WorkerRuntime", "LocalStatus", "LocalLink", "encode", "decode", "UnencodableMessage",
           "CMD", "CALL", "STATE", "MSG", "REPLY", "ACTIVATE", "REOPEN", "LOG"]
