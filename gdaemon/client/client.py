"""The client: one connection to a gdaemon's RPC endpoint, its requests, replies and events.

See :mod:`gdaemon.client` for the design (lazy connection, one reader for
replies and events, timeouts, gevent).
"""

from __future__ import annotations

import collections
import itertools
import logging
import socket

from ..errors import ConnectionLost, Unauthorized
from ..wire import codec
from ..wire.address import CLIENT_SCHEMES, parse_address
from .batch import Batch
from .request import MethodProxy, make_request, reply_result
from .transports import open_transport

# ``typing`` costs a client's start-up a few milliseconds: annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Deque, Dict, Iterable, Iterator, NoReturn, Optional, Set, Union

    from .transports import LineTransport

    #: Patterns of event names: one glob or several.
    Patterns = Union[str, Iterable[str]]

__all__ = ["Client"]

logger = logging.getLogger("gdaemon.client")


class Client:
    """A connection to a gdaemon's RPC endpoint.

    :param address: ``unix://PATH``, ``tcp://HOST:PORT``, ``tls://HOST:PORT``,
        ``ws://HOST:PORT/rpc`` or ``wss://HOST:PORT/rpc``.
    :param token: when given, ``system.auth`` is sent first on every connection.
    :param timeout: seconds allowed to connect and to wait for each reply
        (``None``: forever).
    :param cafile: CA bundle that signs the daemon's certificate (``tls://``,
        ``wss://``); the system store when ``None``.
    :raises ConfigError: for a malformed address (no I/O happens here).

    Methods of the daemon are reached with :meth:`call` or as attributes
    (``client.daemon.status()``); the names ``call``, ``notify``, ``batch``,
    ``subscribe``, ``unsubscribe``, ``next_event``, ``connect``, ``connected``,
    ``close``, ``address``, ``token``, ``timeout``, ``cafile``, ``max_message``
    and ``max_queued_events`` are this class's own (use :meth:`call` for a
    method named like one of them).
    """

    #: Largest reply accepted, in bytes.
    max_message = 64 * 1024 * 1024
    #: Pushed events kept until read; past that the oldest are dropped.
    max_queued_events = 10000

    def __init__(self, address: str, token: Optional[str] = None, timeout: Optional[float] = 5.0,
                 cafile: Optional[str] = None) -> None:
        self._target = parse_address(address, "address", CLIENT_SCHEMES)
        self.address = address
        self.token = token
        self.timeout = timeout
        self.cafile = cafile
        self._ids = itertools.count(1)
        self._transport: Optional[LineTransport] = None
        self._events: Deque[Dict[str, Any]] = collections.deque(maxlen=self.max_queued_events)
        #: Incremented on every new connection: subscriptions belong to one.
        self._generation = 0
        #: Why the last connection ended: ``None`` after :meth:`close`.
        self._close_reason: Optional[str] = None

    # -- connection -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still be closed by the daemon)."""
        return self._transport is not None

    def connect(self) -> None:
        """Connect now (requests do it on demand); authenticate with ``token``.

        :raises ConnectionLost: the daemon cannot be reached.
        :raises Unauthorized: the token was refused.
        """
        if self._transport is not None:
            return
        try:
            transport = open_transport(self._target, self.timeout, self.max_message, self.cafile)
        except ConnectionLost:
            raise
        except (OSError, ValueError) as exc:
            raise ConnectionLost("cannot connect to %s: %s" % (self.address, exc)) from exc
        self._transport = transport
        self._generation += 1
        self._events.clear()
        if self.token is not None:
            try:
                reply_result(self._exchange(make_request("system.auth", (), {"token": self.token}, next(self._ids))))
            except Unauthorized as exc:
                self.close()
                raise explain_unauthorized(exc, self.token) from None
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Close the connection (idempotent); the next request reconnects."""
        self._drop(None)

    def _drop(self, reason: Optional[str]) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            self._close_reason = reason
            transport.close()

    def _lost(self, reason: str, exc: Optional[BaseException] = None) -> NoReturn:
        reason = "%s: %s" % (self.address, reason)
        self._drop(reason)
        error = ConnectionLost(reason)
        if exc is not None:
            raise error from exc
        raise error

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<Client %s %s>" % (self.address, "connected" if self.connected else "idle")

    # -- requests -------------------------------------------------------------

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` and return its result.

        Positional arguments are sent as a JSON array, keyword arguments as a
        JSON object; giving both raises :class:`TypeError`.

        :raises RpcError: (the most specific subclass) the daemon's error.
        :raises ConnectionLost: the daemon cannot be reached, closed the
            connection or did not reply within ``timeout``.
        """
        request = make_request(method, args, kwargs, next(self._ids))
        try:
            return reply_result(self._exchange(request))
        except Unauthorized as exc:
            raise explain_unauthorized(exc, self.token) from None

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification: no id, no reply read.

        :raises ConnectionLost: the daemon cannot be reached.
        """
        self._send(make_request(method, args, kwargs))

    def batch(self) -> Batch:
        """A :class:`Batch` context: its calls go out as one JSON array line."""
        return Batch(self)

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return MethodProxy(self.call, name)

    # -- events ---------------------------------------------------------------

    def subscribe(self, patterns: Patterns, timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Subscribe to events and return a generator of them.

        ``events.subscribe`` is called at once (its errors raise here); the
        generator then yields ``{"name", "data", "time"}`` dicts, the events
        pushed on this connection, in order.  Other calls may be made between
        two events.  When the connection ends, the generator raises
        :class:`ConnectionLost` (after a reconnection, subscribe again); after
        :meth:`close` it just stops.

        :param patterns: a glob pattern or a list of them (``"worker.*"``).
        :param timeout: seconds to wait for each event; when it expires the
            generator raises :class:`TimeoutError` (the connection stays usable).
        """
        if isinstance(patterns, str):
            patterns = [patterns]
        self.call("events.subscribe", patterns=list(patterns))
        return self._iter_events(self._generation, timeout)

    def unsubscribe(self, patterns: Optional[Patterns] = None) -> None:
        """Call ``events.unsubscribe`` (all patterns when ``None``); drop queued events."""
        if patterns is None:
            self.call("events.unsubscribe")
        else:
            if isinstance(patterns, str):
                patterns = [patterns]
            self.call("events.unsubscribe", patterns=list(patterns))
        self._events.clear()

    def next_event(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The next pushed event (an already queued one first).

        :param timeout: seconds to wait; ``None`` waits forever.
        :raises TimeoutError: no event within ``timeout``.
        :raises ConnectionLost: the connection ended.
        """
        while not self._events:
            if self._transport is None:
                raise ConnectionLost("%s: not connected (no subscription)" % self.address)
            try:
                message = self._receive(timeout)
            except socket.timeout:
                raise TimeoutError("no event from %s within %ss" % (self.address, timeout)) from None
            self._route(message, set(), {})
        return self._events.popleft()

    def _iter_events(self, generation: int, timeout: Optional[float]) -> Iterator[Dict[str, Any]]:
        while True:
            if self._transport is None and not self._events:
                if self._close_reason is None:
                    return  # closed on purpose
                raise ConnectionLost(self._close_reason)
            if self._generation != generation:
                raise ConnectionLost("%s: the subscription ended with its connection" % self.address)
            yield self.next_event(timeout)

    # -- wire -----------------------------------------------------------------

    def _send(self, payload):
        if self._transport is not None and self._transport.closed_by_peer():
            logger.debug("%s: connection closed by the daemon while idle; reconnecting", self.address)
            self._drop("%s: connection closed by the daemon" % self.address)
        self.connect()
        assert self._transport is not None  # connect() connected or raised
        try:
            self._transport.send(codec.dumps_strict(payload))
        except OSError as exc:
            self._lost("connection lost while sending (%s)" % exc, exc)

    def _exchange(self, payload: Any, ids: Optional[Iterable[Any]] = None) -> Any:
        """Send ``payload``; return the reply (one request) or ``{id: reply}`` (batch)."""
        self._send(payload)
        if isinstance(payload, dict):
            return self._wait({payload["id"]})[payload["id"]]
        return self._wait(set(ids)) if ids else {}

    def _receive(self, timeout: Optional[float]) -> Any:
        """The next decoded message; raises ConnectionLost at end of stream."""
        # Callers hold a connection: next_event() checks, _wait() follows _send().
        assert self._transport is not None
        try:
            data = self._transport.receive(timeout)
        except socket.timeout:
            raise
        except ConnectionLost as exc:
            self._lost(str(exc), exc)
        except OSError as exc:
            self._lost("connection lost (%s)" % exc, exc)
        if data is None:
            self._lost("connection closed by the daemon")
        try:
            return codec.loads(data)
        except ValueError as exc:
            self._lost("invalid JSON from the daemon (%s): %r" % (exc, data[:200]), exc)

    def _wait(self, pending: Set[Any]) -> Dict[Any, Any]:
        """Read until every id in ``pending`` is answered; return ``{id: reply}``."""
        replies: Dict[Any, Any] = {}
        while pending:
            try:
                message = self._receive(self.timeout)
            except socket.timeout as exc:
                self._lost("no reply within %ss" % self.timeout, exc)
            self._route(message, pending, replies)
            if isinstance(message, list) and pending:
                # A batch is answered by one array: ids it lacks will never come.
                for rid in pending:
                    replies[rid] = {"error": {"code": -32603, "message": "no reply for this id in the batch"}}
                pending.clear()
        return replies

    def _route(self, message: Any, pending: Set[Any], replies: Dict[Any, Any]) -> None:
        """Hand each reply in ``message`` to its request, each event to the queue."""
        for item in message if isinstance(message, list) else (message,):
            if not isinstance(item, dict):
                logger.warning("%s: ignoring a message that is not an object: %r", self.address, item)
            elif "id" not in item:
                if item.get("method") == "event":
                    self._queue_event(item.get("params"))
                else:
                    logger.debug("%s: ignoring notification %r", self.address, item.get("method"))
            elif item["id"] in pending:
                pending.discard(item["id"])
                replies[item["id"]] = item
            elif item["id"] is None and "error" in item and pending:
                # Errors the server could not tie to a request (parse error,
                # message too large, too many connections) answer whatever
                # this client is waiting for: it has one request in flight.
                for rid in pending:
                    replies[rid] = item
                pending.clear()
            else:
                logger.debug("%s: dropping a reply for unknown id %r", self.address, item["id"])

    def _queue_event(self, params: Any) -> None:
        if not isinstance(params, dict):
            logger.warning("%s: ignoring a malformed event %r", self.address, params)
            return
        if len(self._events) == self._events.maxlen:
            logger.warning("%s: event queue full, dropping the oldest event", self.address)
        self._events.append({"name": params.get("name"), "data": params.get("data", {}),
                             "time": params.get("time")})


def explain_unauthorized(exc: Unauthorized, token: Optional[str]) -> Unauthorized:
    """``exc`` (``-32001``) with a message saying how to give a token."""
    if token is None:
        message = ("the daemon requires a token: give it as Client(address, token=...) "
                   "(gdaemon-ctl: -t TOKEN or GDAEMON_TOKEN)")
    else:
        message = ("the daemon refused the token (%s): give the right one as Client(address, token=...) "
                   "(gdaemon-ctl: -t TOKEN or GDAEMON_TOKEN)" % exc.message)
    return Unauthorized(message, data=exc.data)
