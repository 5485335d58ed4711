"""The HTTP and websocket endpoint (docs/reference/http.rst): one gevent pywsgi server on ``websockethandler``.

Routes::

    GET  /rpc         websocket (RFC 6455): JSON-RPC, one JSON text per message, pushes included
    POST /rpc         one JSON-RPC request or batch (Content-Type: application/json)
    POST /RPC2        XML-RPC for every method (see gdaemon.rpc.xmlrpc)
    GET  /            the live dashboard (gdaemon/static/dashboard.html)
    GET  /static/...  its stylesheet and script
    GET  /metrics     Prometheus metrics; GET /healthz: 200 ok / 503 (gdaemon.rpc.metrics)

anything else is 404, a known path with another method 405, ``GET /rpc``
without an upgrade 426.  With ``certfile`` and ``keyfile`` set the endpoint
speaks HTTPS and WSS only.

Limits, the same as the raw socket's (docs/reference/config.rst; docs/reference/rpc.rst, Errors):

- ``socketmaxmessage``: a websocket message (all its fragments) or an HTTP
  body beyond it is refused: ``-32003`` as a message then close code 1009 on
  a websocket; status 413 with a ``-32003`` body over HTTP.  The frame header
  is checked before its payload is read, so memory stays bounded.
- ``sockettimeout``: once the first byte of a websocket message arrived,
  the rest must follow within it, or the connection closes without a reply.
  Over HTTP a request (line, headers and body) must arrive whole within it,
  counted from its first byte, or for a new connection from the accept: a
  slow-loris trickle or an idle stranger is closed quietly (a body too slow
  gets 408).  It also bounds a TLS handshake.
- ``socketidle``: a websocket (or HTTP keep-alive connection) from which
  nothing arrives for this long is closed, unless it subscribed to events.
- A request body the application did not read (a refused request) is not
  swallowed to keep the connection alive: the connection is closed.
- Time slices (:class:`~gdaemon.rpc.endpoint.TimeSlice`, as on the raw
  socket): before each next request of a keep-alive connection.  Requests
  pipelined in one write are read from pywsgi's buffer without waiting, so
  without it one client posting ``worker.status`` back to back kept the
  hub for itself (``daemon.status`` on the unix socket got no answer in 5 s).
- ``socketmaxconnections``: counts every HTTP connection from its accept,
  TLS handshakes and websockets included (websockets are also in
  :attr:`HttpEndpoint.connections`, summed into ``daemon.status``).  When it
  is reached, the newcomer takes the place of a connection that has not
  sent its request head whole (an idle keep-alive connection waiting for its
  next request is one), not finished its TLS handshake, or (a websocket,
  with ``token``) not authenticated: the one that made the least progress
  (docs/reference/rpc.rst, What one client can cost, :class:`~gdaemon.rpc.endpoint.Admission`); when there is none
  it gets ``503`` with a ``-32004`` body at once.  Connections run in a
  bounded greenlet pool, so whatever clients do the descriptors stay bounded,
  and a flood of the HTTP side leaves the unix socket answering.
- Framing is strict (RFC 9112 section 6, docs/reference/rpc.rst, What one client can cost): ``Content-Length`` with
  ``Transfer-Encoding``, more than one ``Content-Length``, one that is not
  plain digits, a ``Transfer-Encoding`` other than ``chunked``, or a chunk
  size that is malformed or larger than ``socketmaxmessage`` gets ``400``
  and the connection is closed: nothing pipelined after it is read.
- ``socketmaxbatch``: a longer batch posted to ``/rpc`` gets ``400`` with one
  ``-32600`` error; over the websocket, one ``-32600`` message.
- ``socketauthtimeout``: with ``token`` set, a websocket not authenticated
  by then gets ``-32001`` and close code 1008; an HTTP request without the
  token gets ``401`` and its connection is closed.

Errors clients cause (bad requests, timeouts, refusals, failed handshakes)
are logged through a :class:`~gdaemon.ratelimit.RateLimitedLog`: once per
kind per interval, with a count of the rest; pywsgi's and gevent-websocket's
own messages about bad requests go through it too.  Nothing here writes to a
stream directly (pywsgi's access lines, its tracebacks through the hub): all
goes through :mod:`logging`, whose formatter escapes client text, so one
record is one line.

Security:

- Websocket upgrades whose ``Origin`` is not in ``websocketorigins`` get 403
  (default: exactly ``http://HOST:PORT`` of ``websockethandler``, plus
  ``https://HOST:PORT`` with TLS; a page opened as ``localhost`` when the
  endpoint is configured as ``127.0.0.1`` is another origin: list it).  A
  request without ``Origin`` (not a browser) is allowed.  The same check
  applies to ``POST`` requests carrying an ``Origin`` (browsers always send
  one on POST), as a second line of defence against cross-site requests;
  the first is that POST bodies must be ``application/json`` or ``text/xml``,
  which a cross-site form cannot send without a CORS preflight we never grant.
- With ``token`` set (docs/reference/rpc.rst, Authentication): a websocket's first message must be
  ``system.auth`` (the engine enforces it, then the socket is closed with
  code 1008).  Every HTTP request carries ``Authorization: Bearer TOKEN``, or
  HTTP Basic with the token as password (what
  ``xmlrpc.client.ServerProxy("http://any:TOKEN@host:port/RPC2")`` sends);
  missing or wrong: status 401 with a ``-32001`` body.  Tokens are compared
  in constant time.

Design: gevent-websocket's handler does the HTTP upgrade handshake; frames
are then read and written here (gevent-websocket's reader has no size limit
and unmasks byte by byte in Python).  Each websocket has a reader greenlet
(the handler's) answering messages in order, and, once it subscribed, a
pusher greenlet writing queued events; a lock keeps frames whole.

Stopping: the listener closes first, idle keep-alive connections at once;
a websocket busy with a request gets :attr:`HttpEndpoint.stop_grace`
seconds to answer it, then each websocket is sent its queued events and a
close frame with code 1001 (going away).

The WSGI application (routes, the dashboard's files, POST handling) is in
:mod:`gdaemon.rpc.routes`; this module is the server: its handler, limits,
connections and websockets.

Fork safety: a forked worker calls :meth:`HttpEndpoint.close_in_child`,
which closes the listener's and every client connection's descriptor without
shutting the sockets down (that would cut the daemon's copies too).
"""

import io
import logging
import socket
import time
from typing import Any, Optional, Set, Type, cast

import gevent

from ..compat.geventwebsocket import WebSocketHandler, handler_of, mark_closed
from ..compat.pywsgi import ChunkCheckingInput, Input, InvalidClientInput, LoggingLogAdapter, WSGIServer
from ..errors import TooManyConnections
from ..process import close_fd
from ..ratelimit import RateLimitedLog
from ..wire.websocket import CloseCode
from .. import inherited
from .endpoint import (Admission, BoundedServer, TimeSlice, Transport, bind_listener, connection_pool,
                       refuse_connection)
from .routes import BODY_READ, DEADLINE, JSON, HttpApplication
from .routes import peer as peer_of
from .websocket import Refuse, WebSocketConnection, error_message

__all__ = ["HttpEndpoint"]

log = logging.getLogger("gdaemon.http")

_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                b"Connection: close\r\n\r\nbad request\n")

class _FramingError(ValueError):
    """A request whose body framing RFC 9112 section 6 does not allow (a smuggling attempt)."""


def check_framing(headers):
    """Raise :class:`_FramingError` unless ``headers`` frame the body in exactly one valid way.

    :param headers: the request's ``email.message.Message`` (pywsgi's ``self.headers``).
    """
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if lengths and encodings:
        raise _FramingError("both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise _FramingError("more than one Content-Length")
    if lengths and not (lengths[0].isdigit() and lengths[0].isascii()):
        raise _FramingError("Content-Length is not plain digits")
    if len(encodings) > 1 or (encodings and encodings[0].strip().lower() != "chunked"):
        raise _FramingError("Transfer-Encoding other than chunked")


class _CountingReader(io.RawIOBase):
    """The raw stream under a connection's buffered reader: counts its slot's progress."""

    def __init__(self, sock, slot):
        super().__init__()
        self._sock, self._slot = sock, slot

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self._sock.recv_into(buffer)
        if not self._slot.settled:
            self._slot.progress += count
        return count


class _BadChunk(BaseException):
    """A malformed or oversized chunk in a chunked body: 400, then close.

    A BaseException, so that the application's ``except Exception`` (which
    answers 500 with a traceback: a bug of ours) lets it through to
    :meth:`_Handler.run_application`.
    """


class _StrictInput(ChunkCheckingInput):
    """pywsgi's request body reader, refusing a chunk larger than the largest body we take.

    pywsgi accepts any 16-digit chunk size, then tries to allocate it (a 500
    and a traceback); a chunk size we refuse, or one pywsgi finds malformed,
    is a client error: :class:`_BadChunk`.
    """

    max_chunk = 1048576

    def checked_chunk_length(self, length):
        if length > self.max_chunk:
            self._chunked_input_error = True
            raise InvalidClientInput("chunk size %d exceeds %d" % (length, self.max_chunk))
        return length

    def _chunked_read(self, length=None, use_readline=False):
        try:
            # gevent's private method, missing from its stubs.
            return super()._chunked_read(length, use_readline)  # type: ignore[misc]
        except InvalidClientInput as exc:
            raise _BadChunk(" ".join(str(a) for a in exc.args)) from None


class _HeadTimeout(BaseException):
    """The request line and headers did not arrive within ``sockettimeout``.

    A BaseException, so that pywsgi's ``except Exception`` (which answers 400
    and logs) lets it through to :meth:`_Handler.handle`, which closes quietly.
    """


class _Handler(WebSocketHandler):
    """pywsgi handler: time limits, fd bookkeeping, and the checks due before an upgrade."""

    #: True while waiting for the next request (stop() may then close at once).
    waiting = False
    #: Its :class:`~gdaemon.rpc.endpoint.Slot`: settled while a request whose
    #: head arrived whole is served; a new connection may take its place otherwise.
    slot = None
    #: ``time.monotonic()`` by which the current request must have arrived whole.
    deadline: Optional[float] = None
    _head_timer = None
    #: pywsgi's request body (replaced by a :class:`_StrictInput` or an empty one).
    wsgi_input: Any

    def handle(self):
        endpoint = self.server.endpoint
        # The pool's greenlet: a gevent Greenlet (killable), not a raw one.
        self.greenlet = cast(gevent.Greenlet, gevent.getcurrent())
        # The first request must arrive within sockettimeout of the
        # connection (after its TLS handshake): an idle stranger does not
        # hold a slot for socketidle seconds.
        self.deadline = time.monotonic() + endpoint.config["sockettimeout"]
        self.served = 0
        self.time_slice = TimeSlice()
        endpoint._handlers.add(self)
        try:
            # Responses and frames are written whole; don't let Nagle hold
            # back the next one (a reply followed at once by an event).
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()
        except _HeadTimeout:
            endpoint.client_errors.log("head-timeout", logging.INFO,
                                       "closing %s: request headers incomplete after %ss",
                                       _peer_of(self.client_address), endpoint.config["sockettimeout"])
        finally:
            self._stop_head_timer()
            endpoint._handlers.discard(self)

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        finally:
            self._stop_head_timer()
            self.served += 1

    def read_requestline(self):
        endpoint = self.server.endpoint
        if endpoint.closing:
            return ""  # no more requests on this keep-alive connection
        cfg = endpoint.config
        if self.served:
            # Keep-alive: idle limit while waiting, then the request's own limit.
            self.waiting = True
            if self.slot is not None:
                self.slot.unsettle()
            try:
                # Between two requests (a newcomer may take this one's place,
                # a stop may close it): the next may be buffered already
                # (pipelined), and must wait until the others had their turn.
                self.time_slice.check()
                if endpoint.closing:
                    return ""
                self.socket.settimeout(cfg["socketidle"])
                if not self.rfile.peek(1):
                    return ""
            except socket.timeout:
                return ""
            finally:
                self.waiting = False
            self.deadline = time.monotonic() + cfg["sockettimeout"]
        # The request line and headers, however slowly they trickle, must be
        # complete by the deadline (a socket timeout alone restarts with
        # every byte: the slow-loris attack).
        assert self.deadline is not None  # handle() set it before the first request
        self._head_timer = gevent.Timeout(max(0.0, self.deadline - time.monotonic()), _HeadTimeout)
        self._head_timer.start()
        self.socket.settimeout(cfg["sockettimeout"])
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            result = super().read_request(raw_requestline)
        finally:
            self._stop_head_timer()
        if self.slot is not None:
            self.slot.settled = True  # the head is in whole: this connection is being served
        return result

    def _stop_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.close()
            self._head_timer = None

    def MessageClass(self, *args):  # noqa: N802 (pywsgi's name)
        # Checked as parsed, before pywsgi drops a Content-Length beside
        # "chunked" or reads "+49" as 49: a ValueError here is pywsgi's 400.
        headers = super().MessageClass(*args)
        check_framing(headers)
        return headers

    def get_environ(self):
        environ = super().get_environ()
        environ[DEADLINE] = self.deadline
        if environ.get("wsgi.input") is self.wsgi_input:
            self.wsgi_input = _StrictInput(self.rfile, self.content_length, socket=self.wsgi_input.socket,
                                           chunked_input=self.wsgi_input.chunked_input)
            self.wsgi_input.max_chunk = self.server.endpoint.config["socketmaxmessage"]
            environ["wsgi.input"] = self.wsgi_input
        return environ

    def handle_error(self, t, v, tb):
        # pywsgi hands a failed request to the hub, which prints the
        # traceback on stderr, past the log's formatter: log it here instead.
        del tb
        if issubclass(t, (gevent.GreenletExit, SystemExit)):
            self.close_connection = True
            raise v  # killed (stop(), eviction): not an error, and this greenlet is done
        log.error("request %s from %s failed", self.requestline and self.requestline[:200],
                  _peer_of(self.client_address), exc_info=(t, v, v.__traceback__))
        self._send_error_response_if_possible(500)
        self.close_connection = True

    def _handle_client_error(self, ex):
        # pywsgi prints a traceback for some of these and logs each as an
        # ERROR; a malformed request is the client's problem, not ours.
        self.server.endpoint.client_errors.log(
            "bad-request", logging.INFO, "bad HTTP request from %s: %s",
            _peer_of(self.client_address), str(ex)[:200] or type(ex).__name__)
        return ("400", _BAD_REQUEST)

    def run_application(self):
        try:
            super().run_application()
        except _BadChunk as exc:
            self._handle_client_error(exc)
            self.close_connection = True
            self._send_error_response_if_possible(400)
        finally:
            body = self.wsgi_input
            if (body is not None and not self.environ.get(BODY_READ)
                    and (body.position < (body.content_length or 0) or body.chunked_input)):
                # pywsgi would read and discard the whole unread body (of any
                # size) to keep the connection alive; close it instead.
                # An empty body: nothing reads the (absent) rfile.
                self.wsgi_input = Input(None, 0)  # type: ignore[arg-type]
                self.close_connection = True

    def upgrade_websocket(self):
        environ = self.environ
        if (environ.get("HTTP_UPGRADE", "").lower() != "websocket" or environ.get("PATH_INFO") != "/rpc"
                or environ.get("REQUEST_METHOD") != "GET"):
            return None  # not for us: the application answers it as plain HTTP
        origin = environ.get("HTTP_ORIGIN")
        endpoint = self.server.endpoint
        if not endpoint.origin_allowed(origin):
            endpoint.client_errors.log("origin", logging.WARNING,
                                       "refused a websocket from %s: origin %r not allowed",
                                       environ.get("REMOTE_ADDR"), origin)
            body = b"origin not allowed\n"
            self.start_response("403 Forbidden", [("Content-Type", "text/plain"),
                                                  ("Content-Length", str(len(body))),
                                                  ("Connection", "close")])
            return [body]
        return super().upgrade_websocket()

    def log_request(self):
        log.debug("%s", self.format_request())


class _ClientErrorLog:
    """What gevent-websocket (``server.logger``) and pywsgi (``error_log``) log
    about bad requests, rate-limited: debug lines pass, the rest are counted."""

    def __init__(self, limiter):
        self._limiter = limiter

    def debug(self, msg, *args):
        log.debug(msg, *args)

    def _limited(self, level, msg, *args):
        self._limiter.log("handshake", level, msg, *args)

    def info(self, msg, *args):
        self._limited(logging.INFO, msg, *args)

    def warning(self, msg, *args):
        self._limited(logging.INFO, msg, *args)

    error = warning

    def write(self, message):
        self._limiter.log("pywsgi", logging.INFO, "%s", message.rstrip())

    def writelines(self, lines):  # wsgi.errors is this object too (PEP 3333)
        for line in lines:
            self.write(line)

    def flush(self):
        pass


class _Server(BoundedServer, WSGIServer):
    """A WSGIServer whose TLS handshakes are bounded in time and quiet when they fail,
    and whose connections are bounded in number (``socketmaxconnections``, with eviction)."""

    #: The endpoint serving, set by :meth:`HttpEndpoint.start` before the server starts.
    endpoint: "HttpEndpoint"
    handler_class: Type[_Handler]
    #: gevent-websocket's handler logs through it.
    logger: Any

    def handle_slot(self, sock, address, slot):
        # Bytes read while unsettled are its progress (a slow request head, a
        # websocket before system.auth): counted under the buffered reader.
        handler = self.handler_class(sock, address, self, rfile=io.BufferedReader(_CountingReader(sock, slot)))
        handler.slot = slot
        handler.handle()

    def refusal(self, sock, address):
        self.endpoint.refuse(sock, address)


class HttpEndpoint(Transport):
    """Serves the daemon on ``websockethandler``: websocket, HTTP JSON-RPC, XML-RPC, dashboard.

    :param daemon: the :class:`~gdaemon.daemon.Daemon` (its config, engine,
        event bus and subscribers are used).
    """

    #: Seconds stop() lets a websocket finish the request it is handling.
    stop_grace = 2.0

    def __init__(self, daemon):
        self.daemon = daemon
        self.config = daemon.config
        self.engine = daemon.engine
        self.events = daemon.events
        self.fanout = daemon.subscribers
        self.address = self.config.websocket_address
        #: Open websocket connections (counted by ``daemon.status``).
        self.connections: Set[Any] = set()
        self.listener: Optional[socket.socket] = None
        self.ssl_context = None
        self.origins = self._allowed_origins()
        #: Set by stop(): keep-alive connections take no more requests.
        self.closing = False
        self._server: Optional[_Server] = None
        self._handlers: Set[_Handler] = set()  # every connection's pywsgi handler (stop, close_in_child, admit)
        self.application = HttpApplication(self)
        #: Who is counted against ``socketmaxconnections`` (set by start()).
        self.admission: Optional[Admission] = None
        #: Errors clients cause (timeouts, bad requests, refusals), logged
        #: once per kind per interval (:class:`~gdaemon.ratelimit.RateLimitedLog`).
        self.client_errors = RateLimitedLog(log)

    def _allowed_origins(self):
        configured = self.config["websocketorigins"]
        if configured is not None:
            return {o.rstrip("/").lower() for o in configured}
        host = self.address.host.lower()
        host = "[%s]" % host if ":" in host else host
        port = self.address.port
        schemes = ["http"]
        if self.config["certfile"] and self.config["keyfile"]:
            schemes.append("https")
        origins = set()
        for scheme in schemes:
            origins.add("%s://%s:%d" % (scheme, host, port))
            if port == {"http": 80, "https": 443}[scheme]:
                origins.add("%s://%s" % (scheme, host))  # browsers omit a default port
        return origins

    def origin_allowed(self, origin):
        """True for a request without ``Origin`` or with an allowed one."""
        return origin is None or origin.rstrip("/").lower() in self.origins

    # -- lifecycle ------------------------------------------------------------

    def bind(self):
        """Load the TLS context (if any) and open the listening socket; raises ProcessError."""
        if self.config["certfile"] and self.config["keyfile"]:
            from ..tls import server_context
            self.ssl_context = server_context(self.config["certfile"], self.config["keyfile"])
        adopted = inherited.take("http", self.address)
        if adopted is not None:
            self.listener = adopted.socket()
            self.listener.setblocking(False)
            return
        self.listener = bind_listener(self.address)

    def start(self):
        """Start serving."""
        if self.listener is None:
            self.bind()
        assert self.listener is not None  # bind() bound it or raised
        kwargs = {"ssl_context": self.ssl_context} if self.ssl_context is not None else {}
        client_log = _ClientErrorLog(self.client_errors)
        server = _Server(self.listener, self.application, spawn=connection_pool(self.config),
                         handler_class=_Handler,
                         log=LoggingLogAdapter(log, logging.DEBUG), error_log=client_log,
                         # given, so pywsgi does not resolve the host name (a DNS lookup)
                         environ={"SERVER_NAME": self.address.host, "SERVER_PORT": str(self.address.port)},
                         **kwargs)
        server.endpoint = self
        self.admission = Admission(self.config["socketmaxconnections"])
        server.set_admission(self.admission)
        server.handshake_timeout = self.config["sockettimeout"]
        server.logger = client_log  # gevent-websocket's handler logs through server.logger
        server.start()
        self._server = server
        log.info("HTTP endpoint on %s://%s:%d/", "https" if self.ssl_context else "http",
                 self.address.host, self.address.port)

    def refuse(self, sock, address):
        """``socketmaxconnections`` reached, every connection settled: ``503``, then close.

        The body is a ``-32004`` error; not a byte of the request is read.
        """
        limit = self.config["socketmaxconnections"]
        self.client_errors.log("too-many", logging.WARNING,
                               "refused a connection from %s: too many connections (limit %d)",
                               _peer_of(address), limit)
        body = error_message(TooManyConnections("too many connections (limit %d)" % limit))
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Retry-After: 1\r\nConnection: close\r\n\r\n" % (JSON, len(body)))
        refuse_connection(sock, head.encode("ascii") + body)

    def stop(self, timeout=None):
        """Close the listener, let busy websockets finish, close everything."""
        self.close_listener()
        self.closing = True
        for handler in list(self._handlers):
            if handler.waiting:  # an idle keep-alive connection: nothing to finish
                handler.greenlet.kill(block=False)
        grace = self.stop_grace if timeout is None else timeout
        self.drain_connections(grace)
        if self._server is not None:
            # Plain HTTP requests still running get a short grace, then are killed.
            self._server.stop(timeout=min(grace, 1.0))
            self._server = None
        self.client_errors.flush()

    def close_in_child(self):
        """In a forked worker: drop our descriptors without touching the sockets' state."""
        socks = [s for s in (getattr(h, "socket", None) for h in self._handlers) if s is not None]
        if self.listener is not None:
            socks.append(self.listener)
        for sock in socks:
            try:
                close_fd(sock.detach())
            except (OSError, ValueError, AttributeError):
                pass  # already closed: nothing of the daemon's to drop
        self.listener = None
        self._server = None
        self._handlers = set()
        self.connections = set()

    # -- websockets -----------------------------------------------------------

    def serve_websocket(self, environ):
        """Serve the frames of an upgraded websocket connection until it closes."""
        ws = environ["wsgi.websocket"]
        # From here on we speak the frames ourselves; this keeps gevent-websocket
        # from writing a close frame of its own when the request ends.
        mark_closed(ws)
        peer = peer_of(environ)
        handler = handler_of(ws)
        slot = getattr(handler, "slot", None)
        if slot is not None and self.engine.token is not None:
            slot.unsettle()  # evictable again until it authenticates
        conn = WebSocketConnection(self, handler, peer, slot)
        self.connections.add(conn)
        self.events.emit("rpc.connect", peer=peer, transport="websocket")
        try:
            conn.serve()
        except Refuse as exc:
            self.client_errors.log(("websocket", exc.code), logging.INFO,
                                   "closing websocket %s: %s", peer, exc.reason)
            conn.refuse(exc)
            conn.linger()
        except (OSError, EOFError) as exc:
            log.debug("websocket %s: %r", peer, exc)
        except gevent.GreenletExit:
            if slot is not None and slot.evicted:
                log.debug("closed websocket %s (not authenticated) to make room for a new connection", peer)
                conn.sock.settimeout(0.1)
                conn.send_close(CloseCode.TRY_LATER, "evicted: not authenticated")
                return
            # stop(): deliver what is queued, then say goodbye.
            conn.sock.settimeout(0.5)
            try:
                conn.flush_events()
            except OSError:
                pass
            conn.send_close(CloseCode.GOING_AWAY, "daemon stopping")
        finally:
            self.connections.discard(conn)
            self.fanout.discard(conn.session)
            conn.close()
            self.events.emit("rpc.disconnect", peer=peer, transport="websocket")


def _peer_of(address):
    if isinstance(address, tuple) and len(address) >= 2:
        return "%s:%s" % (address[0], address[1])
    return str(address)
