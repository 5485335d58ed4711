"""The WSGI application of the HTTP endpoint: routes, the dashboard's files, POST /rpc and /RPC2.

:class:`HttpApplication` is what the endpoint's pywsgi server calls for each
request (see :mod:`gdaemon.rpc.http` for the routes, the limits and the
security rules); a websocket upgrade is handed back to the endpoint, which
serves its frames.
"""

import base64
import logging
import os
import re
import time

import gevent

from ..errors import MessageTooLarge, RpcError, Unauthorized
from ..wire import codec
from .protocol import Session
from .websocket import error_message

__all__ = ["HttpApplication", "respond", "peer", "token_from", "JSON", "BODY_READ", "DEADLINE",
           "STATIC_DIR"]

log = logging.getLogger("gdaemon.http")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon"}
JSON = "application/json"
BODY_READ = "gdaemon.body_read"   # environ key: the application consumed the request body
DEADLINE = "gdaemon.deadline"     # environ key: time.monotonic() by which the body must be in
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


# A static file's name: printable ASCII (PATH_INFO is the path's bytes as
# latin-1, so anything beyond ASCII was not a name we ship either).
_PLAIN_NAME = re.compile(r"[\x21-\x7e]+")


class _BodyTimeout(Exception):
    """The request body did not arrive by the request's deadline."""


class HttpApplication:
    """The WSGI application of an :class:`~gdaemon.rpc.http.HttpEndpoint`.

    :param endpoint: the endpoint (its daemon, config, engine, origin check,
        rate-limited client error log and websocket server are used).
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.daemon = endpoint.daemon
        self.config = endpoint.config
        self.engine = endpoint.engine
        self._static = {}

    def __call__(self, environ, start_response):
        try:
            if environ.get("wsgi.websocket") is not None:
                self.endpoint.serve_websocket(environ)
                return []
            return self._route(environ, start_response)
        except Exception:
            # A bug, not the client's fault: log it, answer 500 if we still can.
            log.exception("error handling %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            if environ.get("wsgi.websocket") is not None:
                return []
            return respond(start_response, "500 Internal Server Error", b"internal error\n", "text/plain",
                            [("Connection", "close")])

    def _route(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/healthz"):  # docs/howto/metrics.rst: see gdaemon.rpc.metrics
            return self.daemon.metrics.serve(self.endpoint, environ, start_response, path)
        if path in ("/rpc", "/RPC2"):
            if path == "/rpc" and method == "GET":
                return respond(start_response, "426 Upgrade Required",
                                b"GET /rpc is a websocket: send the Upgrade headers\n", "text/plain",
                                [("Upgrade", "websocket"), ("Connection", "Upgrade")])
            if method != "POST":
                allow = "GET, POST" if path == "/rpc" else "POST"
                return respond(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", allow)])
            return self._serve_post(environ, start_response, xml=path == "/RPC2")
        if path == "/":
            name = "dashboard.html"
        elif path.startswith("/static/"):
            name = path[len("/static/"):]
        else:
            return respond(start_response, "404 Not Found", b"not found\n", "text/plain")
        asset = self._asset(name)
        if asset is None:
            return respond(start_response, "404 Not Found", b"not found\n", "text/plain")
        if method not in ("GET", "HEAD"):
            return respond(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", "GET, HEAD")])
        body, content_type = asset
        extra = [("Content-Security-Policy", _PAGE_POLICY)] if name.endswith(".html") else []
        return respond(start_response, "200 OK", b"" if method == "HEAD" else body, content_type, extra,
                        length=len(body))

    def _asset(self, name):
        """``(bytes, content type)`` of a file of the static directory, or ``None``."""
        if name in self._static:
            return self._static[name]
        ext = os.path.splitext(name)[1]
        # Only plain names of known types: no path traversal, no hidden files,
        # and nothing open() would refuse (a NUL) or that names no file of
        # ours (a control character, a byte that is not UTF-8): those are a
        # 404 like any other unknown name, never a traceback (issue 14).
        if ("/" in name or "\\" in name or name.startswith(".") or ext not in _STATIC_TYPES
                or not _PLAIN_NAME.fullmatch(name)):
            return None
        try:
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                found = (f.read(), _STATIC_TYPES[ext])
        except (OSError, ValueError):
            return None
        self._static[name] = found
        return found

    # -- POST /rpc and /RPC2 --------------------------------------------------

    def _serve_post(self, environ, start_response, xml):
        kind = "text/xml; charset=utf-8" if xml else JSON
        if xml:
            # Imported on first use: xmlrpc.client costs most daemons memory for nothing.
            from . import xmlrpc

        def error(status, exc):
            body = xmlrpc.fault_body(exc) if xml else error_message(exc)
            return respond(start_response, status, body, kind, extra)

        extra = []
        if not self.endpoint.origin_allowed(environ.get("HTTP_ORIGIN")):
            self.endpoint.client_errors.log("origin", logging.WARNING, "refused a POST from %s: origin %r not allowed",
                                   environ.get("REMOTE_ADDR"), environ.get("HTTP_ORIGIN"))
            return error("403 Forbidden", RpcError(-32600, "origin not allowed"))
        media = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        expected = ("text/xml", "application/xml") if xml else (JSON,)
        if media not in expected:
            return error("415 Unsupported Media Type",
                         RpcError(-32600, "Content-Type must be %s" % " or ".join(expected)))
        session = Session(peer=peer(environ), transport="http", max_batch=self.config["socketmaxbatch"])
        if self.engine.token is not None:
            given = token_from(environ.get("HTTP_AUTHORIZATION", ""))
            if given is None or not self.engine.check_token(given):
                # Closed after the answer: a connection that never
                # authenticates holds no slot (docs/reference/rpc.rst, Authentication, socketauthtimeout).
                extra.extend([("WWW-Authenticate", 'Bearer realm="gdaemon"'), ("Connection", "close")])
                return error("401 Unauthorized", Unauthorized(
                    "authentication required: send 'Authorization: Bearer TOKEN'" if given is None
                    else "invalid token"))
            session.authenticated = True
        try:
            body = self._read_body(environ)
        except _BodyTimeout:
            self.endpoint.client_errors.log("body-timeout", logging.INFO, "closing %s: request body incomplete after %ss",
                                   session.peer, self.config["sockettimeout"])
            return respond(start_response, "408 Request Timeout", b"", None, [("Connection", "close")])
        if body is None:
            extra.append(("Connection", "close"))
            return error("413 Payload Too Large", MessageTooLarge(
                "request body exceeds %d bytes" % self.config["socketmaxmessage"]))
        if xml:
            return respond(start_response, "200 OK", xmlrpc.handle_body(self.engine, body, session), kind)
        payload, refusal = self.engine.decode(body, session)
        if refusal is not None:
            # A parse error or an over-long batch: nothing ran.
            return respond(start_response, "400 Bad Request", codec.dumps(refusal), JSON)
        reply = self.engine.reply(payload, session)  # at most socketmaxreply bytes
        if reply is None:
            return respond(start_response, "204 No Content", b"", None)
        return respond(start_response, "200 OK", reply, JSON)

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
        deadline = environ.get(DEADLINE) or time.monotonic() + self.config["sockettimeout"]
        try:
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), _BodyTimeout):
                body = stream.read(declared if declared >= 0 else limit + 1)
        except _BodyTimeout:
            environ[BODY_READ] = False
            raise
        if len(body) > limit:
            self._discard(stream)
            return None
        environ[BODY_READ] = True
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


def respond(start_response, status, body, content_type, extra=(), length=None):
    headers = list(_SECURITY_HEADERS)
    if content_type:
        headers.append(("Content-Type", content_type))
    if not status.startswith("204"):
        headers.append(("Content-Length", str(len(body) if length is None else length)))
    headers.extend(extra)
    start_response(status, headers)
    return [body] if body else []


def peer(environ):
    return "%s:%s" % (environ.get("REMOTE_ADDR", "?"), environ.get("REMOTE_PORT", "?"))


def token_from(header):
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
