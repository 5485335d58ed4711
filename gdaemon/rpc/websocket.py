"""The ``/rpc`` websocket: JSON-RPC messages in, answers and pushed events out.

gevent-websocket performs the upgrade; the framing after it is ours (RFC
6455), because its reader has no size limit and unmasks byte by byte in
Python.  Ours checks a frame's size in its header before reading the payload
(``socketmaxmessage``: a ``-32003`` message, then close code 1009), bounds an
incomplete message by ``sockettimeout``, an idle socket by ``socketidle`` and,
with a ``token``, an unauthenticated one by ``socketauthtimeout`` (a
``-32001`` message, then close code 1008),
and pushes events through the same :class:`~gdaemon.rpc.push.EventPusher`
and bounded session queue as the raw socket.
"""

import logging
import socket
import struct
import time

import gevent
from gevent.lock import Semaphore

from ..errors import MessageTooLarge, Unauthorized
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


#: Bytes unmasked per step: a multiple of 4, so the mask stays in phase.
_UNMASK_STEP = 65536


def _unmask_into(mask, view):
    """XOR ``view`` (a writable memoryview) with the 4-byte ``mask``, in place.

    One big-integer XOR per 64 KB instead of a Python loop per byte, and no
    copy of the whole payload (a 1 MB message costs 1 MB, not five).
    """
    n = len(view)
    step_key = int.from_bytes(mask * (_UNMASK_STEP // 4), "little")
    for start in range(0, n, _UNMASK_STEP):
        piece = view[start:start + _UNMASK_STEP]
        size = len(piece)
        key = step_key if size == _UNMASK_STEP else int.from_bytes((mask * ((size + 3) // 4))[:size], "little")
        piece[:] = (int.from_bytes(piece, "little") ^ key).to_bytes(size, "little")


def error_message(exc, req_id=None):
    """The encoded JSON-RPC error response for ``exc``."""
    return codec.dumps({"jsonrpc": "2.0", "error": exc.to_dict(), "id": req_id})


class WebSocketConnection:
    """One websocket on ``/rpc``: reads messages, answers in order, pushes events."""

    def __init__(self, endpoint, handler, peer):
        self.endpoint = endpoint
        self.sock = handler.socket
        self.rfile = handler.rfile
        cfg = endpoint.config
        self.session = Session(peer=peer, transport="websocket", max_batch=cfg["socketmaxbatch"])
        #: With a token: ``time.monotonic()`` by which ``system.auth`` must have succeeded.
        self.auth_deadline = (time.monotonic() + cfg["socketauthtimeout"]
                              if endpoint.engine.token is not None else None)
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
        self.endpoint.client_errors.log("push", logging.INFO, "closing %s: cannot push events to it",
                                        self.session.peer)
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

    def _auth_pending(self):
        return self.auth_deadline is not None and not self.session.authenticated

    def _auth_refusal(self):
        seconds = self.endpoint.config["socketauthtimeout"]
        return Refuse(_POLICY, "authentication timed out", error_message(
            Unauthorized("authentication timed out after %ss" % seconds)))

    def _payload(self, n, mask, deadline):
        """The ``n``-byte payload of a frame, read into one buffer and unmasked there."""
        buf = bytearray(n)
        with memoryview(buf) as view:
            got = 0
            while got < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("message incomplete")
                self.sock.settimeout(remaining)
                count = self.rfile.readinto1(view[got:])
                if not count:
                    raise EOFError
                got += count
            _unmask_into(mask, view)
        return buf

    def read_message(self):
        """The next data message (bytes-like; text is UTF-8-checked), or ``None`` when the peer closed.

        Pings are answered here; a close frame is answered and ends the connection.
        :class:`Refuse` with code 1008 when ``socketauthtimeout`` passes first.
        """
        try:
            return self._read_message()
        except socket.timeout:
            # (a timer may fire a hair early: the auth deadline is the one
            # that passed when it was the nearer one)
            if self._auth_pending() and time.monotonic() >= self.auth_deadline - 0.05:
                raise self._auth_refusal() from None
            raise

    def _read_message(self):
        cfg = self.endpoint.config
        maxmessage = cfg["socketmaxmessage"]
        opcode, parts, size, deadline = None, [], 0, None
        while True:
            if deadline is None:
                wait = cfg["socketidle"]
                auth_first = self._auth_pending() and self.auth_deadline - time.monotonic() < wait
                if auth_first:
                    wait = self.auth_deadline - time.monotonic()
                    if wait <= 0:
                        raise self._auth_refusal()
                self.sock.settimeout(wait)
                try:
                    if not self.rfile.peek(1):
                        return None
                except socket.timeout:
                    if auth_first:
                        raise self._auth_refusal() from None
                    log.debug("closing idle websocket %s", self.session.peer)
                    return None
                deadline = time.monotonic() + cfg["sockettimeout"]
                if self._auth_pending():
                    deadline = min(deadline, self.auth_deadline)
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
            payload = self._payload(length, mask, deadline) if length else b""
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


