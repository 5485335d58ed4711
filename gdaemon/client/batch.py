"""Batches: calls collected in a ``with client.batch() as b:`` block, sent as one JSON array line.

Each queued call returns a :class:`Future`, settled when the batch is sent
and answered.  A batch belongs to its :class:`~gdaemon.client.Client`: it
numbers its requests and exchanges them through the client's connection
(the client's ``_ids`` and ``_exchange``, kept private because every public
name of a client shadows an RPC namespace of the attribute proxy).
"""

from __future__ import annotations

from ..errors import ConnectionLost, RpcError
from .request import MethodProxy, make_request, reply_result

# ``typing`` costs a client's start-up a few milliseconds: annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Literal, Optional, Type

    from .client import Client

__all__ = ["Batch", "Future"]


class Future:
    """The promise of one call in a :class:`Batch`; settled when the batch is sent."""

    __slots__ = ("method", "_done", "_value", "_error")

    def __init__(self, method: str) -> None:
        self.method = method
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def done(self) -> bool:
        """True once the batch was sent and this call answered (or failed)."""
        return self._done

    def result(self) -> Any:
        """The call's result.

        :raises RpcError: the error the daemon answered for this call.
        :raises ConnectionLost: the batch could not be sent or answered.
        :raises RuntimeError: the batch has not been sent yet.
        """
        if not self._done:
            raise RuntimeError("%s: the batch has not been sent yet" % self.method)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> Optional[BaseException]:
        """The error :meth:`result` would raise, or ``None``."""
        if not self._done:
            raise RuntimeError("%s: the batch has not been sent yet" % self.method)
        return self._error

    def _settle(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self._done, self._value, self._error = True, value, error

    def _settle_from_reply(self, reply: Dict[str, Any]) -> None:
        try:
            self._settle(value=reply_result(reply))
        except RpcError as exc:
            self._settle(error=exc)

    def __repr__(self) -> str:
        state = "pending" if not self._done else ("error" if self._error else "done")
        return "<Future %s %s>" % (self.method, state)


class Batch:
    """Requests collected in a ``with client.batch() as b:`` block.

    ``b.call(...)``, ``b.notify(...)`` and the attribute proxy
    (``b.examples.echo("hi")``) queue requests; leaving the block without an
    exception sends them as one JSON array line and settles every
    :class:`Future`.  An exception in the block sends nothing.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._requests: List[Dict[str, Any]] = []
        self._futures: Dict[int, Future] = {}
        self._sent = False

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Future:
        """Queue a call; returns its :class:`Future`."""
        self._check_open()
        request = make_request(method, args, kwargs, next(self._client._ids))
        future = Future(method)
        self._requests.append(request)
        self._futures[request["id"]] = future
        return future

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Queue a notification (no reply, no future)."""
        self._check_open()
        self._requests.append(make_request(method, args, kwargs))

    def _check_open(self) -> None:
        if self._sent:
            raise RuntimeError("this batch was already sent")

    def send(self) -> None:
        """Send the batch now (leaving the ``with`` block does it)."""
        self._check_open()
        self._sent = True
        if not self._requests:
            return
        try:
            replies = self._client._exchange(self._requests, list(self._futures))
        except ConnectionLost as exc:
            for future in self._futures.values():
                future._settle(error=exc)
            raise
        for rid, future in self._futures.items():
            future._settle_from_reply(replies[rid])

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return MethodProxy(self.call, name)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Any) -> Literal[False]:
        if exc_type is None:
            self.send()
        else:
            self._sent = True
            error = RuntimeError("batch not sent: its block raised %s" % exc_type.__name__)
            for future in self._futures.values():
                future._settle(error=error)
        return False
