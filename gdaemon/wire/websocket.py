"""RFC 6455 frames, for both ends of the ``/rpc`` websocket (docs/reference/http.rst).

No I/O here: the daemon (:mod:`gdaemon.rpc.websocket`) reads frames from a
stream with deadlines, the client (:mod:`gdaemon.client.transports`) from a
buffer, and both hand the bytes to the same functions:

- :func:`header_size` and :func:`parse_header` decode a frame header
  (:func:`parse_frame` takes a whole frame off a buffer);
- :class:`MessageReader` checks each header against the rules of RFC 6455
  and the size limit *before* the payload is read (so an oversized message
  costs nothing but its header), then joins fragments into messages;
- :func:`unmask` XORs a payload in place; :func:`encode_frame` builds a frame.

A broken rule raises :class:`FrameError` carrying the close code to send
(:class:`WebSocketMessageTooLarge`, close code 1009, for the size limit);
what to do with it (a close frame, a ``-32003`` message, ``ConnectionLost``) is the
caller's business.
"""

import base64
import enum
import hashlib
import os
import struct

__all__ = ["Opcode", "CloseCode", "FrameError", "WebSocketMessageTooLarge", "MessageReader", "header_size",
           "parse_header", "parse_frame", "encode_frame", "unmask", "handshake_key",
           "accept_key"]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 5.2); the last three are control frames."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close frame status codes (RFC 6455 7.4.1) that gdaemon sends."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    TRY_LATER = 1013


class FrameError(Exception):
    """A frame that breaks RFC 6455 (or the size limit): close with ``code``."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


class WebSocketMessageTooLarge(FrameError):
    """A message longer than the limit (close code 1009), found from a frame header."""

    def __init__(self, limit):
        super().__init__(CloseCode.TOO_BIG, "message too large")
        #: The limit it passed, in bytes.
        self.limit = limit


_CONTROL = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
_DATA = frozenset((Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY))
_CONTINUATION, _TEXT = Opcode.CONTINUATION, Opcode.TEXT  # looked up per frame

# The handshake's magic (RFC 6455 1.3).
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Bytes unmasked per step: a multiple of 4, so the mask stays in phase.
_UNMASK_STEP = 65536


def handshake_key():
    """A fresh ``Sec-WebSocket-Key`` for a client's handshake (16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16))


def accept_key(key):
    """The ``Sec-WebSocket-Accept`` value that answers ``Sec-WebSocket-Key: key`` (bytes)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()


def encode_frame(opcode, payload, fin=True, mask_key=None):
    """One frame; masked with the 4-byte ``mask_key`` when given (a client's frames must be)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0 if mask_key is None else 0x80
    n = len(payload)
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask_key is None:
        return head + payload
    masked = bytearray(payload)
    unmask(mask_key, memoryview(masked))
    return head + mask_key + masked


def unmask(mask, view):
    """XOR ``view`` (a writable memoryview) with the 4-byte ``mask``, in place.

    One big-integer XOR per 64 KB instead of a Python loop per byte, and no
    copy of the whole payload (a 1 MB message costs 1 MB, not five).
    Masking and unmasking are the same operation.
    """
    n = len(view)
    step_key = None  # the key of a whole 64 KB step, made once per call and only when needed
    for start in range(0, n, _UNMASK_STEP):
        piece = view[start:start + _UNMASK_STEP]
        size = len(piece)
        if size < _UNMASK_STEP:
            # Most messages are small: a key of their own size costs a
            # microsecond, a 64 KB one some 25.
            key = int.from_bytes((mask * ((size + 3) // 4))[:size], "little")
        else:
            if step_key is None:
                step_key = int.from_bytes(mask * (_UNMASK_STEP // 4), "little")
            key = step_key
        piece[:] = (int.from_bytes(piece, "little") ^ key).to_bytes(size, "little")


def parse_header(b0, b1, rest):
    """``(fin, opcode, length, mask_key or None)`` from a frame's first two bytes and the rest of its header.

    ``rest`` holds the :meth:`MessageReader.header_size` bytes after the first two.
    """
    length = b1 & 0x7F
    if length == 126:
        length, pos = struct.unpack_from("!H", rest)[0], 2
    elif length == 127:
        length, pos = struct.unpack_from("!Q", rest)[0], 8
    else:
        pos = 0
    mask = bytes(rest[pos:pos + 4]) if b1 & 0x80 else None
    return bool(b0 & 0x80), b0 & 0x0F, length, mask


def header_size(b0, b1):
    """How many header bytes follow a frame's first two, ``b0`` and ``b1`` (extended length, mask key).

    :raises FrameError: reserved bits set (no extension is ever negotiated).
    """
    if b0 & 0x70:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
    length = b1 & 0x7F
    return (0 if length < 126 else 2 if length == 126 else 8) + (4 if b1 & 0x80 else 0)


def parse_frame(buffer, max_message):
    """Take one complete frame off the front of ``buffer`` (a bytearray).

    A frame longer than ``max_message`` is refused as soon as its header is
    complete, before its payload is waited for.

    :returns: ``(fin, opcode, payload)``, the payload unmasked, or ``None``
        when ``buffer`` does not hold a whole frame yet.
    :raises FrameError: reserved bits set; :class:`WebSocketMessageTooLarge`.
    """
    if len(buffer) < 2:
        return None
    b0, b1 = buffer[0], buffer[1]
    start = 2 + header_size(b0, b1)
    if len(buffer) < start:
        return None
    fin, opcode, length, mask = parse_header(b0, b1, buffer[2:start])
    if length > max_message:
        raise WebSocketMessageTooLarge(max_message)
    end = start + length
    if len(buffer) < end:
        return None
    payload = buffer[start:end]
    del buffer[:end]
    if mask is not None:
        unmask(mask, memoryview(payload))
    return fin, opcode, payload


class MessageReader:
    """The receiving side's rules of RFC 6455, and the message size limit.

    Call :meth:`check` with each frame's header before reading its payload,
    then :meth:`add` with the payload of each data frame: it returns the
    message once its last fragment arrived.  Control frames (close, ping,
    pong) are checked here but answered by the caller.

    :param max_message: the largest message (all its fragments), in bytes.
    :param masked: ``True`` on the server (a client's frames must be masked).
    :param check_utf8: refuse a text message that is not UTF-8 (close code 1007).
    """

    def __init__(self, max_message, masked=False, check_utf8=True):
        self.max_message = max_message
        self.masked = masked
        self.check_utf8 = check_utf8
        #: The opcode of the message being received, ``None`` between messages.
        self.opcode = None
        self._parts = []
        self._size = 0

    def header_size(self, b0, b1):
        """How many header bytes follow a frame's first two, ``b0`` and ``b1`` (length and mask key).

        :raises FrameError: reserved bits set (no extension is ever
            negotiated), or an unmasked frame where frames must be masked.
        """
        size = header_size(b0, b1)
        if self.masked and not b1 & 0x80:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        return size

    def check(self, fin, opcode, length):
        """Raise :class:`FrameError` unless a frame with this header may come now."""
        if opcode in _CONTROL:
            if not fin or length > 125:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid control frame")
        elif opcode in _DATA:
            if (opcode == _CONTINUATION) != (self.opcode is not None):
                raise FrameError(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
            if self._size + length > self.max_message:
                raise WebSocketMessageTooLarge(self.max_message)
        else:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "unknown opcode %d" % opcode)

    def add(self, fin, opcode, payload):
        """Take a data frame's payload; return the whole message (bytes-like) once ``fin``, else ``None``."""
        if self.opcode is None:
            self.opcode = opcode
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        parts, text = self._parts, self.opcode == _TEXT
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.opcode, self._parts, self._size = None, [], 0
        if text and self.check_utf8:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message") from None
        return data
