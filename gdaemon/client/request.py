"""A JSON-RPC call as the client writes and reads it: the request object, the reply's result, the proxy.

These are shared by :class:`~gdaemon.client.Client` and
:class:`~gdaemon.client.Batch`: both build requests with
:func:`make_request`, read replies with :func:`reply_result`, and offer
``client.examples.echo(...)`` through :class:`MethodProxy`.
"""

from __future__ import annotations

from ..errors import InternalError, RpcError

# ``typing`` costs a client's start-up a few milliseconds: annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Mapping, Optional, Sequence

__all__ = ["make_request", "reply_result", "MethodProxy"]


def make_request(method: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                 rid: Optional[Any] = None) -> Dict[str, Any]:
    """The request object for ``method``; a notification when ``rid`` is ``None``.

    :raises TypeError: ``method`` is not a string, or both ``args`` and ``kwargs`` are given.
    """
    if not isinstance(method, str):
        raise TypeError("method name must be a string, got %r" % (method,))
    if args and kwargs:
        raise TypeError("%s: JSON-RPC params are either positional or by name, not both" % method)
    request: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if args:
        request["params"] = list(args)
    elif kwargs:
        request["params"] = kwargs
    if rid is not None:
        request["id"] = rid
    return request


def reply_result(reply: Mapping[str, Any]) -> Any:
    """The ``result`` of a reply object.

    :raises RpcError: (the most specific subclass) the reply is an error.
    :raises InternalError: the reply has neither ``result`` nor ``error``.
    """
    if "error" in reply:
        raise RpcError.from_dict(reply["error"])
    if "result" not in reply:
        raise InternalError("malformed reply: neither result nor error", data=reply)
    return reply["result"]


class MethodProxy:
    """``client.examples.echo`` -> a callable for method ``"examples.echo"``."""

    __slots__ = ("_call", "_name")

    def __init__(self, call: Callable[..., Any], name: str) -> None:
        self._call = call
        self._name = name

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return MethodProxy(self._call, "%s.%s" % (self._name, name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._name, *args, **kwargs)

    def __repr__(self) -> str:
        return "<RPC method %s>" % self._name
