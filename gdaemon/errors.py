"""The whole gdaemon exception hierarchy, in one place.

Every error gdaemon raises derives from :class:`GDaemonError`.  Errors that cross
the RPC wire are :class:`RpcError` subclasses; each declares its JSON-RPC
``code`` and the client maps a code back to its class through a registry built
from the subclasses themselves (no hand-written table to keep in sync).
"""

from __future__ import annotations

# ``typing`` costs a client's start-up a few milliseconds: annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Type, Union

__all__ = [
    "GDaemonError", "ConfigError", "ProcessError", "AlreadyRunning", "WorkerError",
    "ChannelFull", "ChannelMessageTooLarge", "ChannelClosed", "RpcError", "ParseError", "InvalidRequest",
    "MethodNotFound", "InvalidParams", "InternalError", "Unauthorized",
    "UnknownWorker", "MessageTooLarge", "TooManyConnections", "WorkerUnavailable",
    "ConnectionLost", "HaltDaemon",
]


class GDaemonError(Exception):
    """Root of every error gdaemon raises."""


class ConfigError(GDaemonError, ValueError):
    """A configuration key is unknown or has a value of the wrong type.

    The message always names the key.
    """


class ProcessError(GDaemonError, OSError):
    """An operating-system step (fork, chdir, pid file, bind...) failed.

    Inherits from :class:`OSError` too, so callers may catch either.
    """


class AlreadyRunning(ProcessError):
    """The pid file is locked by a live daemon."""

    def __init__(self, pid: Union[int, str]) -> None:
        self.pid = pid
        super().__init__("already running (pid %s)" % (pid,))


class WorkerError(GDaemonError):
    """A worker could not be installed, spawned or reached."""


class ChannelFull(WorkerError):
    """A channel ring has no room for the message; nothing was written."""


class ChannelMessageTooLarge(ChannelFull, ValueError):
    """A message is larger than the ring can ever hold; nothing was written.

    Subclass of :class:`ChannelFull` (so callers that handle a full channel
    handle this too) and of :class:`ValueError` (retrying will not help).
    """


class ChannelClosed(WorkerError):
    """The other end of a channel is gone."""


class HaltDaemon(BaseException):
    """Control flow: unwinds the daemon's main greenlet.  Not an error."""

    def __init__(self, exitcode: int = 0) -> None:
        super().__init__(exitcode)
        self.exitcode = exitcode


# ---------------------------------------------------------------------------
# Errors that cross the wire as JSON-RPC error objects.

class RpcError(GDaemonError):
    """A JSON-RPC error: sent to the client as ``{"code", "message", "data"}``.

    Raise it from a handler to send it as is.  ``RpcError(code, message)`` with
    a code that one of the subclasses declares builds that subclass's instance
    on the client side (see :meth:`from_dict`).
    """

    #: JSON-RPC error code of this class (subclasses override).
    code = -32000
    #: Default message of this class.
    default_message = "Server error"

    _by_code: Dict[int, Type[RpcError]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "code" in cls.__dict__:
            RpcError._by_code.setdefault(cls.code, cls)

    def __init__(self, code: Optional[Union[int, str]] = None, message: Optional[str] = None,
                 data: Any = None) -> None:
        # Subclasses are raised as ``InvalidParams("message")``: accept a string
        # in the first position for them.
        if isinstance(code, str) and message is None:
            code, message = None, code
        if code is not None:
            self.code = int(code)
        self.message = message if message is not None else self.default_message
        self.data = data
        super().__init__(self.code, self.message)

    def __str__(self) -> str:
        return "%s (%d)" % (self.message, self.code)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-RPC error object."""
        error: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_dict(cls, error: Any) -> RpcError:
        """Build the most specific :class:`RpcError` for a wire error object."""
        if not isinstance(error, dict):
            return RpcError(-32603, "malformed error object", data=error)
        code = error.get("code", -32603)
        klass = RpcError._by_code.get(code, RpcError)
        return klass(code, str(error.get("message", "")), error.get("data"))


class ParseError(RpcError):
    code = -32700
    default_message = "Parse error"


class InvalidRequest(RpcError):
    code = -32600
    default_message = "Invalid Request"


class MethodNotFound(RpcError):
    code = -32601
    default_message = "Method not found"


class InvalidParams(RpcError):
    code = -32602
    default_message = "Invalid params"


class InternalError(RpcError):
    code = -32603
    default_message = "Internal error"


class Unauthorized(RpcError):
    code = -32001
    default_message = "Unauthorized"


class UnknownWorker(RpcError):
    code = -32002
    default_message = "Unknown worker"


class MessageTooLarge(RpcError):
    code = -32003
    default_message = "Message too large"


class TooManyConnections(RpcError):
    code = -32004
    default_message = "Too many connections"


class WorkerUnavailable(RpcError):
    code = -32005
    default_message = "Worker unavailable"


class ConnectionLost(GDaemonError, ConnectionError):
    """Client side: the daemon closed the connection or cannot be reached."""
