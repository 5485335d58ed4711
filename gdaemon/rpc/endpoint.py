"""What every endpoint of the daemon shares: the raw socket server and the HTTP endpoint alike.

- :class:`Transport`: what the daemon asks of an endpoint (bind, start, stop, close in a child);
- :func:`bind_listener`: the listening socket of an address, with the address in every error;
- :func:`connection_pool`: the bounded greenlet pool that keeps descriptors bounded under a flood;
- :class:`Admission` and :class:`BoundedServer`: ``socketmaxconnections``, where a newcomer
  evicts the stranger that made the least progress (docs/reference/rpc.rst, What one client can cost), and bounded TLS handshakes;
- :class:`TimeSlice`: a connection that keeps the hub busy yields to the others (docs/reference/rpc.rst, What one client can cost);
- :func:`refuse_connection` and :func:`linger`: a last word that reaches the client before the close.

Admission (docs/reference/rpc.rst, What one client can cost, "no lock-out by returning strangers"): an endpoint
counts every connection from its accept to its close, TLS handshakes
included.  At ``socketmaxconnections`` a newcomer takes the place of a
connection that has not *settled* yet — not finished its TLS handshake, not
authenticated (with ``token``), or, over HTTP, not sent its request head
whole — choosing the one that made the least progress (bytes received
while unsettled, plus those already waiting to be read, counted with
``FIONREAD``), silent ones first and the oldest among equals.  An admin's
``system.auth`` or ClientHello, sent at once, is waiting to be read before
any stranger's silence: so the admin gets in, however fast strangers reconnect.  Only when
every connection has settled is the newcomer refused (``-32004``, HTTP 503).
The decision is taken in the accept loop itself, before a greenlet is
spawned: a refusal on a plain socket costs no greenlet at all.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Optional, Set

import gevent
from gevent.pool import Pool
from gevent.socket import wait_read

from ..compat.gevent_server import spawn, wrap_tls
from ..errors import ProcessError
from ..wire.unix import bind_unix

if TYPE_CHECKING:
    from ..wire.address import Address

__all__ = ["Transport", "bind_listener", "connection_pool", "refuse_connection", "linger", "REFUSAL_SLACK",
           "Admission", "Slot", "BoundedServer", "TimeSlice"]

log = logging.getLogger("gdaemon.rpc")


class Transport:
    """What the daemon asks of each endpoint it serves on (``daemon.transports``).

    ``bind()`` before ``daemon.ready`` (raising :class:`ProcessError`),
    ``start()``, ``close_listener()`` when the stop begins, ``stop()`` once the
    workers are down, ``close_in_child()`` in a forked worker, and a
    ``connections`` collection that ``daemon.status`` counts.
    """

    #: The listening socket, once bound.
    listener: Optional[socket.socket] = None
    #: The gevent server accepting on it, once started.
    _server: Any = None
    #: The open connections (each endpoint sets its own).
    connections: Set[Any]

    if TYPE_CHECKING:  # what each endpoint defines
        address: Address
        #: Leave a unix socket's file in place at stop (a successor serves it).
        keep_socket_file: bool

        def bind(self) -> None: ...
        def start(self) -> None: ...
        def stop(self, timeout: Optional[float] = None) -> None: ...
        def close_in_child(self) -> None: ...

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
    """The greenlet pool of an endpoint: ``socketmaxconnections`` served (TLS
    handshakes included) plus :data:`REFUSAL_SLACK` evicted ones still closing
    or refused ones in the TLS handshake that carries their refusal.

    A full pool stops the server from accepting: further clients wait in the
    kernel's backlog, so whatever they do the daemon's descriptors stay
    bounded (issue 8).
    """
    return Pool(config["socketmaxconnections"] + REFUSAL_SLACK)


#: Connections an endpoint holds beyond ``socketmaxconnections``: evicted ones
#: until their greenlet ends, refused ones until their ``-32004`` went out over TLS.
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


class TimeSlice:
    """Makes one connection's reader yield once it kept the hub busy for :attr:`length` seconds.

    A client that sends faster than we read (calls, pings, 1 MB lines) never
    makes a read wait, so without this its greenlet would never give the
    hub away.  Only time since the event loop last *polled* counts: a read
    that waited went through the hub, which polled for every other
    connection, so a request/response client pays no yield per call.  The
    loop's iteration counter tells whether it polled since the last look:
    no clock reads around each read, no extra loop iteration per call.

    Call :meth:`check` between units of work (a line, a frame).
    """

    #: Seconds a connection may keep the hub busy before it yields (docs/reference/rpc.rst, What one client can cost).
    length = 0.0005
    #: Seconds at most it then waits for the loop to have nothing else to do.
    max_yield = 0.01

    def __init__(self):
        self._loop = gevent.get_hub().loop
        self._iteration = getattr(self._loop, "iteration", None)
        self.busy_since = time.monotonic()

    def check(self, now=None):
        """Yield if this connection used up its slice (``now``: ``time.monotonic()`` if read already)."""
        iteration = getattr(self._loop, "iteration", None)
        if now is None:
            now = time.monotonic()
        if iteration != self._iteration or iteration is None and now - self.busy_since > self.length * 4:
            # The loop polled since our last look (or, on a loop without a
            # counter, assume so after a long gap): the others had their turn.
            self._iteration = iteration
            self.busy_since = now
            return
        if now - self.busy_since >= self.length:
            # idle(), not sleep(0): sleep(0) may run us again before the loop
            # polls for I/O (measured: daemon.status p99 115 ms behind four
            # 1 MB-line attackers, against 6 ms with idle()).  But bounded: a
            # loop that is never idle must not starve us.
            # False: expire silently (documented by gevent, missing from its stubs).
            with gevent.Timeout(self.max_yield, False):  # type: ignore[arg-type]
                gevent.idle()
            self._iteration = getattr(self._loop, "iteration", None)
            self.busy_since = time.monotonic()


def pending(sock):
    """Bytes waiting to be read on ``sock`` (``FIONREAD``: one system call, never blocks, reads nothing)."""
    import termios  # here: only a full server asks, and it is 1 ms of every start-up
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):  # closed already: it is going anyway
        return 0


class Slot:
    """One connection as :class:`Admission` sees it, from its accept to its close."""

    __slots__ = ("sock", "greenlet", "since", "progress", "settled", "evicted", "running")

    def __init__(self, sock, settled=False):
        #: The accepted socket (what waits to be read is counted on its descriptor).
        self.sock = sock
        #: The greenlet serving it (killed when it is evicted).
        self.greenlet = None
        #: ``time.monotonic()`` when it began waiting for what would settle it.
        self.since = time.monotonic()
        #: How far it got towards settling (bytes, TLS steps): the least is evicted first.
        self.progress = 0
        #: True once it cannot be evicted (authenticated, handshake done, head complete).
        self.settled = settled
        #: Set when a newcomer took its place.
        self.evicted = False
        #: Set once its greenlet began running.
        self.running = False

    def unsettle(self):
        """Evictable again, from now on, with no progress (an HTTP keep-alive wait)."""
        self.settled = False
        self.progress = 0
        self.since = time.monotonic()


class Admission:
    """``socketmaxconnections`` for one endpoint, with eviction of strangers (see the module docstring).

    :param limit: the most connections served at once.
    """

    def __init__(self, limit):
        self.limit = limit
        #: The live slots (evicted ones leave at once, their greenlet dies soon after).
        self.slots = set()

    def __len__(self):
        return len(self.slots)

    def admit(self, sock, settled=False):
        """A :class:`Slot` for a new connection (evicting a stranger if need be), or ``None``: refuse it."""
        if len(self.slots) >= self.limit:
            victim = self.victim()
            if victim is None:
                return None
            self.evict(victim)
        slot = Slot(sock, settled)
        self.slots.add(slot)
        return slot

    def victim(self):
        """The unsettled connection with the least progress, counting what waits to be read; the oldest among equals."""
        best, best_key = None, None
        for slot in self.slots:
            if slot.settled:
                continue
            # Among equals, one whose greenlet has not run yet comes after
            # those that did and are silent: its client may be about to speak
            # (connect() returns before the first send, and a busy machine
            # can pause a process in between).
            key = (slot.progress + pending(slot.sock), not slot.running, slot.since)
            if best_key is None or key < best_key:
                best, best_key = slot, key
        return best

    def evict(self, slot):
        """End ``slot``'s connection to make room (its greenlet closes it)."""
        slot.evicted = True
        self.slots.discard(slot)
        if slot.greenlet is not None:
            slot.greenlet.kill(block=False)
        if not slot.running:
            # Never ran: nothing of its own will close the socket.
            try:
                slot.sock.close()
            except OSError:
                pass

    def release(self, slot):
        """The connection closed (idempotent)."""
        self.slots.discard(slot)


class BoundedServer:
    """Mixin for the gevent servers of our endpoints: admission and bounded TLS handshakes.

    Every accepted connection goes through :attr:`admission` in the accept
    loop (:meth:`do_handle`, gevent's hook); an admitted one is served by
    :meth:`handle_slot` in a greenlet of the pool, after its TLS handshake if
    the server speaks TLS; a refused one gets :meth:`refusal` (over TLS, after
    a bounded handshake of its own, so that the client can read it).

    gevent's own ``wrap_socket_and_handle`` waits for a handshake forever (a
    client that connects and says nothing holds a greenlet and a descriptor)
    and prints a traceback for every failed one: ours is bounded by
    :attr:`handshake_timeout`, logged at debug level, and reports progress
    (the ClientHello arrived, the handshake finished) to the slot.
    """

    #: Seconds a client has to complete the TLS handshake.
    handshake_timeout = 2.0
    #: The endpoint's :class:`Admission` (:meth:`set_admission`, before serving).
    admission: Optional[Admission] = None
    #: True when a plain connection is settled from its accept (a raw socket without token).
    settled_on_accept = False
    #: True when a connection is settled once its TLS handshake is done.
    settled_on_handshake = False

    if TYPE_CHECKING:  # provided by the gevent server this class is mixed into
        ssl_enabled: bool
        max_accept: int

    def set_admission(self, admission):
        """Count this server's connections in ``admission``.

        It accepts at most half the limit in one go before the loop runs the
        greenlets it spawned, so that a burst of strangers cannot evict a
        newcomer before its first bytes are seen.
        """
        self.admission = admission
        self.max_accept = max(1, min(self.max_accept, admission.limit // 2))

    def do_handle(self, sock, address):
        assert self.admission is not None  # set_admission() comes before serving
        slot = self.admission.admit(sock, settled=self.settled_on_accept and not self.ssl_enabled)
        try:
            if slot is None:
                if self.ssl_enabled:
                    spawn(self, self._refuse_tls, sock, address)
                else:
                    self._refuse(sock, address)
                return
            slot.greenlet = spawn(self, self._serve_slot, slot, sock, address)
        except BaseException:
            if slot is not None:
                self.admission.release(slot)
            sock.close()
            raise

    def _serve_slot(self, slot, sock, address):
        assert self.admission is not None  # set_admission() comes before serving
        slot.running = True
        try:
            if self.ssl_enabled:
                tls_sock = self._handshake(sock, address, slot)
                if tls_sock is None:
                    return
                sock = slot.sock = tls_sock
                if self.settled_on_handshake:
                    slot.settled = True
            self.handle_slot(sock, address, slot)
        finally:
            self.admission.release(slot)
            sock.close()

    def _handshake(self, sock, address, slot=None):
        """The TLS socket of ``sock`` once its handshake is done, or ``None`` (``sock`` closed)."""
        deadline = time.monotonic() + self.handshake_timeout
        try:
            wait_read(sock.fileno(), self.handshake_timeout)
            if slot is not None:
                slot.progress += 1  # the ClientHello arrived: no longer silent
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            ssl_sock = wrap_tls(self, sock)
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            log.debug("TLS handshake with %s failed: %s", address, exc)
            sock.close()
            return None
        if slot is not None:
            slot.progress += 1
        return ssl_sock

    def _refuse_tls(self, sock, address):
        ssl_sock = self._handshake(sock, address)
        if ssl_sock is not None:
            self._refuse(ssl_sock, address)

    def _refuse(self, sock, address):
        try:
            self.refusal(sock, address)
        finally:
            sock.close()

    def handle_slot(self, sock, address, slot):
        """Serve an admitted connection (``sock`` is the TLS socket over TLS)."""
        raise NotImplementedError

    def refusal(self, sock, address):
        """Say why ``sock`` is refused (:func:`refuse_connection`), then it is closed."""
        raise NotImplementedError
