"""The JSON-RPC 2.0 engine: bytes in, bytes out, no I/O.

Wire format (docs/reference/rpc.rst, Framing): one JSON text per line, UTF-8.  A request is an
object ``{"jsonrpc": "2.0", "method": str, "params": array|object, "id": ...}``
or a batch (a non-empty array of them); the response is one line, an object
``{"jsonrpc": "2.0", "result": ..., "id": ...}`` or
``{"jsonrpc": "2.0", "error": {"code", "message"[, "data"]}, "id": ...}``,
or an array for a batch.  Requests without ``id`` are notifications and get no
response; a batch of only notifications gets none.

Error envelope (docs/reference/rpc.rst, Errors): ``-32700`` parse error (id null), ``-32600``
invalid request (id null unless the request carried a valid id), ``-32601``,
``-32602`` (names the param), ``-32603`` internal error (any exception a
handler raises that is not an :class:`~gdaemon.errors.RpcError`: the
traceback is logged, never sent).

Bounded cost (docs/reference/config.rst, ``socketmaxbatch``; issue 8): a batch of more than
:attr:`Session.max_batch` requests gets one ``-32600`` (id null) naming the
limit, and nothing of it runs.  The length is checked *before* the line is
decoded (:func:`batch_exceeds`): a 1 MB line ``[1,1,1,...]`` would otherwise
become half a million Python objects and a 47 MB reply.  The same limit
bounds the calls of one ``system.multicall`` (``-32602``).  Before a session
authenticated, a batch is refused without being decoded at all.

Bounded replies (docs/reference/rpc.rst, What one client can cost, ``socketmaxreply``; issue 14): a reply, one
response or all the responses of one batch, is at most
:attr:`Engine.max_reply` bytes.  :meth:`Engine.reply` encodes a batch's
responses one at a time as they come, never all of them first, and keeps
room for the small ``-32003`` error each call still to come may need
(:class:`ReplyBudget`).  Once a response does not fit, it is replaced by
that error (its call ran, its result is dropped); the batch's later calls
with an id are not run and get the same error, its notifications still run
(they add nothing to the reply).  A single response over the limit is
replaced by the error too.  So a batch of a hundred ``daemon.logtail(10000)``
costs the daemon at most about twice ``socketmaxreply`` in memory, not the
658 MB it used to.  ``system.multicall`` applies the same budget to its
results (:mod:`gdaemon.rpc.builtin`), and the XML-RPC bridge checks the size
of its document (:mod:`gdaemon.rpc.xmlrpc`).

Subscriptions (docs/reference/rpc.rst, What one client can cost): at most :attr:`Subscribers.max_patterns`
distinct patterns per session, each at most
:attr:`Subscribers.max_pattern_length` characters, compiled once when
subscribed; an event costs one regular-expression match per pattern of
each subscriber, never a quadratic de-duplication.

The engine owns no socket: transports (:mod:`gdaemon.rpc.server`, the HTTP
endpoint) feed it lines and write what it returns.  That keeps it fuzzable
(see tests/unit/test_protocol_properties.py).  Handlers may block
cooperatively (``worker.restart`` waits for the new worker); the transport
calls the engine from the connection's own greenlet.
"""

import collections
from fnmatch import translate as _glob_to_regex
import functools
import json
import logging
import re
from typing import Any, Deque
from time import perf_counter

from gevent import sleep as _cooperate

from ..errors import (InternalError, InvalidParams, InvalidRequest, MessageTooLarge,
                      MethodNotFound, ParseError, RpcError, Unauthorized)
from ..ratelimit import RateLimitedLog
from ..wire import codec

try:
    # The constant-time comparison hmac.compare_digest is built on, without
    # hmac's import of hashlib and OpenSSL (a few MB of resident memory).
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - other interpreters
    from hmac import compare_digest  # type: ignore[no-redef]  # the same function

__all__ = ["Engine", "Session", "EventQueue", "Subscribers", "ReplyBudget", "batch_exceeds",
           "DEFAULT_MAX_REPLY"]

log = logging.getLogger("gdaemon.rpc")

_PARSE_ERROR = {"code": -32700, "message": "Parse error"}
#: ``socketmaxreply``'s default: 16 MiB.
DEFAULT_MAX_REPLY = 16 * 1024 * 1024
_ID_TYPES = (str, int, float, type(None))
_MISSING = object()
_MULTICALL = "system.multicall"

# Both match the empty string: their match() is never None (the
# "type: ignore[union-attr]" below say so to mypy, at no cost per line).
_BLANK = re.compile(rb"[ \t\r\n]*")
_BLANK_STR = re.compile(r"[ \t\r\n]*")
_scan_value = json.JSONDecoder().raw_decode
_SCAN_WINDOW = 65536


def _first_byte(line):
    """The first non-blank byte of ``line`` (bytes), or ``b""``."""
    start = _BLANK.match(line).end()  # type: ignore[union-attr]
    return line[start:start + 1]


def batch_exceeds(line, limit):
    """True when ``line`` (bytes) is a JSON array of more than ``limit`` values.

    Nothing of the array is kept: its values are scanned one at a time by
    the standard library's C scanner and dropped, and the scan stops at
    value ``limit + 1``, decoding only as much of the line as that needs
    (64 KB, then four times more each round).  Fast paths: a line that does
    not start with ``[``, or with fewer than ``limit`` commas in all, cannot
    be such a batch.  A line that stops being valid JSON before the count is
    passed is left to the real parser (which reports ``-32700``); one that is
    still valid JSON past ``limit + 1`` values is refused without reading
    the rest.
    """
    if _first_byte(line) != b"[" or line.count(b",") < limit:
        return False
    size = _SCAN_WINDOW
    while True:
        whole = size >= len(line)
        if whole:
            chunk = line
        else:
            # Cut before a UTF-8 continuation byte, never inside a character.
            cut = size
            while cut > size - 4 and line[cut] & 0xC0 == 0x80:
                cut -= 1
            chunk = line[:cut]
        try:
            text = bytes(chunk).decode("utf-8")
        except UnicodeDecodeError:
            return False
        verdict = _more_values_than(text, limit, whole)
        if verdict is not None:
            return verdict
        size *= 4


def _more_values_than(text, limit, whole):
    """Count the values of the array ``text`` opens: True past ``limit``,
    False when it ends first (or is not JSON), None when ``text`` (a prefix,
    unless ``whole``) ran out first."""
    idx = _BLANK_STR.match(text, _BLANK_STR.match(text).end() + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", idx):
        return False
    count = 0
    while True:
        try:
            _, idx = _scan_value(text, idx)
        except (ValueError, RecursionError):
            return False if whole else None
        count += 1
        if count > limit:
            return True
        idx = _BLANK_STR.match(text, idx).end()  # type: ignore[union-attr]
        if idx >= len(text):
            return False if whole else None
        if text[idx] != ",":
            return False  # "]": at most limit values (or not JSON)
        idx = _BLANK_STR.match(text, idx + 1).end()  # type: ignore[union-attr]


class EventQueue:
    """A bounded queue of pushed events that drops the oldest when full.

    :param maxlen: events kept before the oldest are dropped.
    """

    def __init__(self, maxlen=1000):
        self._events: Deque[Any] = collections.deque()
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
    #: Most requests in one batch (``socketmaxbatch``; the transport sets it).
    max_batch = 1000

    def __init__(self, peer="", transport="socket", max_batch=None):
        self.peer = peer
        self.transport = transport
        if max_batch is not None:
            self.max_batch = max_batch
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


class ReplyBudget:
    """The bytes one reply may still take (docs/reference/rpc.rst, What one client can cost, ``socketmaxreply``).

    A reply is made of parts (a batch's responses, a multicall's results),
    each of which may have to be replaced by a small stand-in error when it
    does not fit.  Room for every part's stand-in is reserved up front, so
    the stand-ins always fit and the whole reply never passes ``limit``.

    :param limit: bytes the parts may take in all.
    :param reserved: bytes kept for the stand-ins of all the parts to come.
    """

    def __init__(self, limit, reserved=0):
        self.limit = limit
        self.used = 0
        self.reserved = reserved
        #: True once a part did not fit: the parts after it are not even made.
        self.over = False

    def take(self, size, reserve=0):
        """Count a part of ``size`` bytes; True when it fits.

        ``reserve`` is this part's share of the reserved room: released when
        the part fits, spent on its stand-in when it does not (then nothing
        else is counted and :attr:`over` is set).
        """
        self.reserved -= reserve
        if not self.over and self.used + size + self.reserved <= self.limit:
            self.used += size
            return True
        self.over = True
        self.used += reserve
        return False

    def release(self, reserve):
        """A part that adds nothing (a notification) gives its reserve back."""
        self.reserved -= reserve


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
        #: Where errors a client caused are logged, once per kind per interval.
        self.client_errors = RateLimitedLog(log)

    #: Largest reply in bytes (``socketmaxreply``; set by
    #: :func:`~gdaemon.rpc.builtin.register_builtins` from the daemon's config).
    max_reply = DEFAULT_MAX_REPLY

    # -- entry points -------------------------------------------------------

    def handle_line(self, line, session):
        """Handle one framed line (bytes-like or str); return response bytes or ``None``."""
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogatepass")
        if line[:1] != b"{" and not _first_byte(line):  # blank (no copy, unlike strip())
            return None
        payload, refusal = self.decode(line, session)
        if refusal is not None:
            return codec.dumps(refusal)
        return self.reply(payload, session)

    def reply(self, payload, session):
        """Handle a decoded request or batch; return the encoded reply (bytes) or ``None``.

        The reply is at most :attr:`max_reply` bytes (see the module docstring).
        """
        if self.token is not None and not session.authenticated:
            response = self._authenticate(payload, session)
            return None if response is None else self.encode(response, session)
        if isinstance(payload, list):
            if not payload:
                return codec.dumps(_error_response(InvalidRequest("empty batch"), None))
            if len(payload) > session.max_batch:  # decoded elsewhere (XML-RPC, a caller)
                return codec.dumps(_error_response(InvalidRequest(
                    "batch of more than %d requests (socketmaxbatch): nothing was run"
                    % session.max_batch), None))
            return self._reply_batch(payload, session)
        response = self._handle_one(payload, session)
        if response is None:
            return None
        data = self.encode(response, session)
        if len(data) > self.max_reply:
            self._log_too_large(session)
            data = codec.dumps(self.too_large_response(response.get("id"), ran=True))
        return data

    def encode(self, response, session):
        """The wire bytes of a response object (never raises)."""
        try:
            return codec.dumps(response)
        except Exception as exc:
            # With every unknown type stringified, what is left is nesting
            # deeper than the encoder goes: a client echoing a bomb, mostly.
            # Not worth a traceback per request.
            self.client_errors.log("encode", logging.WARNING, "cannot encode the response to %s: %r",
                                   session.peer, exc)
            return codec.dumps(_error_response(InternalError("result is not JSON-serialisable"),
                                               response.get("id") if isinstance(response, dict) else None))

    def decode(self, line, session):
        """Decode one request line: ``(payload, None)``, or ``(None, error response)``
        for a parse error, a batch longer than ``session.max_batch``, or anything
        but ``system.auth`` before the session authenticated."""
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogatepass")
        unauthenticated = self.token is not None and not session.authenticated
        # A line that starts with "{" (a single request, the common case) is no batch.
        batch = line[:1] != b"{" and _first_byte(line) == b"["
        if unauthenticated and batch:
            return None, self._refuse(session, None, "authentication required: call system.auth first")
        if batch and batch_exceeds(line, session.max_batch):
            return None, _error_response(InvalidRequest(
                "batch of more than %d requests (socketmaxbatch): nothing was run"
                % session.max_batch), None)
        try:
            return codec.loads(line), None
        except codec.IntegerTooLong as exc:
            # docs/reference/rpc.rst, Framing: say which limit, not just "Parse error".
            if unauthenticated:
                return None, self._refuse(session, None, "authentication required")
            return None, _error_response(ParseError("Parse error: %s" % exc), None)
        except ValueError:
            if unauthenticated:
                return None, self._refuse(session, None, "authentication required")
            return None, {"jsonrpc": "2.0", "error": _PARSE_ERROR, "id": None}

    def too_large_response(self, req_id, ran):
        """The ``-32003`` response standing in for a call whose reply does not fit
        in :attr:`max_reply` (``ran``: the call ran and its result was dropped;
        else it was not run)."""
        return _error_response(MessageTooLarge(
            "reply would exceed %d bytes (socketmaxreply): %s"
            % (self.max_reply, "result dropped" if ran else "call not run")), _valid_id(req_id))

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
        if name == _MULTICALL:
            _check_multicall(params, session.max_batch)
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

    def _reply_batch(self, payload, session):
        """The encoded reply to a batch, encoded one response at a time within
        :attr:`max_reply` (see the module docstring)."""
        # Room for the -32003 error each request may need instead of its
        # response, and its comma.
        base = max(len(codec.dumps(self.too_large_response(None, ran))) for ran in (False, True)) + 1
        reserves = [base + (len(codec.dumps(item["id"])) - 4 if isinstance(item, dict)
                            and _valid_id(item.get("id")) is not None else 0)
                    for item in payload]
        budget = ReplyBudget(self.max_reply - 2, sum(reserves))  # 2: the brackets
        parts = []
        for item, reserve in zip(payload, reserves):
            if budget.over and isinstance(item, dict) and "id" in item and "method" in item:
                # Past the limit, a call is not run at all.
                budget.take(0, reserve)
                parts.append(codec.dumps(self.too_large_response(item["id"], ran=False)))
                continue
            response = self._handle_one(item, session)
            if response is None:  # a notification adds nothing to the reply
                budget.release(reserve)
                continue
            data = self.encode(response, session)
            was_over = budget.over
            if not budget.take(len(data) + 1, reserve):
                if not was_over:
                    self._log_too_large(session)
                data = codec.dumps(self.too_large_response(response.get("id"), ran=True))
            parts.append(data)
        if not parts:
            return None
        return b"[" + b",".join(parts) + b"]"

    def _log_too_large(self, session):
        self.client_errors.log("reply-too-large", logging.INFO,
                               "reply to %s would exceed %d bytes (socketmaxreply): "
                               "answered -32003 instead", session.peer, self.max_reply)

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
        """Constant-time comparison with the configured token.

        Anything but a string is never the token; nor is a string that is not
        it, lone surrogates (``"\\ud800"``, which JSON allows) included.
        """
        if self.token is None or not isinstance(given, str):
            return False
        return compare_digest(given.encode("utf-8", "surrogatepass"),
                              self.token.encode("utf-8", "surrogatepass"))


def _check_multicall(params, limit):
    """``system.multicall`` is a batch too: refuse more than ``limit`` calls."""
    if isinstance(params, list):
        calls = params[0] if params else None
    elif isinstance(params, dict):
        calls = params.get("calls")
    else:
        calls = None
    if isinstance(calls, list) and len(calls) > limit:
        raise InvalidParams("calls: more than %d calls in one system.multicall (socketmaxbatch)"
                            % limit)


def _valid_id(req_id):
    return req_id if isinstance(req_id, _ID_TYPES) and not isinstance(req_id, bool) else None


def _error_response(exc, req_id):
    return {"jsonrpc": "2.0", "error": exc.to_dict(), "id": req_id}


class Subscribers:
    """Sessions that called ``events.subscribe``, and the fan-out to them.

    :meth:`publish` is installed as a tap on the daemon's event bus: it never
    blocks (each session queues into its own bounded :class:`EventQueue`), so a
    slow subscriber cannot slow the daemon down.

    Bounded work (docs/reference/rpc.rst, What one client can cost): a session holds at most :attr:`max_patterns`
    distinct patterns of at most :attr:`max_pattern_length` characters; each
    is compiled once, when subscribed, so an event costs one match per
    pattern of each subscriber.  (Issue 14: 60,000 patterns were
    de-duplicated in quadratic time, 12 s of a blocked hub, then matched
    with :func:`fnmatch.fnmatchcase` through its bounded cache, seconds per
    event.)
    """

    #: Most distinct patterns one session may hold (docs/reference/rpc.rst, What one client can cost).
    max_patterns = 64
    #: Longest pattern accepted, in characters: compiling a glob costs time
    #: in its length (a 200 KB one, seconds), and event names are short.
    max_pattern_length = 256

    def __init__(self):
        self._sessions = set()
        self._matchers = {}  # session -> {pattern: compiled match}

    def subscribe(self, session, patterns):
        """Add ``patterns`` (a list of strings) to ``session``'s.

        :raises InvalidParams: past :attr:`max_patterns` distinct patterns in
            all, or a pattern longer than :attr:`max_pattern_length`; the
            session's patterns are then left as they were.
        """
        matchers = self._matchers.get(session, {})
        new = [p for p in dict.fromkeys(patterns) if p not in matchers]
        if len(matchers) + len(new) > self.max_patterns:
            raise InvalidParams("invalid param 'patterns': more than %d distinct patterns per "
                                "connection (%d asked)" % (self.max_patterns, len(matchers) + len(new)))
        for pattern in new:
            if len(pattern) > self.max_pattern_length:
                raise InvalidParams("invalid param 'patterns': a pattern longer than %d characters"
                                    % self.max_pattern_length)
        compiled = {}
        for pattern in new:
            compiled[pattern] = _compile_glob(pattern)
            # A compile costs up to a few ms: let the others run in between.
            # (Only this session's own greenlet adds to or discards it, so
            # it cannot be discarded meanwhile; killed, it adds nothing.)
            _cooperate(0)
        matchers = self._matchers.setdefault(session, {})
        matchers.update(compiled)
        session.patterns[:] = list(matchers)
        if matchers:
            self._sessions.add(session)

    def unsubscribe(self, session, patterns=None):
        """Drop ``patterns`` (all when ``None``) from ``session``'s."""
        matchers = self._matchers.get(session, {})
        if patterns is None:
            matchers.clear()
        else:
            for pattern in patterns:
                matchers.pop(pattern, None)
        session.patterns[:] = list(matchers)
        if not matchers:
            self.discard(session)

    def discard(self, session):
        """Forget a closed session."""
        self._sessions.discard(session)
        self._matchers.pop(session, None)

    def publish(self, name, data, when):
        """Queue event ``name`` for every session with a matching pattern."""
        if not self._sessions:
            return
        event = None
        for session in list(self._sessions):
            for match in self._matchers.get(session, {}).values():
                if match(name) is not None:
                    if event is None:
                        event = {"name": name, "data": data, "time": when}
                    session.offer(event)
                    break

    def __len__(self):
        return len(self._sessions)


@functools.lru_cache(maxsize=1024)
def _compile_glob(pattern):
    """The ``match`` of glob ``pattern`` (:func:`fnmatch.fnmatchcase`'s semantics)."""
    return re.compile(_glob_to_regex(pattern)).match
