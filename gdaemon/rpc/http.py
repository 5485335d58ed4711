"""The HTTP and websocket endpoint (SPEC 9): one gevent pywsgi server on ``websockethandler``.

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

Limits, the same as the raw socket's (SPEC 3, 4.2):

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
  nothing arrives for this long is closed.
- A request body the application did not read (a refused request) is not
  swallowed to keep the connection alive: the connection is closed.
- ``socketmaxconnections``: counts every HTTP connection, websockets
  included (websockets are also in :attr:`HttpEndpoint.connections`, summed
  into ``daemon.status``).  When it is reached, an idle keep-alive connection
  is closed to make room, or else the newcomer gets ``503`` with a
  ``-32004`` body at once (:meth:`HttpEndpoint.admit`).  Connections run in a
  bounded greenlet pool, so whatever clients do the descriptors stay bounded,
  and a flood of the HTTP side leaves the unix socket answering.
- ``socketmaxbatch``: a longer batch posted to ``/rpc`` gets ``400`` with one
  ``-32600`` error; over the websocket, one ``-32600`` message.
- ``socketauthtimeout``: with ``token`` set, a websocket not authenticated
  by then gets ``-32001`` and close code 1008; an HTTP request without the
  token gets ``401`` and its connection is closed.

Errors clients cause (bad requests, timeouts, refusals, failed handshakes)
are logged through a :class:`~gdaemon.ratelimit.RateLimitedLog`: once per
kind per interval, with a count of the rest; pywsgi's and gevent-websocket's
own messages about bad requests go through it too.

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
- With ``token`` set (SPEC 4.4): a websocket's first message must be
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

Fork safety: a forked worker calls :meth:`HttpEndpoint.close_in_child`,
which closes the listener's and every client connection's descriptor without
shutting the sockets down (that would cut the daemon's copies too).
"""

import base64
import logging
import os
import socket
import time

import gevent
from gevent.pywsgi import Input, LoggingLogAdapter, WSGIServer
from geventwebsocket.handler import WebSocketHandler

from ..errors import MessageTooLarge, RpcError, TooManyConnections, Unauthorized
from ..process import close_fd
from ..ratelimit import RateLimitedLog
from ..tls import BoundedHandshake
from ..wire import codec
from ..wire.websocket import CloseCode
from .endpoint import Transport, bind_listener, connection_pool, refuse_connection
from .protocol import Session
from .websocket import Refuse, WebSocketConnection, error_message

__all__ = ["HttpEndpoint"]

log = logging.getLogger("gdaemon.http")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon"}
_JSON = "application/json"
_BODY_READ = "gdaemon.body_read"   # environ key: the application consumed the request body
_DEADLINE = "gdaemon.deadline"     # environ key: time.monotonic() by which the body must be in
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                b"Connection: close\r\n\r\nbad request\n")
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]
# The dashboard loads nothing from anywhere else (no CDN, no fonts).
_PAGE_POLICY = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                "form-action 'none'")

class _HeadTimeout(BaseException):
    """The request line and headers did not arrive within ``sockettimeout``.

    A BaseException, so that pywsgi's ``except Exception`` (which answers 400
    and logs) lets it through to :meth:`_Handler.handle`, which closes quietly.
    """


class _BodyTimeout(Exception):
    """The request body did not arrive by the request's deadline."""


class _Handler(WebSocketHandler):
    """pywsgi handler: time limits, fd bookkeeping, and the checks due before an upgrade."""

    #: True while waiting for the next request (stop() may then close at once,
    #: and a new connection may take its place when the endpoint is full).
    waiting = False
    #: Set when the endpoint closed this idle keep-alive connection to make room.
    evicted = False
    #: ``time.monotonic()`` when it began waiting for its next request.
    idle_since = 0.0
    #: ``time.monotonic()`` by which the current request must have arrived whole.
    deadline = None
    _head_timer = None

    def handle(self):
        endpoint = self.server.endpoint
        self.greenlet = gevent.getcurrent()
        # The first request must arrive within sockettimeout of the
        # connection (after its TLS handshake): an idle stranger does not
        # hold a slot for socketidle seconds.
        self.deadline = time.monotonic() + endpoint.config["sockettimeout"]
        self.served = 0
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
            self.idle_since = time.monotonic()
            try:
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
        self._head_timer = gevent.Timeout(max(0.0, self.deadline - time.monotonic()), _HeadTimeout)
        self._head_timer.start()
        self.socket.settimeout(cfg["sockettimeout"])
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._stop_head_timer()

    def _stop_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.close()
            self._head_timer = None

    def get_environ(self):
        environ = super().get_environ()
        environ[_DEADLINE] = self.deadline
        return environ

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
        finally:
            body = self.wsgi_input
            if (body is not None and not self.environ.get(_BODY_READ)
                    and (body.position < (body.content_length or 0) or body.chunked_input)):
                # pywsgi would read and discard the whole unread body (of any
                # size) to keep the connection alive; close it instead.
                self.wsgi_input = Input(None, 0)
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


class _Server(BoundedHandshake, WSGIServer):
    """A WSGIServer whose TLS handshakes are bounded in time and quiet when they fail,
    and whose connections are bounded in number (``socketmaxconnections``)."""

    def handle(self, sock, address):
        if self.endpoint.admit(sock, address):
            super().handle(sock, address)


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
        self.connections = set()
        self.listener = None
        self.ssl_context = None
        self.origins = self._allowed_origins()
        #: Set by stop(): keep-alive connections take no more requests.
        self.closing = False
        self._server = None
        self._handlers = set()  # every connection's pywsgi handler (stop, close_in_child, admit)
        self._static = {}
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
        self.listener = bind_listener(self.address)

    def start(self):
        """Start serving."""
        if self.listener is None:
            self.bind()
        kwargs = {"ssl_context": self.ssl_context} if self.ssl_context is not None else {}
        client_log = _ClientErrorLog(self.client_errors)
        server = _Server(self.listener, self._application, spawn=connection_pool(self.config),
                         handler_class=_Handler,
                         log=LoggingLogAdapter(log, logging.DEBUG), error_log=client_log,
                         # given, so pywsgi does not resolve the host name (a DNS lookup)
                         environ={"SERVER_NAME": self.address.host, "SERVER_PORT": str(self.address.port)},
                         **kwargs)
        server.endpoint = self
        server.handshake_timeout = self.config["sockettimeout"]
        server.logger = client_log  # gevent-websocket's handler logs through server.logger
        server.start()
        self._server = server
        log.info("HTTP endpoint on %s://%s:%d/", "https" if self.ssl_context else "http",
                 self.address.host, self.address.port)

    def admit(self, sock, address):
        """Count a new connection in, or refuse it at once; True when admitted.

        Every HTTP connection counts, websockets included (SPEC 10).  When
        ``socketmaxconnections`` are open, an idle keep-alive connection (one
        waiting for its next request, which HTTP lets a server close at any
        time) makes room; otherwise the newcomer gets a ``503`` whose body is
        a ``-32004`` error, without a byte of its request being read.
        """
        limit = self.config["socketmaxconnections"]
        live = [h for h in self._handlers if not h.evicted]
        if len(live) < limit:
            return True
        idle = [h for h in live if h.waiting]
        if idle:
            victim = min(idle, key=lambda h: h.idle_since)  # the longest idle
            victim.evicted = True
            victim.greenlet.kill(block=False)
            log.debug("closed an idle keep-alive connection to make room for %s", _peer_of(address))
            return True
        self.client_errors.log("too-many", logging.WARNING,
                               "refused a connection from %s: too many connections (limit %d)",
                               _peer_of(address), limit)
        body = error_message(TooManyConnections("too many connections (limit %d)" % limit))
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Retry-After: 1\r\nConnection: close\r\n\r\n" % (_JSON, len(body)))
        refuse_connection(sock, head.encode("ascii") + body)
        return False

    def stop(self, timeout=None):
        """Close the listener, let busy websockets finish, close everything."""
        self.close_listener()
        self.closing = True
        for handler in list(self._handlers):
            if handler.waiting:  # an idle keep-alive connection: nothing to finish
                handler.greenlet.kill(block=False)
        grace = self.stop_grace if timeout is None else timeout
        for conn in list(self.connections):
            conn.closing = True
            if not conn.busy:
                conn.greenlet.kill(block=False)
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            gevent.sleep(0.01)
        for conn in list(self.connections):
            conn.greenlet.kill(block=False)
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

    # -- WSGI -----------------------------------------------------------------

    def _application(self, environ, start_response):
        try:
            if environ.get("wsgi.websocket") is not None:
                self._serve_websocket(environ)
                return []
            return self._route(environ, start_response)
        except Exception:
            # A bug, not the client's fault: log it, answer 500 if we still can.
            log.exception("error handling %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            if environ.get("wsgi.websocket") is not None:
                return []
            return _respond(start_response, "500 Internal Server Error", b"internal error\n", "text/plain",
                            [("Connection", "close")])

    def _route(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/healthz"):  # SPEC 10: see gdaemon.rpc.metrics
            return self.daemon.metrics.serve(self, environ, start_response, path)
        if path in ("/rpc", "/RPC2"):
            if path == "/rpc" and method == "GET":
                return _respond(start_response, "426 Upgrade Required",
                                b"GET /rpc is a websocket: send the Upgrade headers\n", "text/plain",
                                [("Upgrade", "websocket"), ("Connection", "Upgrade")])
            if method != "POST":
                allow = "GET, POST" if path == "/rpc" else "POST"
                return _respond(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", allow)])
            return self._serve_post(environ, start_response, xml=path == "/RPC2")
        if path == "/":
            name = "dashboard.html"
        elif path.startswith("/static/"):
            name = path[len("/static/"):]
        else:
            return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")
        asset = self._asset(name)
        if asset is None:
            return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", "GET, HEAD")])
        body, content_type = asset
        extra = [("Content-Security-Policy", _PAGE_POLICY)] if name.endswith(".html") else []
        return _respond(start_response, "200 OK", b"" if method == "HEAD" else body, content_type, extra,
                        length=len(body))

    def _asset(self, name):
        """``(bytes, content type)`` of a file of the static directory, or ``None``."""
        if name in self._static:
            return self._static[name]
        ext = os.path.splitext(name)[1]
        # Only plain names of known types: no path traversal, no hidden files.
        if "/" in name or "\\" in name or name.startswith(".") or ext not in _STATIC_TYPES:
            return None
        try:
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                found = (f.read(), _STATIC_TYPES[ext])
        except OSError:
            return None
        self._static[name] = found
        return found

    # -- POST /rpc and /RPC2 --------------------------------------------------

    def _serve_post(self, environ, start_response, xml):
        kind = "text/xml; charset=utf-8" if xml else _JSON
        if xml:
            # Imported on first use: xmlrpc.client costs most daemons memory for nothing.
            from . import xmlrpc

        def error(status, exc):
            body = xmlrpc.fault_body(exc) if xml else error_message(exc)
            return _respond(start_response, status, body, kind, extra)

        extra = []
        if not self.origin_allowed(environ.get("HTTP_ORIGIN")):
            self.client_errors.log("origin", logging.WARNING, "refused a POST from %s: origin %r not allowed",
                                   environ.get("REMOTE_ADDR"), environ.get("HTTP_ORIGIN"))
            return error("403 Forbidden", RpcError(-32600, "origin not allowed"))
        media = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        expected = ("text/xml", "application/xml") if xml else (_JSON,)
        if media not in expected:
            return error("415 Unsupported Media Type",
                         RpcError(-32600, "Content-Type must be %s" % " or ".join(expected)))
        session = Session(peer=_peer(environ), transport="http", max_batch=self.config["socketmaxbatch"])
        if self.engine.token is not None:
            given = _token_from(environ.get("HTTP_AUTHORIZATION", ""))
            if given is None or not self.engine.check_token(given):
                # Closed after the answer: a connection that never
                # authenticates holds no slot (SPEC 4.4, socketauthtimeout).
                extra.extend([("WWW-Authenticate", 'Bearer realm="gdaemon"'), ("Connection", "close")])
                return error("401 Unauthorized", Unauthorized(
                    "authentication required: send 'Authorization: Bearer TOKEN'" if given is None
                    else "invalid token"))
            session.authenticated = True
        try:
            body = self._read_body(environ)
        except _BodyTimeout:
            self.client_errors.log("body-timeout", logging.INFO, "closing %s: request body incomplete after %ss",
                                   session.peer, self.config["sockettimeout"])
            return _respond(start_response, "408 Request Timeout", b"", None, [("Connection", "close")])
        if body is None:
            extra.append(("Connection", "close"))
            return error("413 Payload Too Large", MessageTooLarge(
                "request body exceeds %d bytes" % self.config["socketmaxmessage"]))
        if xml:
            return _respond(start_response, "200 OK", xmlrpc.handle_body(self.engine, body, session), kind)
        payload, refusal = self.engine.decode(body, session)
        if refusal is not None:
            # A parse error or an over-long batch: nothing ran.
            return _respond(start_response, "400 Bad Request", codec.dumps(refusal), _JSON)
        response = self.engine.handle_payload(payload, session)
        if response is None:
            return _respond(start_response, "204 No Content", b"", None)
        return _respond(start_response, "200 OK", self.engine.encode(response, session), _JSON)

    def _read_body(self, environ):
        """The request body, or ``None`` (after discarding it) when it exceeds socketmaxmessage.

        It must be in by the request's deadline (``sockettimeout`` from its
        first byte, like a raw socket's line), however slowly it trickles:
        :class:`_BodyTimeout` otherwise.
        """
        limit = self.config["socketmaxmessage"]
        stream = environ["wsgi.input"]
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            declared = -1
        if declared > limit:
            self._discard(stream)
            return None
        deadline = environ.get(_DEADLINE) or time.monotonic() + self.config["sockettimeout"]
        try:
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), _BodyTimeout):
                body = stream.read(declared if declared >= 0 else limit + 1)
        except _BodyTimeout:
            environ[_BODY_READ] = False
            raise
        if len(body) > limit:
            self._discard(stream)
            return None
        environ[_BODY_READ] = True
        return body

    def _discard(self, stream):
        # Read what the client insists on sending (for at most sockettimeout
        # seconds) so that it gets to read our 413 instead of a reset.
        deadline = time.monotonic() + self.config["sockettimeout"]
        try:
            while time.monotonic() < deadline and stream.read(65536):
                pass
        except (OSError, ValueError):
            pass  # the client gave up: the connection is closed after the 413 anyway

    # -- websockets -----------------------------------------------------------

    def _serve_websocket(self, environ):
        ws = environ["wsgi.websocket"]
        # From here on we speak the frames ourselves; this keeps gevent-websocket
        # from writing a close frame of its own when the request ends.
        ws.closed = True
        peer = _peer(environ)
        conn = WebSocketConnection(self, ws.handler, peer)
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


def _respond(start_response, status, body, content_type, extra=(), length=None):
    headers = list(_SECURITY_HEADERS)
    if content_type:
        headers.append(("Content-Type", content_type))
    if not status.startswith("204"):
        headers.append(("Content-Length", str(len(body) if length is None else length)))
    headers.extend(extra)
    start_response(status, headers)
    return [body] if body else []


def _peer(environ):
    return "%s:%s" % (environ.get("REMOTE_ADDR", "?"), environ.get("REMOTE_PORT", "?"))


def _peer_of(address):
    if isinstance(address, tuple) and len(address) >= 2:
        return "%s:%s" % (address[0], address[1])
    return str(address)


def _token_from(header):
    """The token of an ``Authorization`` header (Bearer, or Basic's password), else ``None``."""
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return None
        return decoded.partition(":")[2]
    return None
