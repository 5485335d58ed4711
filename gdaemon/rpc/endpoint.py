"""What every endpoint of the daemon shares: the raw socket server and the HTTP endpoint alike.

- :class:`Transport`: what the daemon asks of an endpoint (bind, start, stop, close in a child);
- :func:`bind_listener`: the listening socket of an address, with the address in every error;
- :func:`connection_pool`: the bounded greenlet pool that keeps descriptors bounded under a flood;
- :func:`refuse_connection` and :func:`linger`: a last word that reaches the client before the close.
"""

import errno
import socket
import time

import gevent
from gevent.pool import Pool

from ..errors import ProcessError
from ..wire.unix import bind_unix

__all__ = ["Transport", "bind_listener", "connection_pool", "refuse_connection", "linger", "REFUSAL_SLACK"]


class Transport:
    """What the daemon asks of each endpoint it serves on (``daemon.transports``).

    ``bind()`` before ``daemon.ready`` (raising :class:`ProcessError`),
    ``start()``, ``close_listener()`` when the stop begins, ``stop()`` once the
    workers are down, ``close_in_child()`` in a forked worker, and a
    ``connections`` collection that ``daemon.status`` counts.
    """

    #: The listening socket, once bound.
    listener = None
    #: The gevent server accepting on it, once started.
    _server = None

    def close_listener(self):
        """Stop accepting; open connections go on (idempotent)."""
        if self._server is not None:
            self._server.close()
        elif self.listener is not None:
            self.listener.close()
        self.listener = None

    def drain_connections(self, grace):
        """End every connection: idle ones at once, busy ones once their request is
        answered, or after ``grace`` seconds whatever they do."""
        for conn in list(self.connections):
            conn.closing = True
            if not conn.busy:
                conn.greenlet.kill(block=False)
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            gevent.sleep(0.01)
        for conn in list(self.connections):
            conn.greenlet.kill(block=False)


def bind_listener(address, mode=0o600, backlog=1024):
    """Create, bind and listen on ``address`` (a :class:`~gdaemon.wire.address.Address`).

    :raises ProcessError: with the address in the message (``address in use``...).
    """
    if address.is_unix:
        sock = bind_unix(address.path, mode)
    else:
        try:
            infos = socket.getaddrinfo(address.host, address.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ProcessError(errno.EINVAL, "cannot resolve %s: %s" % (address, exc)) from exc
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ProcessError(exc.errno, "%s: %s" % (reason, address)) from exc
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def refuse_connection(sock, data):
    """Write ``data`` (a last word: an error line, an HTTP 503) and close ``sock``.

    Never blocks: what the socket buffer cannot take is dropped.  Input the
    client already sent is read first, so that closing does not turn into a
    reset that could destroy our answer before the client reads it.
    """
    try:
        sock.setblocking(False)
        try:
            sock.send(data)
            sock.shutdown(socket.SHUT_WR)
            for _ in range(16):  # a bounded effort: a flooding client gets its reset
                if not sock.recv(65536):
                    break
        except OSError:  # EAGAIN included: nothing more to read (or write) right now
            pass
    finally:
        sock.close()


def connection_pool(config):
    """The greenlet pool of an endpoint: ``socketmaxconnections`` served plus
    :data:`REFUSAL_SLACK` being refused (or in a TLS handshake).

    A full pool stops the server from accepting: further clients wait in the
    kernel's backlog, so whatever they do the daemon's descriptors stay
    bounded (issue 8).
    """
    return Pool(config["socketmaxconnections"] + REFUSAL_SLACK)


#: Connections an endpoint holds beyond ``socketmaxconnections``, to answer
#: ``-32004`` (and to run TLS handshakes, which come before the count).
REFUSAL_SLACK = 16


def linger(sock, read, seconds):
    """After our last word, read and discard until the peer closes, for at most ``seconds``.

    Closing a TCP socket with unread input makes the kernel send RST, which
    can destroy our last reply before the client reads it (a client still
    sending an oversized request, typically).

    :param read: ``read(n)`` -> bytes, ``b""`` at end of input (``sock.recv``,
        or the ``read1`` of a buffered reader on ``sock``).
    :raises OSError: (timeouts included) as ``read`` raises them.
    """
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        sock.settimeout(remaining)
        if not read(65536):
            return
