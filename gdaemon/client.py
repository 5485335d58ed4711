"""The Python client of a gdaemon's RPC endpoint (SPEC 4 and 7).

::

    from gdaemon.client import Client

    with Client("unix:///run/echo/daemon.sock") as client:
        client.call("examples.echo", "hi")             # positional -> JSON array
        client.examples.echo(message="hi")              # attribute proxy, by name
        with client.batch() as batch:                   # one batch line on the wire
            status = batch.daemon.status()
            names = batch.worker.list()
        status.result(), names.result()
        for event in client.subscribe(["worker.*"]):    # pushed notifications
            print(event["name"], event["data"])

Addresses: ``unix://PATH``, ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (certificate
verified against ``cafile`` or the system store, host name checked),
``ws://HOST:PORT/rpc`` and ``wss://HOST:PORT/rpc`` (the websocket endpoint of
SPEC 9, spoken by a small RFC 6455 client in this module: no extra dependency).

Design decisions:

- **Lazy connection.**  Constructing a :class:`Client` does no I/O; the first
  request connects (or call :meth:`Client.connect` to fail early).  When the
  daemon closes the connection, the request in flight raises
  :class:`~gdaemon.errors.ConnectionLost` (it may or may not have run: it is
  never retried) and the next request connects again.  Before sending on an
  idle plain socket the client checks whether the daemon already closed it
  (idle timeout, daemon restart) and then reconnects first, since nothing can
  have been lost.  With a ``token``, ``system.auth`` is sent first on every
  (re)connection.
- **One reader, two kinds of lines.**  Replies (lines with an ``id``) and
  pushed events (``{"method": "event"}`` notifications) share the connection.
  Whoever reads routes each line: replies to the request waiting for them,
  events to a bounded queue that :meth:`Client.subscribe` and
  :meth:`Client.next_event` consume.  So calling methods while subscribed works.
- **Timeouts.**  ``timeout`` bounds the connection and each wait for a reply.
  A reply that does not come in time closes the connection (its state is
  unknown) and raises :class:`~gdaemon.errors.ConnectionLost`.  Waiting for
  events has its own timeout, ``None`` (forever) by default.
- **gevent.**  Only the plain :mod:`socket` and :mod:`ssl` modules are
  used, looked up at call time: under ``gevent.monkey.patch_all()``
  the client is cooperative, without it it simply blocks.  This module never
  patches anything itself.
- **Not thread-safe.**  A client is meant for one thread, or one greenlet, at a
  time (two greenlets reading one socket is an error in gevent).  Give each
  thread or greenlet its own client; connections are cheap.
- **JSON.**  The daemon's own codec (:mod:`gdaemon.rpc.codec`): orjson, with
  the standard library for what orjson cannot do, so integers of any size
  round-trip exactly (ids, params and results alike).
"""

import base64
import collections
import hashlib
import itertools
import json
import logging
import os
import socket
import struct
from urllib.parse import urlsplit

from .config import parse_address
from .errors import ConfigError, ConnectionLost, InternalError, RpcError
from .wire import codec
from .tls import client_context

try:
    import orjson
except ImportError:  # pragma: no cover - a runtime dependency, missing only without a wheel
    orjson = None

__all__ = ["Client", "Batch", "Future", "connect_unix", "encode", "decode"]

logger = logging.getLogger("gdaemon.client")

#: Longest unix socket path ``connect()`` accepts (``sun_path`` is 108 bytes).
UNIX_PATH_MAX = 107


# ---------------------------------------------------------------------------
# JSON

def encode(obj):
    """Serialize ``obj`` to compact UTF-8 JSON bytes (never containing ``\\n``)."""
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:
            # orjson refuses what json accepts (ints beyond 64 bits, non-str
            # keys, tuples as keys...): fall back rather than fail.
            pass
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, it still round-trips
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def decode(data):
    """Parse JSON ``data`` (bytes); raises :class:`ValueError` when malformed.

    Integers beyond 64 bits come back as exact ints (see :mod:`gdaemon.rpc.codec`).
    """
    return codec.loads(data)


# ---------------------------------------------------------------------------
# Connecting

def connect_unix(path, timeout=None):
    """Connect a stream socket to the unix socket ``path``.

    ``sun_path`` holds at most 107 bytes.  On Linux a longer path is reached
    through its directory: the directory is opened (``O_PATH``) and the socket
    connected to ``/proc/self/fd/<dirfd>/<basename>``, then the directory
    descriptor is closed.

    :param path: file system path of the socket.
    :param timeout: seconds allowed to connect (and later reads); ``None`` blocks.
    :returns: the connected :class:`socket.socket`.
    :raises OSError: when the socket cannot be reached.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if len(os.fsencode(path)) > UNIX_PATH_MAX and os.path.isdir("/proc/self/fd"):
            dirname, basename = os.path.split(path)
            flags = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)
            dirfd = os.open(dirname or ".", flags)
            try:
                sock.connect("/proc/self/fd/%d/%s" % (dirfd, basename))
            finally:
                os.close(dirfd)
        else:
            sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _parse_target(address):
    """``address`` -> ``(scheme, path_or_host, port, ws_path)``."""
    if not isinstance(address, str) or "://" not in address:
        raise ConfigError("address: expected SCHEME://ADDRESS, got %r" % (address,))
    scheme = address.split("://", 1)[0].lower()
    if scheme in ("ws", "wss"):
        parts = urlsplit(address)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname:
            raise ConfigError("address: expected %s://HOST:PORT/PATH, got %r" % (scheme, address))
        if port is None:
            port = 443 if scheme == "wss" else 80
        path = parts.path or "/rpc"
        if parts.query:
            path += "?" + parts.query
        return scheme, parts.hostname, port, path
    parsed = parse_address(address, key="address")
    if parsed.is_unix:
        return "unix", parsed.path, None, None
    return parsed.scheme, parsed.host, parsed.port, None


# ---------------------------------------------------------------------------
# Transports: one JSON text in, one JSON text out.

class _LineTransport:
    """Newline-delimited JSON texts over a stream socket (SPEC 4.1)."""

    def __init__(self, sock, max_message, peekable=True):
        self.sock = sock
        self.max_message = max_message
        #: Plain sockets can be checked for a peer close without reading (not TLS).
        self.peekable = peekable
        self.buffer = bytearray()

    def send(self, data):
        self.sock.sendall(data + b"\n")

    def receive(self, timeout):
        """The next non-blank line (bytes), or ``None`` at end of stream.

        Resumable: a timeout leaves the partial line in the buffer.
        """
        self.sock.settimeout(timeout)
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                start = 0
                if line.strip():
                    return line
                continue
            if len(self.buffer) > self.max_message:
                raise ConnectionLost("reply longer than %d bytes" % self.max_message)
            start = len(self.buffer)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def closed_by_peer(self):
        """True when the peer has closed the connection (checked without blocking)."""
        if not self.peekable or self.buffer:
            return False
        old = self.sock.gettimeout()
        try:
            self.sock.settimeout(0.0)
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, socket.timeout, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def close(self):
        try:
            self.sock.close()
        except OSError as exc:
            logger.debug("closing client socket failed: %s", exc)


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(key, data):
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 5.3)."""
    n = len(data)
    if not n:
        return b""
    keystream = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")


def ws_frame(opcode, payload, fin=True, mask_key=None):
    """Build one websocket frame; masked when ``mask_key`` (4 bytes) is given."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack(">Q", n)
    if mask_key is not None:
        head += mask_key
        payload = _mask(mask_key, payload)
    return bytes(head) + bytes(payload)


def ws_parse_frame(buffer, max_message):
    """Take one complete frame off the front of ``buffer`` (a bytearray).

    :returns: ``(fin, opcode, payload)`` or ``None`` when more bytes are needed.
    """
    if len(buffer) < 2:
        return None
    b0, b1 = buffer[0], buffer[1]
    if b0 & 0x70:
        raise ConnectionLost("websocket protocol error: reserved bits set (no extension negotiated)")
    length, pos = b1 & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, pos = struct.unpack(">H", bytes(buffer[2:4]))[0], 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, pos = struct.unpack(">Q", bytes(buffer[2:10]))[0], 10
    if length > max_message:
        raise ConnectionLost("websocket frame of %d bytes is too large" % length)
    key = None
    if b1 & 0x80:
        if len(buffer) < pos + 4:
            return None
        key, pos = bytes(buffer[pos:pos + 4]), pos + 4
    if len(buffer) < pos + length:
        return None
    payload = bytes(buffer[pos:pos + length])
    del buffer[:pos + length]
    if key is not None:
        # Servers must not mask (RFC 6455 5.1), but unmasking costs nothing.
        payload = _mask(key, payload)
    return bool(b0 & 0x80), b0 & 0x0F, payload


class _WebSocketTransport:
    """One JSON text per websocket text message (SPEC 9), client side of RFC 6455."""

    def __init__(self, sock, host, port, path, max_message, peekable=True):
        self.sock = sock
        self.max_message = max_message
        self.buffer = bytearray()
        self.peekable = peekable
        self._fragments = None
        self._closed = False
        self._handshake(host, port, path)

    def _handshake(self, host, port, path):
        key = base64.b64encode(os.urandom(16))
        hostport = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % (path, hostport, key.decode()))
        self.sock.sendall(request.encode("latin-1"))
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > 65536:
                raise ConnectionLost("websocket handshake: response headers too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionLost("websocket handshake: connection closed before the response")
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(None, 2)
        if len(status) < 2 or status[1] != "101":
            raise ConnectionLost("websocket handshake refused: %s" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            raise ConnectionLost("websocket handshake: bad Upgrade header %r" % headers.get("upgrade"))
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            raise ConnectionLost("websocket handshake: bad Connection header %r" % headers.get("connection"))
        expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionLost("websocket handshake: wrong Sec-WebSocket-Accept")

    def send(self, data):
        self.sock.sendall(ws_frame(_OP_TEXT, data, mask_key=os.urandom(4)))

    def receive(self, timeout):
        """The next data message (bytes), or ``None`` once the server closed."""
        self.sock.settimeout(timeout)
        while not self._closed:
            frame = ws_parse_frame(self.buffer, self.max_message)
            if frame is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buffer += chunk
                continue
            fin, opcode, payload = frame
            if opcode >= _OP_CLOSE:
                self._control(opcode, payload)
                continue
            if opcode == _OP_CONT:
                if self._fragments is None:
                    raise ConnectionLost("websocket protocol error: continuation without a message")
                self._fragments.append(payload)
            else:
                if self._fragments is not None:
                    raise ConnectionLost("websocket protocol error: new message inside a fragmented one")
                self._fragments = [payload]
            if sum(len(part) for part in self._fragments) > self.max_message:
                raise ConnectionLost("websocket message longer than %d bytes" % self.max_message)
            if fin:
                message, self._fragments = b"".join(self._fragments), None
                if message.strip():
                    return message
        return None

    def _control(self, opcode, payload):
        if opcode == _OP_PING:
            self.sock.sendall(ws_frame(_OP_PONG, payload, mask_key=os.urandom(4)))
        elif opcode == _OP_CLOSE:
            # Echo the status code, as RFC 6455 5.5.1 asks, then stop reading.
            self._closed = True
            try:
                self.sock.sendall(ws_frame(_OP_CLOSE, payload[:2], mask_key=os.urandom(4)))
            except OSError as exc:
                logger.debug("could not answer the websocket close frame: %s", exc)
        # A pong (or an unknown control opcode) needs no answer.

    def closed_by_peer(self):
        return self._closed or (self.peekable and _LineTransport.closed_by_peer(self))

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self.sock.settimeout(0.5)
                self.sock.sendall(ws_frame(_OP_CLOSE, struct.pack(">H", 1000), mask_key=os.urandom(4)))
            except OSError as exc:
                logger.debug("could not send the websocket close frame: %s", exc)
        _LineTransport.close(self)


# ---------------------------------------------------------------------------
# Batches

class Future:
    """The promise of one call in a :class:`Batch`; settled when the batch is sent."""

    __slots__ = ("method", "_done", "_value", "_error")

    def __init__(self, method):
        self.method = method
        self._done = False
        self._value = None
        self._error = None

    def done(self):
        """True once the batch was sent and this call answered (or failed)."""
        return self._done

    def result(self):
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

    def exception(self):
        """The error :meth:`result` would raise, or ``None``."""
        if not self._done:
            raise RuntimeError("%s: the batch has not been sent yet" % self.method)
        return self._error

    def _settle(self, value=None, error=None):
        self._done, self._value, self._error = True, value, error

    def __repr__(self):
        state = "pending" if not self._done else ("error" if self._error else "done")
        return "<Future %s %s>" % (self.method, state)


class Batch:
    """Requests collected in a ``with client.batch() as b:`` block.

    ``b.call(...)``, ``b.notify(...)`` and the attribute proxy
    (``b.examples.echo("hi")``) queue requests; leaving the block without an
    exception sends them as one JSON array line and settles every
    :class:`Future`.  An exception in the block sends nothing.
    """

    def __init__(self, client):
        self._client = client
        self._requests = []
        self._futures = {}
        self._sent = False

    def call(self, method, /, *args, **kwargs):
        """Queue a call; returns its :class:`Future`."""
        self._check_open()
        request = _request(method, args, kwargs, next(self._client._ids))
        future = Future(method)
        self._requests.append(request)
        self._futures[request["id"]] = future
        return future

    def notify(self, method, /, *args, **kwargs):
        """Queue a notification (no reply, no future)."""
        self._check_open()
        self._requests.append(_request(method, args, kwargs))

    def _check_open(self):
        if self._sent:
            raise RuntimeError("this batch was already sent")

    def send(self):
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
            _settle_from_reply(future, replies[rid])

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _MethodProxy(self.call, name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.send()
        else:
            self._sent = True
            error = RuntimeError("batch not sent: its block raised %s" % exc_type.__name__)
            for future in self._futures.values():
                future._settle(error=error)
        return False


def _settle_from_reply(future, reply):
    try:
        future._settle(value=_result(reply))
    except RpcError as exc:
        future._settle(error=exc)


# ---------------------------------------------------------------------------
# The client

class _MethodProxy:
    """``client.examples.echo`` -> a callable for method ``"examples.echo"``."""

    __slots__ = ("_call", "_name")

    def __init__(self, call, name):
        self._call = call
        self._name = name

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _MethodProxy(self._call, "%s.%s" % (self._name, name))

    def __call__(self, *args, **kwargs):
        return self._call(self._name, *args, **kwargs)

    def __repr__(self):
        return "<RPC method %s>" % self._name


def _request(method, args, kwargs, rid=None):
    if not isinstance(method, str):
        raise TypeError("method name must be a string, got %r" % (method,))
    if args and kwargs:
        raise TypeError("%s: JSON-RPC params are either positional or by name, not both" % method)
    request = {"jsonrpc": "2.0", "method": method}
    if args:
        request["params"] = list(args)
    elif kwargs:
        request["params"] = kwargs
    if rid is not None:
        request["id"] = rid
    return request


def _result(reply):
    if "error" in reply:
        raise RpcError.from_dict(reply["error"])
    if "result" not in reply:
        raise InternalError("malformed reply: neither result nor error", data=reply)
    return reply["result"]


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

    def __init__(self, address, token=None, timeout=5.0, cafile=None):
        self._target = _parse_target(address)
        self.address = address
        self.token = token
        self.timeout = timeout
        self.cafile = cafile
        self._ids = itertools.count(1)
        self._transport = None
        self._events = collections.deque(maxlen=self.max_queued_events)
        #: Incremented on every new connection: subscriptions belong to one.
        self._generation = 0
        #: Why the last connection ended: ``None`` after :meth:`close`.
        self._close_reason = None

    # -- connection -----------------------------------------------------------

    @property
    def connected(self):
        """True while a connection is open (it may still be closed by the daemon)."""
        return self._transport is not None

    def connect(self):
        """Connect now (requests do it on demand); authenticate with ``token``.

        :raises ConnectionLost: the daemon cannot be reached.
        :raises Unauthorized: the token was refused.
        """
        if self._transport is not None:
            return
        try:
            transport = self._open()
        except ConnectionLost:
            raise
        except (OSError, ValueError) as exc:
            raise ConnectionLost("cannot connect to %s: %s" % (self.address, exc)) from exc
        self._transport = transport
        self._generation += 1
        self._events.clear()
        if self.token is not None:
            try:
                _result(self._exchange(_request("system.auth", (), {"token": self.token}, next(self._ids))))
            except BaseException:
                self.close()
                raise

    def _open(self):
        scheme, host, port, path = self._target
        if scheme == "unix":
            return _LineTransport(connect_unix(host, self.timeout), self.max_message)
        sock = socket.create_connection((host, port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = scheme in ("tls", "wss")
            if tls:
                sock = client_context(self.cafile).wrap_socket(sock, server_hostname=host)
            if scheme in ("ws", "wss"):
                return _WebSocketTransport(sock, host, port, path, self.max_message, peekable=not tls)
            return _LineTransport(sock, self.max_message, peekable=not tls)
        except BaseException:
            sock.close()
            raise

    def close(self):
        """Close the connection (idempotent); the next request reconnects."""
        self._drop(None)

    def _drop(self, reason):
        transport, self._transport = self._transport, None
        if transport is not None:
            self._close_reason = reason
            transport.close()

    def _lost(self, reason, exc=None):
        reason = "%s: %s" % (self.address, reason)
        self._drop(reason)
        error = ConnectionLost(reason)
        if exc is not None:
            raise error from exc
        raise error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<Client %s %s>" % (self.address, "connected" if self.connected else "idle")

    # -- requests -------------------------------------------------------------

    def call(self, method, /, *args, **kwargs):
        """Call ``method`` and return its result.

        Positional arguments are sent as a JSON array, keyword arguments as a
        JSON object; giving both raises :class:`TypeError`.

        :raises RpcError: (the most specific subclass) the daemon's error.
        :raises ConnectionLost: the daemon cannot be reached, closed the
            connection or did not reply within ``timeout``.
        """
        request = _request(method, args, kwargs, next(self._ids))
        return _result(self._exchange(request))

    def notify(self, method, /, *args, **kwargs):
        """Send a notification: no id, no reply read.

        :raises ConnectionLost: the daemon cannot be reached.
        """
        self._send(_request(method, args, kwargs))

    def batch(self):
        """A :class:`Batch` context: its calls go out as one JSON array line."""
        return Batch(self)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _MethodProxy(self.call, name)

    # -- events ---------------------------------------------------------------

    def subscribe(self, patterns, timeout=None):
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

    def unsubscribe(self, patterns=None):
        """Call ``events.unsubscribe`` (all patterns when ``None``); drop queued events."""
        if patterns is None:
            self.call("events.unsubscribe")
        else:
            if isinstance(patterns, str):
                patterns = [patterns]
            self.call("events.unsubscribe", patterns=list(patterns))
        self._events.clear()

    def next_event(self, timeout=None):
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

    def _iter_events(self, generation, timeout):
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
        try:
            self._transport.send(encode(payload))
        except OSError as exc:
            self._lost("connection lost while sending (%s)" % exc, exc)

    def _exchange(self, payload, ids=None):
        """Send ``payload``; return the reply (one request) or ``{id: reply}`` (batch)."""
        self._send(payload)
        if isinstance(payload, dict):
            return self._wait({payload["id"]})[payload["id"]]
        return self._wait(set(ids)) if ids else {}

    def _receive(self, timeout):
        """The next decoded message; raises ConnectionLost at end of stream."""
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
            return decode(data)
        except ValueError as exc:
            self._lost("invalid JSON from the daemon (%s): %r" % (exc, data[:200]), exc)

    def _wait(self, pending):
        """Read until every id in ``pending`` is answered; return ``{id: reply}``."""
        replies = {}
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

    def _route(self, message, pending, replies):
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

    def _queue_event(self, params):
        if not isinstance(params, dict):
            logger.warning("%s: ignoring a malformed event %r", self.address, params)
            return
        if len(self._events) == self._events.maxlen:
            logger.warning("%s: event queue full, dropping the oldest event", self.address)
        self._events.append({"name": params.get("name"), "data": params.get("data", {}),
                             "time": params.get("time")})

