"""The RPC socket server: newline-framed JSON-RPC over unix, TCP or TLS sockets.

One greenlet per connection reads lines and answers them in order through the
pure :class:`~gdaemon.rpc.protocol.Engine`.  Pipelined requests that arrive
together are answered with one ``sendall``, up to :data:`COMBINED_REPLIES_MAX`
bytes of replies at a time.  Limits (docs/reference/config.rst; docs/reference/rpc.rst, Errors):

- ``socketmaxmessage``: a longer line gets ``-32003`` and the connection is
  closed (we stop buffering as soon as the limit is passed, so a 10 MB line
  costs at most ``socketmaxmessage`` bytes of memory);
- ``sockettimeout``: once the first byte of a request arrived, the rest must
  follow within this many seconds, or the connection is closed without a
  reply (slow-loris guard);
- ``socketidle``: an idle connection is closed after this many seconds, unless
  it subscribed to events (``gdaemon-ctl tail -f`` follows a quiet daemon);
- ``socketmaxconnections``: counts every connection from its accept, TLS
  handshakes included.  One more takes the place of a connection that has
  not authenticated yet (with ``token``) or not finished its TLS handshake,
  the one that made the least progress (docs/reference/rpc.rst, What one client can cost,
  :class:`~gdaemon.rpc.endpoint.Admission`); when there is none it gets a
  ``-32004`` line and is closed at once.  Connections are served by a bounded
  greenlet pool (:func:`~gdaemon.rpc.endpoint.connection_pool`), so a flood
  waits in the kernel's backlog instead of costing descriptors;
- ``socketauthtimeout``: with ``token`` set, a connection that has not
  authenticated within this many seconds gets a ``-32001`` line and is closed,
  so idle strangers cannot hold every slot for ``socketidle`` seconds;
- ``socketmaxbatch``: checked by the engine before a line is decoded.

End of input ends a line: a last request without its newline, from a client
that shut down its sending side, is answered before we close (docs/reference/rpc.rst, Framing).

Reading: each ``recv`` appends to a ``bytearray`` and only the new bytes are
searched for the newline, so a line costs linear time however it is split;
a connection that keeps the hub busy for half a millisecond yields
(:class:`~gdaemon.rpc.endpoint.TimeSlice`), so one fast client cannot starve
the others: TLS connections alike.

Errors clients cause are logged through a
:class:`~gdaemon.ratelimit.RateLimitedLog`: once per kind per interval, with
a count of the rest, never a traceback.

Events pushed to subscribers are written by a second greenlet per
subscribing connection; both writers share a lock so lines never interleave.

Fork safety: a forked worker must not keep the listening socket or client
connections open; :meth:`RpcServer.close_in_child` closes their descriptors
without shutting the sockets down (which would affect the daemon's copies).
"""

import logging
import os
import socket
import stat
import time
from typing import Any, Optional, Set

import gevent
from gevent.lock import Semaphore
from gevent.server import StreamServer

from .. import inherited
from ..process import close_fd
from ..compat.gevent_socket import recv_when_readable, send_now
from ..errors import MessageTooLarge, TooManyConnections, Unauthorized
from ..ratelimit import RateLimitedLog
from ..wire import codec
from .endpoint import (Admission, BoundedServer, TimeSlice, Transport, bind_listener, connection_pool, linger,
                       refuse_connection)
from .protocol import Session
from .push import EventPusher

__all__ = ["RpcServer", "Connection"]

#: Bytes of replies to pipelined requests collected before they are written.
#: Small replies still go out together, with one ``sendall``; large ones are
#: written as they come, so one read of short requests (``daemon.logtail``
#: with 10,000 lines, thirty times over) costs one reply's memory, not thirty,
#: and a client that does not read stops the next one from being computed.
COMBINED_REPLIES_MAX = 65536

log = logging.getLogger("gdaemon.rpc")


def _error_line(exc):
    return codec.dumps({"jsonrpc": "2.0", "error": exc.to_dict(), "id": None}) + b"\n"


class _StreamServer(BoundedServer, StreamServer):
    """StreamServer with admission (``socketmaxconnections``) and TLS handshakes bounded by ``sockettimeout``."""

    #: The endpoint serving, set by :meth:`RpcServer.start` before the server starts.
    endpoint: "RpcServer"

    def handle_slot(self, sock, address, slot):
        self.endpoint.serve_connection(sock, address, slot)

    def refusal(self, sock, address):
        self.endpoint.refuse(sock, address)


class Connection:
    """One client connection: reads lines, answers in order, pushes events.

    :param slot: its :class:`~gdaemon.rpc.endpoint.Slot` (settled once it authenticated).
    """

    def __init__(self, server, sock, peer, slot=None):
        self.server = server
        self.sock = sock
        self.slot = slot
        self.session = Session(peer=peer, transport="socket", max_batch=server.config["socketmaxbatch"])
        self.write_lock = Semaphore()
        #: True while a request is being handled (stop() lets it finish).
        self.busy = False
        #: Set by stop(): finish the current request, then close.
        self.closing = False
        self.greenlet = gevent.getcurrent()
        self.pusher = EventPusher(self.session, self.flush_events, self._push_failed)
        # While the reader waits for the next request (or writes a reply) it
        # has no socket timeout: a gevent timeout is an object and a timer per
        # wait, on the path of every request.  ``socketidle`` is kept by one
        # lazy timer instead (see _check_idle): the deadline the reader is
        # blocked until, or None while it works.
        self._idle_timeout = server.config["socketidle"]
        self._blocked_until: Optional[float] = None
        self._idle_timer: Optional[Any] = None
        #: Not TLS: a TLS socket may hold bytes its descriptor does not show,
        #: and its send() must go through the TLS layer.
        self._plain = not hasattr(sock, "pending")

    # -- event push ---------------------------------------------------------

    def flush_events(self):
        lines = self.session.pending_notifications()
        if lines:
            self.write(b"\n".join(lines) + b"\n")

    def _push_failed(self):
        # The peer went away; the reader greenlet notices and cleans up.
        log.debug("push to %s failed", self.session.peer, exc_info=True)

    def write(self, data):
        if self._plain and not self.write_lock.locked():
            # The common case: the reply fits the socket's buffer and nobody
            # else is writing.  send_now() never switches greenlets, so no
            # other writer can come between its check and its send.
            sent = send_now(self.sock, data)
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        with self.write_lock:
            reader = gevent.getcurrent() is self.greenlet
            if reader:  # a reply: a client that never reads is idle too
                self._blocked_until = time.monotonic() + self._idle_timeout
            try:
                # One send() takes a whole reply nearly always; gevent's
                # sendall() asks the kernel for SO_SNDBUF on every call.
                sent = self.sock.send(data)
                if sent < len(data):
                    self.sock.sendall(memoryview(data)[sent:])
            finally:
                if reader:
                    self._blocked_until = None

    def _arm_idle_timer(self, seconds):
        timer = self._idle_timer
        if timer is not None:
            timer.stop()
            timer.close()
        self._idle_timer = timer = gevent.get_hub().loop.timer(max(seconds, 0.001), ref=False)
        timer.start(self._check_idle)

    def _check_idle(self):
        """Timer callback (hub): end a wait that passed ``socketidle``, else look again later."""
        deadline = self._blocked_until
        if deadline is None:
            self._arm_idle_timer(self._idle_timeout)  # working, or waiting with a socket timeout
            return
        remaining = deadline - time.monotonic()
        if remaining > 0:
            self._arm_idle_timer(remaining)
            return
        assert self._idle_timer is not None  # this callback is the armed timer's
        self._idle_timer.close()
        self._idle_timer = None
        self._blocked_until = None
        self.greenlet.throw(socket.timeout("idle for %ss" % self._idle_timeout))

    # -- request loop -------------------------------------------------------

    def serve(self):
        cfg = self.server.config
        engine = self.server.engine
        sock = self.sock
        session = self.session
        bufsize = cfg["socketbuffer"]
        maxmessage = cfg["socketmaxmessage"]
        request_timeout = cfg["sockettimeout"]
        idle_timeout = cfg["socketidle"]
        now = time.monotonic()
        auth_deadline = now + cfg["socketauthtimeout"] if engine.token is not None else None
        idle_deadline = None  # set from the clock read at the top of the loop
        line_deadline = 0.0
        timeout = None  # the socket's current timeout: set only when it changes
        # The partial line, and how much of it is known to hold no newline:
        # each byte is searched once, so a 1 MB line read 1 KB at a time
        # costs linear time, not quadratic (issue 8).
        buf = bytearray()
        scanned = 0
        # Only a client that keeps recv() from ever waiting must yield; a
        # request/response client gives the hub away at every recv.
        time_slice = TimeSlice()
        slot = self.slot
        inf = float("inf")
        plain = self._plain
        wait_first = False
        while not self.closing:
            now = time.monotonic()
            if buf:
                deadline = line_deadline
            elif session.patterns:
                deadline = inf  # a subscriber is not idle (docs/reference/rpc.rst, What one client can cost)
            else:
                if idle_deadline is None:
                    idle_deadline = now + idle_timeout
                deadline = idle_deadline
            if auth_deadline is not None and not session.authenticated:
                deadline = min(deadline, auth_deadline)
            if now >= deadline:
                if auth_deadline is not None and not session.authenticated and now >= auth_deadline:
                    self._auth_timed_out(cfg["socketauthtimeout"])
                elif buf:
                    self.server.client_errors.log(
                        "incomplete", logging.INFO, "closing %s: request incomplete after %ss",
                        session.peer, request_timeout)
                else:
                    log.debug("closing idle connection %s", session.peer)
                return
            time_slice.check(now)
            if deadline is idle_deadline:
                # Waiting for the next request: no socket timeout, the idle
                # timer ends the wait (see __init__).
                wait = None
                self._blocked_until = deadline
                if self._idle_timer is None:
                    self._arm_idle_timer(deadline - now)
            else:
                wait = None if deadline == inf else deadline - now
            if wait != timeout:
                sock.settimeout(wait)
                timeout = wait
            try:
                # After a reply, with nothing buffered, the client has most
                # likely sent nothing yet: wait first, then read (no EAGAIN).
                data = recv_when_readable(sock, bufsize) if wait_first else sock.recv(bufsize)
            except socket.timeout:
                continue  # the top of the loop tells which deadline passed
            finally:
                self._blocked_until = None
            if slot is not None and not slot.settled:
                slot.progress += len(data)
            if not data:
                # End of input ends the last line (docs/reference/rpc.rst, Framing): answer it, then close.
                if buf.strip():
                    self._answer(engine, [buf])
                return
            if not buf and data.find(b"\n") == len(data) - 1 and len(data) <= maxmessage:
                # The common case: one whole request in one read and nothing
                # after it; no buffer to fill and empty again.
                lines = [data]
            else:
                if not buf:
                    line_deadline = now + request_timeout
                buf += data
                newline = buf.find(b"\n", scanned)
                if newline < 0:
                    scanned = len(buf)
                    if scanned > maxmessage:
                        self._too_large(maxmessage)
                        return
                    continue
                lines = []
                start = 0
                if newline == len(buf) - 1 and newline <= maxmessage:
                    # One whole line and nothing after it (what a big request
                    # usually is): hand the buffer itself over, no copy.
                    del buf[newline:]
                    lines.append(buf)
                    buf = bytearray()
                    newline = -1
                with memoryview(buf) as view:  # one copy per line, not two
                    while newline >= 0 and newline - start <= maxmessage:
                        lines.append(bytes(view[start:newline]))
                        start = newline + 1
                        newline = buf.find(b"\n", start)
                if newline >= 0:  # a complete line, too long
                    self._answer(engine, lines, time_slice)
                    if not session.close_after:
                        self._too_large(maxmessage)
                    return
                del buf[:start]
                scanned = len(buf)
            self._answer(engine, lines, time_slice)
            wait_first = plain and not buf
            if session.close_after:
                return
            if slot is not None and session.authenticated:
                slot.settled = True
            if buf:
                if scanned > maxmessage:
                    self._too_large(maxmessage)
                    return
                line_deadline = time.monotonic() + request_timeout
            idle_deadline = None  # idle from the next look at the clock

    def _answer(self, engine, lines, time_slice=None):
        """Handle complete lines in order; write their responses with one sendall
        (up to :data:`COMBINED_REPLIES_MAX` bytes at a time).  Between pipelined
        lines ``time_slice`` is checked, as between reads: one read holds up to
        ``socketbuffer`` bytes of short requests, each maybe a millisecond of
        work (``worker.status`` of 1,000 workers), and the others must not wait
        for all of them."""
        if not lines:
            return
        session = self.session
        out = []
        collected = 0
        self.busy = True
        try:
            for index, line in enumerate(lines):
                if index and time_slice is not None:
                    time_slice.check()
                response = engine.handle_line(line, session)
                if response is not None:
                    out.append(response + b"\n")
                    collected += len(response) + 1
                    if collected >= COMBINED_REPLIES_MAX:
                        self.write(out[0] if len(out) == 1 else b"".join(out))
                        out = []
                        collected = 0
                if session.close_after:
                    break
                if session.patterns and not self.pusher.running:
                    self.pusher.start()
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
        finally:
            self.busy = False

    def _auth_timed_out(self, seconds):
        """``socketauthtimeout`` passed without ``system.auth``: say so, then close."""
        self.server.client_errors.log("auth-timeout", logging.INFO,
                                      "closing %s: not authenticated after %ss", self.session.peer, seconds)
        try:
            self.sock.settimeout(self.server.config["sockettimeout"])
            self.write(_error_line(Unauthorized("authentication timed out after %ss" % seconds)))
        except OSError:
            pass  # the client is gone: we close anyway

    def _too_large(self, maxmessage):
        """Answer ``-32003``, then close without losing that answer.

        A client still busy sending its huge line may never read our reply
        if we close at once (:func:`~gdaemon.rpc.endpoint.linger`).  So:
        reply, shut our side down, and discard what keeps coming for at most
        ``sockettimeout`` seconds (a lingering close).
        """
        self.server.client_errors.log("too-large", logging.INFO,
                                      "closing %s: request line exceeds %d bytes", self.session.peer, maxmessage)
        self.write(_error_line(MessageTooLarge("request line exceeds %d bytes" % maxmessage)))
        try:
            self.sock.shutdown(socket.SHUT_WR)
            linger(self.sock, self.sock.recv, self.server.config["sockettimeout"])
        except (OSError, socket.timeout):
            pass  # the client is gone or too slow: we close anyway

    def close(self):
        self.pusher.stop()
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None:
            timer.stop()
            timer.close()
        try:
            self.sock.close()
        except OSError:
            pass


class RpcServer(Transport):
    """Serves the daemon's engine on its ``sockethandler``.

    :param config: the daemon's :class:`~gdaemon.config.Config`.
    :param engine: the :class:`~gdaemon.rpc.protocol.Engine`.
    :param events: the daemon's event bus (``rpc.connect``/``rpc.disconnect``).
    :param fanout: the subscriber registry sessions are removed from on close.
    """

    #: Seconds stop() lets a connection finish the request it is handling.
    stop_grace = 2.0

    def __init__(self, config, engine, events, fanout=None, ssl_context=None):
        self.config = config
        self.engine = engine
        self.events = events
        self.fanout = fanout
        self.address = config.address
        self.ssl_context = ssl_context
        self.connections: Set[Connection] = set()
        self.listener: Optional[socket.socket] = None
        self._server: Optional[_StreamServer] = None
        self._inode: Optional[int] = None
        #: Leave the socket file in place at stop (a successor serves it).
        self.keep_socket_file = False
        #: Who is counted against ``socketmaxconnections`` (set by start()).
        self.admission: Optional[Admission] = None
        #: Errors clients cause (timeouts, oversized lines, refusals), logged
        #: once per kind per interval (:class:`~gdaemon.ratelimit.RateLimitedLog`).
        self.client_errors = RateLimitedLog(log)

    def bind(self):
        """Open the listening socket (before daemon.ready), or adopt an inherited
        one (:mod:`gdaemon.inherited`); raises ProcessError."""
        adopted = inherited.take("rpc", self.address)
        if adopted is not None:
            self.listener = adopted.socket()
            self.listener.setblocking(False)
            # A socket file systemd made stays systemd's; one the daemon we
            # replace made is ours now, removed when we stop.
            if self.address.is_unix and adopted.owns_file:
                self._inode = os.stat(self.address.path).st_ino
            return
        self.listener = bind_listener(self.address, self.config["socketmode"])
        if self.address.is_unix:
            self._inode = os.stat(self.address.path).st_ino

    def start(self):
        """Start accepting connections."""
        if self.listener is None:
            self.bind()
        assert self.listener is not None  # bind() bound it or raised
        kwargs = {"ssl_context": self.ssl_context} if self.ssl_context is not None else {}
        server = _StreamServer(self.listener, self.serve_connection, spawn=connection_pool(self.config), **kwargs)
        server.endpoint = self
        self.admission = Admission(self.config["socketmaxconnections"])
        server.set_admission(self.admission)
        # Without a token a connection has nothing more to prove once it is in.
        server.settled_on_accept = server.settled_on_handshake = self.engine.token is None
        server.handshake_timeout = self.config["sockettimeout"]
        server.start()
        self._server = server

    def refuse(self, sock, peer):
        """``socketmaxconnections`` reached and nobody to evict: one ``-32004`` line, then close."""
        limit = self.config["socketmaxconnections"]
        self.client_errors.log("too-many", logging.WARNING,
                               "refused a connection from %s: too many connections (limit %d)",
                               self._peer_name(sock, peer), limit)
        refuse_connection(sock, _error_line(TooManyConnections("too many connections (limit %d)" % limit)))

    def serve_connection(self, sock, peer, slot=None):
        """Serve one admitted connection until it closes."""
        if not self.address.is_unix:
            # Replies are written whole; don't let Nagle delay them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer_name = self._peer_name(sock, peer)
        conn = Connection(self, sock, peer_name, slot)
        self.connections.add(conn)
        self.events.emit("rpc.connect", peer=peer_name)
        try:
            conn.serve()
        except OSError as exc:
            log.debug("connection %s: %s", peer_name, exc)
        except gevent.GreenletExit:
            if slot is not None and slot.evicted:
                log.debug("closed %s (not authenticated) to make room for a new connection", peer_name)
            raise
        except Exception:
            # A bug, not the client's fault: log it, drop this connection only.
            log.exception("connection %s failed", peer_name)
        finally:
            self.connections.discard(conn)
            if self.fanout is not None:
                self.fanout.discard(conn.session)
            conn.close()
            self.events.emit("rpc.disconnect", peer=peer_name)

    def _peer_name(self, sock, peer):
        if self.address.is_unix:
            try:
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid = int.from_bytes(creds[:4], "little")
                return "unix:pid=%d" % pid
            except (OSError, AttributeError):
                return "unix"
        if isinstance(peer, tuple) and len(peer) >= 2:
            return "%s:%s" % (peer[0], peer[1])
        return str(peer)

    def stop(self, timeout=None):
        """Close the listener, let busy connections finish, close all, unlink the socket file."""
        self.close_listener()
        grace = self.stop_grace if timeout is None else timeout
        self.drain_connections(grace)
        self.remove_socket_file()
        self.client_errors.flush()

    def remove_socket_file(self):
        """Unlink our unix socket file, if it is still ours (never while handing over)."""
        if not self.address.is_unix or self._inode is None or self.keep_socket_file:
            return
        try:
            st = os.stat(self.address.path)
            if st.st_ino == self._inode and stat.S_ISSOCK(st.st_mode):
                os.unlink(self.address.path)
        except FileNotFoundError:
            pass
        except PermissionError:  # dropped root, the directory is not ours: -s removes it
            log.warning("cannot remove %s: permission denied (the next start needs -s)",
                        self.address.path)
        self._inode = None

    def close_in_child(self):
        """In a forked worker: drop our descriptors without touching the sockets' state."""
        if self.listener is not None:
            try:
                close_fd(self.listener.detach())
            except OSError:
                pass
        for conn in self.connections:
            try:
                close_fd(conn.sock.detach())
            except OSError:
                pass
        self.connections = set()
        self._inode = None
