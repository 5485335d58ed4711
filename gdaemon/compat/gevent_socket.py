"""gevent's socket internals, for the RPC server's read of the next request.

What is used, and why:

- ``socket._wait(socket._read_event)``: wait in the hub until the socket is
  readable (or its timeout passes: ``socket.timeout``), and ``socket._sock``,
  the non-blocking socket under gevent's.  A client that waits for each
  reply sends its next request only after it read the last one, so a
  ``recv()`` right after a reply nearly always fails with ``EAGAIN`` first:
  gevent's ``recv()`` tries, catches the error, waits, tries again.
  :func:`recv_when_readable` waits first: one system call and no exception
  per request (about 1% of an echo round trip).  gevent has no public call
  that waits for a socket it owns (``gevent.socket.wait_read`` makes a new
  watcher at each call).
- ``socket._sock.send``: :func:`send_now`, one ``send()`` that never waits,
  for a reply that nearly always fits the socket's buffer at once (gevent's
  ``send()`` adds a Python frame and its timeout bookkeeping to each reply).

The check at import: gevent within the supported range, and the names above
present on gevent's socket class; otherwise a one-line :class:`ImportError`.
"""

from gevent import socket as _gsocket

from . import missing
from ._gevent import VERSION

__all__ = ["recv_when_readable", "send_now"]

# The attributes are slots of gevent's socket class (a method for ``_wait``):
# the class shows them without a socket being made.
_absent = ["gevent.socket.socket." + name for name in ("_wait", "_read_event", "_sock")
           if not hasattr(_gsocket.socket, name)]
if _absent:
    raise missing("gevent", VERSION, _absent)


def recv_when_readable(sock, bufsize):
    """``sock.recv(bufsize)`` for a plain (not TLS) gevent socket that is
    probably not readable yet: wait for it first, then read.

    Raises what ``sock.recv`` raises, ``socket.timeout`` included.
    """
    sock._wait(sock._read_event)
    try:
        return sock._sock.recv(bufsize)
    except BlockingIOError:  # woken with nothing to read after all
        return sock.recv(bufsize)


def send_now(sock, data):
    """Send what of ``data`` the kernel takes now from a plain (not TLS)
    gevent socket, without waiting: the count of bytes sent (0 if its buffer
    is full).  Never switches greenlets, so no other writer can come between.

    Raises what ``send`` raises for a broken connection.
    """
    try:
        return sock._sock.send(data)
    except BlockingIOError:
        return 0
