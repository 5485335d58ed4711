"""The JSON-RPC 2.0 engine: bytes in, bytes out, no I/O.

Wire format (SPEC 4.1): one JSON text per line, UTF-8.  A request is an
object ``{"jsonrpc": "2.0", "method": str, "params": array|object, "id": ...}``
or a batch (a non-empty array of them); the response is one line, an object
``{"jsonrpc": "2.0", "result": ..., "id": ...}`` or
``{"jsonrpc": "2.0", "error": {"code", "message"[, "data"]}, "id": ...}``,
or an array for a batch.  Requests without ``id`` are notifications and get no
response; a batch of only notifications gets none.

Error envelope (SPEC 4.2): ``-32700`` parse error (id null), ``-32600``
invalid request (id null unless the request carried a valid id), ``-32601``,
``-32602`` (names the param), ``-32603`` internal error (any exception a
handler raises that is not an :class:`~gdaemon.errors.RpcError`: the
traceback is logged, never sent).

The engine owns no socket: transports (:mod:`gdaemon.rpc.server`, the HTTP
endpoint) feed it lines and write what it returns.  That keeps it fuzzable
(see tests/unit/test_protocol_properties.py).  Handlers may block
cooperatively (``worker.restart`` waits for the new worker); the transport
calls the engine from the connection's own greenlet.
"""

import collections
from fnmatch import fnmatchcase
import logging
from time import perf_counter

from ..errors import InternalError, InvalidRequest, MethodNotFound, RpcError, Unauthorized
from . import codec

try:
    # The constant-time comparison hmac.compare_digest is built on, without
    # hmac's import of hashlib and OpenSSL (a few MB of resident memory).
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - other interpreters
    from hmac import compare_digest

__all__ = ["Engine", "Session", "EventQueue", "Subscribers"]

log = logging.getLogger("gdaemon.rpc")

_PARSE_ERROR = {"code": -32700, "message": "Parse error"}
_ID_TYPES = (str, int, float, type(None))
_MISSING = object()


class EventQueue:
    """A bounded queue of pushed events that drops the oldest when full.

    :param maxlen: events kept before the oldest are dropped.
    """

    def __init__(self, maxlen=1000):
        self._events = collections.deque()
        self.maxlen = maxlen
        #: Events dropped since the last :meth:`take`.
        self.dropped = 0

    def put(self, event):
        if len(self._events) >= self.maxlen:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)

    def take(self):
        """Everything queued, oldest first, preceded by an ``events.dropped``
        event when some were lost; returns ``(events, dropped_count)``."""
        events, dropped = list(self._events), self.dropped
        self._events.clear()
        self.dropped = 0
        return events, dropped

    def __len__(self):
        return len(self._events)


class Session:
    """What the engine knows of one client connection (or one HTTP request).

    :param peer: a printable description of the client.
    :param transport: ``"socket"``, ``"websocket"`` or ``"http"``.
    """

    #: Events a subscriber may have queued before the oldest are dropped.
    max_queued_events = 1000

    def __init__(self, peer="", transport="socket"):
        self.peer = peer
        self.transport = transport
        self.authenticated = False
        #: Set by the engine when the transport must close after writing the reply.
        self.close_after = False
        #: Glob patterns of ``events.subscribe``.
        self.patterns = []
        self.events = EventQueue(self.max_queued_events)
        #: Called (no argument) by :meth:`offer` when an event was queued; the
        #: transport sets it to wake its push greenlet.
        self.wakeup = None

    def offer(self, event):
        """Queue a pushed event (``{"name","data","time"}``) and wake the pusher."""
        self.events.put(event)
        if self.wakeup is not None:
            self.wakeup()

    def pending_notifications(self):
        """Queued events as encoded JSON-RPC ``event`` notification lines (bytes, no newline)."""
        events, dropped = self.events.take()
        lines = []
        if dropped:
            lines.append(event_notification({"name": "events.dropped",
                                             "data": {"count": dropped},
                                             "time": events[0]["time"] if events else 0}))
        lines.extend(event_notification(e) for e in events)
        return lines


def event_notification(event):
    """The encoded notification for one pushed event."""
    return codec.dumps({"jsonrpc": "2.0", "method": "event", "params": event})


class Engine:
    """Dispatches JSON-RPC requests to a :class:`~gdaemon.rpc.methods.MethodRegistry`.

    :param registry: the methods.
    :param token: when set, every session must call ``system.auth`` first.
    :param injected: keyword values handlers may ask for (``daemon``).
    """

    def __init__(self, registry, token=None, injected=None):
        self.registry = registry
        self.token = token
        self.injected = dict(injected or {})

    # -- entry points -------------------------------------------------------

    def handle_line(self, line, session):
        """Handle one framed line (bytes or str); return response bytes or ``None``."""
        if not line.strip():
            return None
        try:
            payload = codec.loads(line)
        except ValueError:
            if self.token is not None and not session.authenticated:
                return codec.dumps(self._refuse(session, None, "authentication required"))
            return codec.dumps({"jsonrpc": "2.0", "error": _PARSE_ERROR, "id": None})
        response = self.handle_payload(payload, session)
        if response is None:
            return None
        try:
            return codec.dumps(response)
        except Exception:  # a result JSON cannot carry at all
            log.exception("cannot encode response")
            return codec.dumps(_error_response(InternalError("result is not JSON-serialisable"),
                                               response.get("id") if isinstance(response, dict) else None))

    def handle_payload(self, payload, session):
        """Handle a decoded request or batch; return the response object or ``None``."""
        if self.token is not None and not session.authenticated:
            return self._authenticate(payload, session)
        if isinstance(payload, list):
            if not payload:
                return _error_response(InvalidRequest("empty batch"), None)
            responses = [r for r in (self._handle_one(item, session) for item in payload)
                         if r is not None]
            return responses or None
        return self._handle_one(payload, session)

    #: Optional ``observer(method, seconds, ok)``, called after each call of a
    #: registered method with its duration (``ok`` False when it answered an
    #: error): what ``/metrics`` counts.  Must not block or raise; ``None``
    #: (the default) measures nothing.
    observer = None

    def call(self, name, params, session):
        """Call method ``name`` with wire ``params``; return its result.

        Raises :class:`RpcError` (handler errors other than RpcError become
        ``-32603``).  Used by ``system.multicall`` and the XML-RPC bridge.
        """
        method = self.registry.get(name)
        if method is None:
            raise MethodNotFound("method not found: %r" % (name,))
        observer = self.observer
        if observer is None:
            return self._invoke(method, name, params, session)
        start = perf_counter()
        ok = False
        try:
            result = self._invoke(method, name, params, session)
            ok = True
            return result
        finally:
            observer(name, perf_counter() - start, ok)

    def _invoke(self, method, name, params, session):
        kwargs = method.bind(params)
        for key in method.inject:
            kwargs[key] = session if key == "session" else self.injected.get(key)
        try:
            return method.handler(**kwargs)
        except RpcError:
            raise
        except Exception as exc:
            log.exception("method %s raised", name)
            raise InternalError() from exc

    # -- internals ----------------------------------------------------------

    def _handle_one(self, request, session):
        if not isinstance(request, dict):
            return _error_response(InvalidRequest("request must be an object"), None)
        req_id = request.get("id", _MISSING)
        if req_id is not _MISSING and (not isinstance(req_id, _ID_TYPES) or isinstance(req_id, bool)):
            return _error_response(InvalidRequest("invalid id"), None)
        reply_id = None if req_id is _MISSING else req_id
        method = request.get("method")
        params = request.get("params")
        if request.get("jsonrpc") != "2.0":
            return _error_response(InvalidRequest('"jsonrpc" must be "2.0"'), reply_id)
        if not isinstance(method, str):
            return _error_response(InvalidRequest('"method" must be a string'), reply_id)
        if "params" in request and not isinstance(params, (list, dict)):
            return _error_response(InvalidRequest('"params" must be an array or an object'), reply_id)
        try:
            result = self.call(method, params, session)
        except RpcError as exc:
            if req_id is _MISSING:
                return None
            return _error_response(exc, req_id)
        if req_id is _MISSING:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": req_id}

    def _authenticate(self, payload, session):
        if (isinstance(payload, dict) and payload.get("method") == "system.auth"
                and payload.get("jsonrpc") == "2.0"):
            params = payload.get("params")
            if isinstance(params, list) and params:
                given = params[0]
            elif isinstance(params, dict):
                given = params.get("token")
            else:
                given = None
            req_id = payload.get("id")
            if isinstance(given, str) and self.check_token(given):
                session.authenticated = True
                if "id" not in payload:
                    return None
                return {"jsonrpc": "2.0", "result": True, "id": req_id}
            return self._refuse(session, _valid_id(req_id), "invalid token")
        req_id = payload.get("id") if isinstance(payload, dict) else None
        return self._refuse(session, _valid_id(req_id),
                            "authentication required: call system.auth first")

    def _refuse(self, session, req_id, reason):
        session.close_after = True
        return _error_response(Unauthorized(reason), req_id)

    def check_token(self, given):
        """Constant-time comparison with the configured token."""
        return self.token is not None and compare_digest(given.encode(), self.token.encode())


def _valid_id(req_id):
    return req_id if isinstance(req_id, _ID_TYPES) and not isinstance(req_id, bool) else None


def _error_response(exc, req_id):
    return {"jsonrpc": "2.0", "error": exc.to_dict(), "id": req_id}


class Subscribers:
    """Sessions that called ``events.subscribe``, and the fan-out to them.

    :meth:`publish` is installed as a tap on the daemon's event bus: it never
    blocks (each session queues into its own bounded :class:`EventQueue`), so a
    slow subscriber cannot slow the daemon down.
    """

    def __init__(self):
        self._sessions = set()

    def subscribe(self, session, patterns):
        for pattern in patterns:
            if pattern not in session.patterns:
                session.patterns.append(pattern)
        self._sessions.add(session)

    def unsubscribe(self, session, patterns=None):
        if patterns is None:
            session.patterns.clear()
        else:
            session.patterns[:] = [p for p in session.patterns if p not in patterns]
        if not session.patterns:
            self._sessions.discard(session)

    def discard(self, session):
        """Forget a closed session."""
        self._sessions.discard(session)

    def publish(self, name, data, when):
        """Queue event ``name`` for every session with a matching pattern."""
        if not self._sessions:
            return
        event = None
        for session in list(self._sessions):
            for pattern in session.patterns:
                if fnmatchcase(name, pattern):
                    if event is None:
                        event = {"name": name, "data": data, "time": when}
                    session.offer(event)
                    break

    def __len__(self):
        return len(self._sessions)
