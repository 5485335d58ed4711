"""Client transports: one JSON text out, one JSON text in, over a connected socket.

- :class:`LineTransport`: newline-delimited texts (docs/reference/rpc.rst, Framing), for ``unix://``,
  ``tcp://`` and ``tls://``;
- :class:`WebSocketTransport`: one text per websocket message (docs/reference/http.rst), for
  ``ws://`` and ``wss://``: the client side of RFC 6455, its frames made and
  checked by :mod:`gdaemon.wire.websocket` like the daemon's.

:func:`open_transport` connects to an :class:`~gdaemon.wire.address.Address`.
Sockets come from :mod:`socket` and :mod:`ssl` as they are when called, so
the client is cooperative under ``gevent.monkey.patch_all()`` and blocking
without it.  Protocol violations by the peer raise
:class:`~gdaemon.errors.ConnectionLost`; socket errors are left to the caller.
"""

import logging
import os
import socket
import struct

from ..errors import ConnectionLost
from ..tls import client_context
from ..wire.unix import connect_unix
from ..wire.websocket import (CloseCode, FrameError, MessageReader, Opcode, accept_key, encode_frame,
                              handshake_key, parse_frame)

__all__ = ["LineTransport", "WebSocketTransport", "open_transport"]

logger = logging.getLogger("gdaemon.client")


def open_transport(address, timeout, max_message, cafile=None):
    """Connect to ``address`` and return its transport.

    :param timeout: seconds allowed to connect (and, until changed, to read).
    :param max_message: the largest reply accepted, in bytes.
    :param cafile: CA bundle for ``tls://`` and ``wss://`` (system store when ``None``).
    :raises OSError: the endpoint cannot be reached; :class:`ConnectionLost`: the
        websocket handshake failed.
    """
    if address.is_unix:
        return LineTransport(connect_unix(address.path, timeout), max_message)
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = address.scheme.is_tls
        if tls:
            sock = client_context(cafile).wrap_socket(sock, server_hostname=address.host)
        if address.scheme.is_websocket:
            return WebSocketTransport(sock, address, max_message, peekable=not tls)
        return LineTransport(sock, max_message, peekable=not tls)
    except BaseException:
        sock.close()
        raise


class LineTransport:
    """Newline-delimited JSON texts over a stream socket (docs/reference/rpc.rst, Framing)."""

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


class WebSocketTransport(LineTransport):
    """One JSON text per websocket text message (docs/reference/http.rst), client side of RFC 6455.

    The handshake runs in the constructor.  Our frames are masked, as a
    client's must be; the daemon's are checked as the daemon checks ours,
    except for UTF-8 (the JSON decoder rejects invalid UTF-8 anyway).
    """

    def __init__(self, sock, address, max_message, peekable=True):
        super().__init__(sock, max_message, peekable)
        self.reader = MessageReader(max_message, check_utf8=False)
        self._closed = False
        self._handshake(address.host, address.port, address.path)

    def _handshake(self, host, port, path):
        key = handshake_key()
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
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise ConnectionLost("websocket handshake: wrong Sec-WebSocket-Accept")

    def _send_frame(self, opcode, payload):
        self.sock.sendall(encode_frame(opcode, payload, mask_key=os.urandom(4)))

    def send(self, data):
        self._send_frame(Opcode.TEXT, data)

    def receive(self, timeout):
        """The next non-blank data message (bytes-like), or ``None`` once the server closed."""
        self.sock.settimeout(timeout)
        try:
            while not self._closed:
                frame = parse_frame(self.buffer, self.max_message)
                if frame is None:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return None
                    self.buffer += chunk
                    continue
                fin, opcode, payload = frame
                self.reader.check(fin, opcode, len(payload))
                if opcode >= Opcode.CLOSE:
                    self._control(opcode, payload)
                    continue
                message = self.reader.add(fin, opcode, payload)
                if message is not None and message.strip():
                    return message
        except FrameError as exc:
            raise ConnectionLost("websocket protocol error: %s" % exc.reason) from None
        return None

    def _control(self, opcode, payload):
        if opcode == Opcode.PING:
            self._send_frame(Opcode.PONG, payload)
        elif opcode == Opcode.CLOSE:
            # Echo the status code, as RFC 6455 5.5.1 asks, then stop reading.
            self._closed = True
            try:
                self._send_frame(Opcode.CLOSE, payload[:2])
            except OSError as exc:
                logger.debug("could not answer the websocket close frame: %s", exc)
        # A pong needs no answer.

    def closed_by_peer(self):
        return self._closed or super().closed_by_peer()

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self.sock.settimeout(0.5)
                self._send_frame(Opcode.CLOSE, struct.pack(">H", CloseCode.NORMAL))
            except OSError as exc:
                logger.debug("could not send the websocket close frame: %s", exc)
        super().close()

