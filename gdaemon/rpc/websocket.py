"""The ``/rpc`` websocket: JSON-RPC messages in, answers and pushed events out.

gevent-websocket performs the upgrade; the framing after it is ours (RFC
6455, :mod:`gdaemon.wire.websocket`, shared with the client), because its
reader has no size limit and unmasks byte by byte in Python.  Ours checks a
frame's size in its header before reading the payload
(``socketmaxmessage``: a ``-32003`` message, then close code 1009), bounds an
incomplete message by ``sockettimeout``, an idle socket by ``socketidle`` and,
with a ``token``, an unauthenticated one by ``socketauthtimeout`` (a
``-32001`` message, then close code 1008),
and pushes events through the same :class:`~gdaemon.rpc.push.EventPusher`
and bounded session queue as the raw socket.

docs/reference/rpc.rst, What one client can cost: a connection that keeps the hub busy reading frames (calls,
pings, anything) yields after half a millisecond
(:class:`~gdaemon.rpc.endpoint.TimeSlice`, as on the raw socket); before it
authenticated (with ``token``) its pings get no pong, so flooding them costs
the daemon a read and nothing more; a subscriber is never closed as idle.
"""

import logging
import socket
import struct
import time
from typing import Optional

import gevent
from gevent.lock import Semaphore

from ..errors import MessageTooLarge, Unauthorized
from ..wire import codec
from ..wire.websocket import (CloseCode, FrameError, MessageReader, Opcode, WebSocketMessageTooLarge,
                              encode_frame, parse_header, unmask)
from .endpoint import TimeSlice, linger
from .protocol import Session
from .push import EventPusher

__all__ = ["WebSocketConnection", "Refuse", "error_message"]

log = logging.getLogger("gdaemon.http")


class Refuse(FrameError):
    """End the websocket with close ``code`` (after sending ``reply``, an encoded message)."""

    def __init__(self, code, reason, reply=None):
        super().__init__(code, reason)
        self.reply = reply


def error_message(exc, req_id=None):
    """The encoded JSON-RPC error response for ``exc``."""
    return codec.dumps({"jsonrpc": "2.0", "error": exc.to_dict(), "id": req_id})


class WebSocketConnection:
    """One websocket on ``/rpc``: reads messages, answers in order, pushes events."""

    def __init__(self, endpoint, handler, peer, slot=None):
        self.endpoint = endpoint
        #: Its :class:`~gdaemon.rpc.endpoint.Slot`: evictable until it authenticated (with ``token``).
        self.slot = slot
        self.time_slice = TimeSlice()
        self.sock = handler.socket
        self.rfile = handler.rfile
        cfg = endpoint.config
        self.session = Session(peer=peer, transport="websocket", max_batch=cfg["socketmaxbatch"])
        #: With a token: ``time.monotonic()`` by which ``system.auth`` must have succeeded.
        self.auth_deadline = (time.monotonic() + cfg["socketauthtimeout"]
                              if endpoint.engine.token is not None else None)
        #: Checks each frame header (size included) before its payload is read.
        self.reader = MessageReader(cfg["socketmaxmessage"], masked=True)
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
            self.sock.sendall(encode_frame(opcode, payload))

    def send_text(self, data):
        self.send_frame(Opcode.TEXT, data)

    def send_close(self, code, reason=""):
        """Send a close frame once (best effort: the peer may be gone already)."""
        if self.close_sent:
            return
        self.close_sent = True
        try:
            self.send_frame(Opcode.CLOSE, struct.pack("!H", code) + reason.encode()[:120])
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
        return self._pending_auth_deadline() is not None

    def _pending_auth_deadline(self) -> Optional[float]:
        """:attr:`auth_deadline` while ``system.auth`` is still due, else ``None``."""
        return None if self.session.authenticated else self.auth_deadline

    def _auth_refusal(self):
        seconds = self.endpoint.config["socketauthtimeout"]
        return Refuse(CloseCode.POLICY, "authentication timed out", error_message(
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
            unmask(mask, view)
        return buf

    def read_message(self):
        """The next data message (bytes-like; text is UTF-8-checked), or ``None`` when the peer closed.

        Pings are answered here; a close frame is answered and ends the connection.
        :class:`Refuse` with code 1008 when ``socketauthtimeout`` passes first.
        """
        try:
            return self._read_message()
        except Refuse:
            raise
        except WebSocketMessageTooLarge as exc:
            raise Refuse(exc.code, exc.reason, error_message(
                MessageTooLarge("message exceeds %d bytes" % exc.limit))) from None
        except FrameError as exc:
            raise Refuse(exc.code, exc.reason) from None
        except socket.timeout:
            # (a timer may fire a hair early: the auth deadline is the one
            # that passed when it was the nearer one)
            auth_deadline = self._pending_auth_deadline()
            if auth_deadline is not None and time.monotonic() >= auth_deadline - 0.05:
                raise self._auth_refusal() from None
            raise

    def _read_message(self):
        cfg = self.endpoint.config
        reader = self.reader
        deadline = None
        while True:
            self.time_slice.check()
            if deadline is None:
                # A subscriber is not idle (docs/reference/rpc.rst, What one client can cost): it waits for events.
                wait = None if self.session.patterns else cfg["socketidle"]
                auth_deadline = self._pending_auth_deadline()
                auth_first = False
                if auth_deadline is not None and (wait is None or auth_deadline - time.monotonic() < wait):
                    auth_first = True
                    wait = auth_deadline - time.monotonic()
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
                auth_deadline = self._pending_auth_deadline()
                if auth_deadline is not None:
                    deadline = min(deadline, auth_deadline)
            b0, b1 = self._recv(2, deadline)
            fin, op, length, mask = parse_header(b0, b1, self._recv(reader.header_size(b0, b1), deadline))
            reader.check(fin, op, length)
            payload = self._payload(length, mask, deadline) if length else b""
            if op == Opcode.CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
                self.send_close(code if 1000 <= code < 5000 and code not in (1005, 1006) else 1000)
                return None
            if op == Opcode.PING:
                if not self._auth_pending():  # a stranger's pings are not answered (docs/reference/rpc.rst, What one client can cost)
                    self.send_frame(Opcode.PONG, payload)
            elif op != Opcode.PONG:
                data = reader.add(fin, op, payload)
                if data is not None:
                    return data
            if reader.opcode is None:
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
                if session.authenticated and self.slot is not None:
                    self.slot.settled = True
                if response is not None:
                    self.send_text(response)
                if session.close_after:
                    raise Refuse(CloseCode.POLICY, "unauthorized")
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
        try:
            linger(self.sock, self.rfile.read1, self.endpoint.config["sockettimeout"])
        except (OSError, ValueError):
            pass  # peer gone, timed out, or the stream is closed: we close anyway

    def close(self):
        self.pusher.stop()


