"""The ``/rpc`` websocket: JSON-RPC messages in, answers and pushed events out.

gevent-websocket performs the upgrade; the framing after it is ours (RFC
6455), because its reader has no size limit and unmasks byte by byte in
Python.  Ours checks a frame's size in its header before reading the payload
(``socketmaxmessage``: a ``-32003`` message, then close code 1009), bounds an
incomplete message by ``sockettimeout`` and an idle socket by ``socketidle``,
and pushes events through the same :class:`~gdaemon.rpc.push.EventPusher`
and bounded session queue as the raw socket.
"""

import logging
import socket
import struct
import time

import gevent
from gevent.lock import Semaphore

from ..errors import MessageTooLarge
from . import codec
from .protocol import Session
from .push import EventPusher

__all__ = ["WebSocketConnection", "Refuse", "error_message", "GOING_AWAY", "TRY_LATER"]

log = logging.getLogger("gdaemon.http")

# RFC 6455 opcodes and close codes.
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GOING_AWAY, _PROTOCOL_ERROR, _BAD_DATA, _POLICY, _TOO_BIG, TRY_LATER = 1001, 1002, 1007, 1008, 1009, 1013


class Refuse(Exception):
    """End the websocket with close ``code`` (after sending ``reply``)."""

    def __init__(self, code, reason, reply=None):
        super().__init__(reason)
        self.code, self.reason, self.reply = code, reason, reply


def _frame(opcode, payload):
    """One unfragmented, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _unmask(mask, data):
    # One big-integer XOR instead of a Python loop per byte.
    n = len(data)
    key = (mask * ((n + 3) // 4))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def error_message(exc, req_id=None):
    """The encoded JSON-RPC error response for ``exc``."""
    return codec.dumps({"jsonrpc": "2.0", "error": exc.to_dict(), "id": req_id})


class WebSocketConnection:
    """One websocket on ``/rpc``: reads messages, answers in order, pushes events."""

    def __init__(self, endpoint, handler, peer):
        self.endpoint = endpoint
        self.sock = handler.socket
        self.rfile = handler.rfile
        self.session = Session(peer=peer, transport="websocket")
        self.write_lock = Semaphore()
        #: True while a request is being handled (stop() lets it finish).
        self.busy = False
        #: Set by stop(): finish the current request, then close.
        self.closing = False
        self.close_sent = False
        self.greenlet = gevent.getcurrent()
        self.pusher = EventPusher(self.session, self.flush_events, self._push_failed)

    # -- writing ------------------------------------------------------------

    def send_frame(self, opcode, payload):
        with self.write_lock:
            self.sock.sendall(_frame(opcode, payload))

    def send_text(self, data):
        self.send_frame(_TEXT, data)

    def send_close(self, code, reason=""):
        """Send a close frame once (best effort: the peer may be gone already)."""
        if self.close_sent:
            return
        self.close_sent = True
        try:
            self.send_frame(_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
        except OSError:
            log.debug("cannot send the close frame to %s", self.session.peer, exc_info=True)

    # -- event push (same design as the raw socket's) -----------------------

    def _push_failed(self):
        # A subscriber that stopped reading: close it, so that its reader
        # greenlet ends too instead of waiting for its idle timeout.
        log.info("closing %s: cannot push events to it", self.session.peer)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def flush_events(self):
        for line in self.session.pending_notifications():
            self.send_text(line)

    # -- reading ------------------------------------------------------------

    def _recv(self, n, deadline):
        """Exactly ``n`` bytes, all before ``deadline``; EOFError if the peer left."""
        chunks = []
        while n > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("message incomplete")
            self.sock.settimeout(remaining)
            chunk = self.rfile.read1(n)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read_message(self):
        """The next data message (bytes; text is UTF-8-checked), or ``None`` when the peer closed.

        Pings are answered here; a close frame is answered and ends the connection.
        """
        cfg = self.endpoint.config
        maxmessage = cfg["socketmaxmessage"]
        opcode, parts, size, deadline = None, [], 0, None
        while True:
            if deadline is None:
                self.sock.settimeout(cfg["socketidle"])
                try:
                    if not self.rfile.peek(1):
                        return None
                except socket.timeout:
                    log.debug("closing idle websocket %s", self.session.peer)
                    return None
                deadline = time.monotonic() + cfg["sockettimeout"]
            b0, b1 = self._recv(2, deadline)
            fin, op, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                raise Refuse(_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
            if not b1 & 0x80:
                raise Refuse(_PROTOCOL_ERROR, "client frames must be masked")
            if length < 126:
                mask = self._recv(4, deadline)
            elif length == 126:
                length, mask = struct.unpack("!H4s", self._recv(6, deadline))
            else:
                length, mask = struct.unpack("!Q4s", self._recv(12, deadline))
            if op in (_CLOSE, _PING, _PONG):
                if not fin or length > 125:
                    raise Refuse(_PROTOCOL_ERROR, "invalid control frame")
            elif op in (_TEXT, _BINARY, _CONT):
                if (op == _CONT) != (opcode is not None):
                    raise Refuse(_PROTOCOL_ERROR, "unexpected continuation frame")
                if size + length > maxmessage:
                    raise Refuse(_TOO_BIG, "message too large", error_message(
                        MessageTooLarge("message exceeds %d bytes" % maxmessage)))
            else:
                raise Refuse(_PROTOCOL_ERROR, "unknown opcode %d" % op)
            payload = _unmask(mask, self._recv(length, deadline)) if length else b""
            if op == _CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                self.send_close(code if 1000 <= code < 5000 and code not in (1005, 1006) else 1000)
                return None
            if op == _PING:
                self.send_frame(_PONG, payload)
            elif op != _PONG:
                if opcode is None:
                    opcode = op
                parts.append(payload)
                size += length
                if fin:
                    data = parts[0] if len(parts) == 1 else b"".join(parts)
                    if opcode == _TEXT:
                        try:
                            data.decode("utf-8")
                        except UnicodeDecodeError:
                            raise Refuse(_BAD_DATA, "invalid UTF-8 in a text message") from None
                    return data
            if opcode is None:
                deadline = None  # between messages: idle again

    # -- the connection -----------------------------------------------------

    def serve(self):
        engine = self.endpoint.engine
        session = self.session
        while not self.closing:
            message = self.read_message()
            if message is None:
                return
            self.busy = True
            try:
                response = engine.handle_line(message, session)
                if response is not None:
                    self.send_text(response)
                if session.close_after:
                    raise Refuse(_POLICY, "unauthorized")
                if session.patterns and not self.pusher.running:
                    self.pusher.start()
            finally:
                self.busy = False

    def refuse(self, exc):
        """Send ``exc.reply`` (if any) and a close frame with its code."""
        if exc.reply is not None:
            try:
                self.send_text(exc.reply)
            except OSError:
                return
        self.send_close(exc.code, exc.reason)

    def linger(self):
        """After our close frame: let the peer read it before the TCP close.

        Closing with unread input makes the kernel send RST, which can destroy
        our last frames before the client reads them (a client still sending
        an oversized message, typically).  So read and discard until the peer
        closes, for at most ``sockettimeout`` seconds.
        """
        deadline = time.monotonic() + self.endpoint.config["sockettimeout"]
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.sock.settimeout(remaining)
                if not self.rfile.read1(65536):
                    return
        except (OSError, ValueError):
            pass  # peer gone, timed out, or the stream is closed: we close anyway

    def close(self):
        self.pusher.stop()


