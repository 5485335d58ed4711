"""The shared-memory command channel between the daemon and one forked worker.

A :class:`Channel` is created by the daemon **before** it forks a worker.  It
owns one anonymous ``MAP_SHARED`` memory mapping (nothing is named in
``/dev/shm``, so nothing can leak when a process dies) and two pipes.  The
mapping holds:

- a :class:`StatusBlock` (state, pid, heartbeat, loop count) that both sides
  read and write;
- two single-producer single-consumer rings of length-prefixed messages, one
  daemon -> worker and one worker -> daemon.

Each pipe is a *doorbell*: after publishing a message the producer writes one
byte to it, so a consumer with nothing to read sleeps in the gevent hub on the
pipe's read end and wakes at once, instead of polling.  The doorbell carries no
data; messages only ever travel through the ring, so a full pipe is harmless.

After the fork each process picks its side, which closes the other side's pipe
ends and returns an :class:`Endpoint`::

    ch = Channel()                      # in the daemon, before fork
    pid = gevent.fork()
    if pid == 0:
        end = ch.worker_end()           # child
    else:
        end = ch.daemon_end()           # parent
    end.send(b"hello")                  # -> 9 (4-byte header + payload)
    end.recv(timeout=1.0)               # -> bytes, or None on timeout

A greenlet worker (same process) uses :meth:`Channel.pair` instead.

Ring format
-----------
Each ring is ``capacity`` bytes of data plus two 64-bit counters in the shared
header: ``tail`` (bytes ever written; only the producer stores it) and
``head`` (bytes ever consumed; only the consumer stores it).  They only grow,
so ``tail - head`` is the number of bytes in use and ``counter % capacity`` a
position; they cannot overflow in practice (2**63 bytes).  A record is a
native ``uint32`` payload length followed by the payload, padded to a multiple
of 4 bytes.  Since ``capacity`` is a multiple of 4 too, a length word never
straddles the end of the buffer, while a payload may: it is then copied in two
parts.  The largest message is ``capacity - 4`` bytes
(:attr:`Channel.max_message_size`; 262140 bytes with the default capacity).

Memory ordering
---------------
Python has no memory barriers, so the protocol relies on the hardware:

- the producer copies the payload (``mmap`` slice assignment: a plain
  ``memcpy``), stores the length word, and only then stores the new ``tail``
  (one aligned 8-byte store through a ``memoryview`` cast to ``'q'``, which
  CPython's ``memcpy`` of 8 bytes compiles to on every 64-bit target, so a
  counter is never torn);
- the consumer loads ``tail``, copies the record out into a new ``bytes``
  object, and only then stores the new ``head``.

On x86 and x86-64 (TSO) stores are not reordered with other stores and loads
are not reordered with other loads or with later stores, so a consumer that
sees the new ``tail`` also sees the payload, and a producer that sees the new
``head`` cannot overwrite bytes still being copied.  On weakly ordered CPUs
(ARM, POWER) that is **not** guaranteed by the architecture: in theory the
``tail`` store could become visible before the payload.  What does hold there
is that the doorbell ``write(2)``, issued after ``tail`` is published, and the
consumer's ``read(2)`` of it are system calls that take the pipe's lock, i.e.
full barriers: a consumer woken by the doorbell (the slow path, always taken
when the ring was empty) sees everything the producer wrote before ringing.
The remaining window is the fast path, when the consumer finds a message
without having waited; it is narrow (the interpreter runs thousands of
instructions between the two stores) but real.  Linux on x86-64, whose
stores are seen in order, is the supported target.

The status block fields are single aligned 8-byte words, so each is read and
written atomically; the heartbeat is stored as integer nanoseconds of
``time.monotonic_ns()`` (``CLOCK_MONOTONIC`` is system-wide on Linux, so the
daemon and its workers agree), never as a float that could tear.

Fork safety
-----------
The mapping and the pipes must exist before the fork: both processes then
share the same pages and pipe objects.  Endpoints and their gevent watchers
are created after the fork, in the process that uses them.  A process that
inherited *another* worker's channel (a sibling forked later) must call
:meth:`Channel.close` on it: otherwise its copies of the pipe ends keep the
doorbells open and hide the peer's death.  Closing a channel in a process other
than the one that created an endpoint only releases the local copies: it never
marks the shared "closed" flags nor rings the doorbells, so the real owners
are not disturbed.  All fds are ``O_CLOEXEC`` and non-blocking.

Signal safety
-------------
Nothing here is async-signal-safe; call it from greenlets, never from a raw
signal handler.  System calls interrupted by a signal are retried by Python
(PEP 475).  :meth:`Endpoint.send` never blocks and never yields to the hub, so
several greenlets of one process may send on one endpoint (they cannot
interleave); threads may not.  Only one greenlet at a time may wait in
:meth:`Endpoint.recv` on a given endpoint.
"""

# Design decisions:
#
# - One mapping per channel, laid out as a 4 KiB header (status block, closed
#   flags and the four ring counters, each counter alone on a 64-byte cache
#   line so the producer and the consumer do not false-share) followed by the
#   two data areas.  Anonymous MAP_SHARED: the kernel frees it when the last
#   process unmaps it or dies; nothing to unlink.
# - Payload copies go through the mmap object itself: ``mm[a:b]`` builds the
#   result ``bytes`` directly (the only per-message allocation on receive) and
#   ``mm[a:b] = data`` is a memcpy.  Counters and length words go through
#   memoryview casts, i.e. single native loads and stores.
# - A message larger than ``max_message_size`` raises ChannelMessageTooLarge,
#   a subclass of both ChannelFull (so existing "channel full" handling, e.g.
#   the -32005 RPC error, covers it) and ValueError (it is the caller's
#   mistake and retrying will not help).
# - Closing is signalled two ways: a shared per-side "closed" flag (set by
#   Endpoint.close(), followed by a doorbell byte so a sleeping reader wakes)
#   and EOF on the doorbell pipe (the only thing a SIGKILLed peer leaves).
#   Messages published before the close are still delivered; only an empty
#   ring reports ChannelClosed.
# - The doorbell is rung for every message: skipping it when the ring was not
#   empty would need a "reader is asleep" flag, whose store-then-load check is
#   a Dekker pattern that needs a StoreLoad barrier Python cannot issue.

import mmap
import os
from typing import Any, Dict, Optional, Tuple

from gevent import Timeout, get_hub
from gevent.exceptions import ConcurrentObjectUseError

from ..errors import ChannelClosed, ChannelMessageTooLarge
from ..process import close_fd as _raw_close

__all__ = ["Channel", "Endpoint", "StatusBlock", "ChannelMessageTooLarge",
           "DEFAULT_CAPACITY", "HEADER_SIZE", "RECORD_HEADER_SIZE"]


from .shm import (DEFAULT_CAPACITY, HEADER_SIZE, MAGIC_VALUE, MAX_CAPACITY, RECORD_HEADER_SIZE,
                  Ring, StatusBlock, _CAPACITY, _D2W_HEAD, _D2W_TAIL, _DAEMON_CLOSED, _MAGIC,
                  _W2D_HEAD, _W2D_TAIL, _WORKER_CLOSED)

# Indexes into Channel._fds.
_D2W_R, _D2W_W, _W2D_R, _W2D_W, _MEMFD = 0, 1, 2, 3, 4

DAEMON = "daemon"
WORKER = "worker"

# Per side: (rx ring index, tx ring index, rx fd, tx fd, own flag, peer flag).
_SIDES = {
    DAEMON: (1, 0, _W2D_R, _D2W_W, _DAEMON_CLOSED, _WORKER_CLOSED),
    WORKER: (0, 1, _D2W_R, _W2D_W, _WORKER_CLOSED, _DAEMON_CLOSED),
}

_BELL = b"\0"


def _map_fd(fd, size):
    """Map ``fd`` shared; ``(mmap, the descriptor mmap keeps)``.

    CPython's ``mmap`` keeps a private dup of the file's descriptor for its
    whole life (3.13's ``trackfd=False`` is not there before), and that dup
    is inherited by every child forked meanwhile.  It is the lowest free
    descriptor when the mapping is made: found out here (and checked) so
    that the fork registry can close it in children.
    """
    candidate = os.dup(fd)
    _raw_close(candidate)
    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        if os.path.samestat(os.fstat(candidate), os.fstat(fd)):
            return mm, candidate
    except OSError:
        pass
    for name in os.listdir("/proc/self/fd"):  # someone took the candidate meanwhile
        other = int(name)
        try:
            if other != fd and os.path.samestat(os.fstat(other), os.fstat(fd)):
                return mm, other
        except OSError:
            continue
    return mm, None


def _pipe():
    """A non-blocking, close-on-exec pipe: ``(read_fd, write_fd)``."""
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    r, w = os.pipe()  # non-inheritable (FD_CLOEXEC) since Python 3.4
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


class Endpoint:
    """One side of a :class:`Channel`: sends on one ring, receives on the other.

    Obtained from :meth:`Channel.daemon_end`, :meth:`Channel.worker_end` or
    :meth:`Channel.pair`; never built directly.  The fds and the mapping
    belong to the channel: :meth:`close` closes this side's two doorbell fds,
    :meth:`Channel.close` everything.
    """

    #: Size of the buffer the doorbell is drained into (reused, no allocation).
    drain_buffer_size = 4096

    def __init__(self, channel, side):
        rx, tx, rfd_index, wfd_index, own_flag, peer_flag = _SIDES[side]
        self.channel = channel
        self.side = side
        self.max_message_size = channel.max_message_size
        self._rx = channel._rings[rx]
        self._tx = channel._rings[tx]
        self._rfd_index = rfd_index
        self._wfd_index = wfd_index
        self._rfd = channel._fds[rfd_index]
        self._wfd = channel._fds[wfd_index]
        self._words = channel._words
        self._own_flag = own_flag
        self._peer_flag = peer_flag
        self._pid = os.getpid()
        self._closed = False
        self._eof = False
        self._bufs = [bytearray(self.drain_buffer_size)]
        #: The io watcher on the doorbell, its hub and process (set together).
        self._watcher: Optional[Any] = None
        self._watcher_hub: Optional[Any] = None
        self._watcher_pid: Optional[int] = None

    def __repr__(self):
        return "<Endpoint %s rfd=%d wfd=%d%s>" % (
            self.side, self._rfd, self._wfd, " closed" if self._closed else "")

    @property
    def closed(self):
        """True once this endpoint (or its channel) was closed."""
        return self._closed

    @property
    def status(self):
        """The channel's :class:`StatusBlock`."""
        return self.channel.status

    def pending(self):
        """Bytes (records, headers and padding) waiting in the receive ring."""
        self._check()
        return self._rx.used()

    def free(self):
        """Bytes of room left in the send ring (a message of ``n`` bytes needs
        ``4 + n`` rounded up to a multiple of 4)."""
        self._check()
        return self.channel.capacity - self._tx.used()

    def prefault(self):
        """Take now the page faults of the next message each way (see
        :meth:`~gdaemon.workers.shm.Ring.prefault`): a standby's first
        message, ``ACTIVATE``, is on a respawn's critical path."""
        self._check()
        self._tx.prefault(producer=True)
        self._rx.prefault(producer=False)

    def fileno(self):
        """The doorbell read fd: readable when messages may be waiting (or at EOF).

        A caller running its own watcher on it must consume with
        :meth:`drain` (or :meth:`recv_nowait` until it returns ``None``), which
        also empties the doorbell.
        """
        return self._rfd

    def _check(self):
        if self._closed:
            raise ChannelClosed("%s end of the channel is closed" % (self.side,))

    def _peer_closed(self):
        return self._eof or self._words[self._peer_flag] != 0

    # -- sending -----------------------------------------------------------

    def send(self, data):
        """Write one whole message and ring the doorbell.

        Never blocks nor yields.

        :param data: a bytes-like object, at most :attr:`max_message_size` bytes.
        :returns: bytes written, length header included (> 0).
        :raises ChannelFull: the ring has no room now; nothing was written.
        :raises ChannelMessageTooLarge: the message can never fit (a
            ``ChannelFull`` and ``ValueError`` subclass); nothing was written.
        :raises ChannelClosed: this end is closed, or the peer closed its end
            or died (in the latter case, detected by the doorbell, the message
            was written but nobody will read it).
        """
        self._check()
        if self._words[self._peer_flag]:
            raise ChannelClosed("the %s's end of the channel is closed" % (
                WORKER if self.side == DAEMON else DAEMON,))
        written = self._tx.push(data)
        try:
            os.write(self._wfd, _BELL)
        except BlockingIOError:
            # The pipe is full: the reader has wake-ups pending already and
            # drains the whole ring when it runs.
            pass
        except BrokenPipeError as exc:
            raise ChannelClosed("the peer of the %s end is gone" % (self.side,)) from exc
        return written

    # -- receiving ---------------------------------------------------------

    def _drain_doorbell(self):
        """Consume pending doorbell bytes; note EOF."""
        if self._eof:
            return
        bufs = self._bufs
        size = self.drain_buffer_size
        rfd = self._rfd
        while True:
            try:
                n = os.readv(rfd, bufs)
            except BlockingIOError:
                return
            if n == 0:
                self._eof = True
                return
            if n < size:  # a pipe read returns everything available
                return

    def _poll(self):
        # Drain first, then look at the ring: a message published after this
        # check rings the doorbell after our drain, so the wait that follows
        # wakes up.  No wake-up is lost.
        self._drain_doorbell()
        msg = self._rx.pop()
        if msg is None and self._peer_closed():
            raise ChannelClosed("the peer of the %s end closed the channel" % (self.side,))
        return msg

    def recv_nowait(self):
        """The next message, or ``None`` if there is none now.

        :raises ChannelClosed: this end is closed, or the ring is empty and
            the peer has closed its end (or died).
        """
        self._check()
        msg = self._rx.pop()
        if msg is not None:
            return msg
        return self._poll()

    def drain(self):
        """Every message available now, oldest first, without waiting.

        Also empties the doorbell, so it suits a caller with its own watcher
        on :meth:`fileno`.

        :returns: a list, empty when there is nothing.
        :raises ChannelClosed: this end is closed, or there is nothing and the
            peer has closed its end (or died).
        """
        self._check()
        self._drain_doorbell()
        msgs = []
        pop = self._rx.pop
        msg = pop()
        while msg is not None:
            msgs.append(msg)
            msg = pop()
        if not msgs and self._peer_closed():
            raise ChannelClosed("the peer of the %s end closed the channel" % (self.side,))
        return msgs

    def recv(self, timeout=None):
        """The next message; waits cooperatively in the gevent hub.

        :param timeout: seconds to wait at most; ``None`` waits forever.
        :returns: the message bytes, or ``None`` on timeout.
        :raises ChannelClosed: this end is closed (also while waiting), or
            the ring is empty and the peer has closed its end or died.
        :raises gevent.exceptions.ConcurrentObjectUseError: another greenlet
            is already waiting on this endpoint.
        """
        self._check()
        msg = self._rx.pop()
        if msg is not None:
            return msg
        if timeout is not None and timeout <= 0:
            return self._poll()
        timer = None
        if timeout is not None:
            timer = Timeout(timeout)
            timer.start()
        try:
            while True:
                msg = self._poll()
                if msg is not None:
                    return msg
                self._wait_readable()
                self._check()
        except Timeout as exc:
            if exc is not timer:
                raise
            return None
        finally:
            if timer is not None:
                timer.close()

    def _wait_readable(self):
        hub = get_hub()
        watcher = self._watcher
        pid = os.getpid()
        if watcher is None or self._watcher_hub is not hub or self._watcher_pid != pid:
            if watcher is not None:
                watcher.close()  # a copy from before a fork, or another hub's
            watcher = self._watcher = hub.loop.io(self._rfd, 1)
            self._watcher_hub = hub
            self._watcher_pid = pid
        # (gevent's stubs leave out the watcher's callback attribute)
        if watcher.callback is not None:  # type: ignore[union-attr]
            raise ConcurrentObjectUseError(
                "another greenlet is already waiting on %r" % (self,))
        hub.wait(watcher)

    # -- closing -----------------------------------------------------------

    def close(self):
        """Close this side's doorbell fds; idempotent.

        In the process that created the endpoint, first marks this side
        closed in shared memory and rings the doorbell, so the peer's
        :meth:`recv` raises :class:`~gdaemon.errors.ChannelClosed` once it has
        read what is left; a greenlet waiting in :meth:`recv` on this endpoint
        gets ``ChannelClosed``.  In any other process (a fork inherited the
        channel) only the local fd copies are closed.
        """
        if self._closed:
            return
        self._closed = True
        channel = self.channel
        same_process = os.getpid() == self._pid
        if same_process and not channel._closed_mapping:
            self._words[self._own_flag] = 1
            if not self._eof:  # (at EOF the peer is gone: nobody to wake)
                try:
                    os.write(self._wfd, _BELL)
                except (BlockingIOError, BrokenPipeError):
                    pass  # full (a wake-up is pending) or no reader left: fine
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            if same_process and self._watcher_pid == self._pid:
                assert self._watcher_hub is not None  # set with the watcher
                self._watcher_hub.cancel_wait(
                    watcher, ChannelClosed("%s end of the channel closed" % (self.side,)),
                    True)
            else:
                # Never wake a greenlet copied by fork: it belongs to the parent.
                watcher.close()
        channel._close_fd(self._rfd_index)
        channel._close_fd(self._wfd_index)
        self._rfd = self._wfd = -1
        self._words = None
        self._rx = self._tx = None


class Channel:
    """A status block and two rings in shared memory, plus two doorbell pipes.

    Create it before forking; then call :meth:`daemon_end` in the parent and
    :meth:`worker_end` in the child (or :meth:`pair` for both ends in one
    process).  :meth:`close` releases everything and is idempotent.

    :param capacity: bytes of each ring, a multiple of 4 (at least 8).  The
        largest message is ``capacity - 4`` bytes.
    :raises ValueError: bad capacity.
    """

    def __init__(self, capacity=DEFAULT_CAPACITY, shareable=False):
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise ValueError("capacity must be an int, got %r" % (capacity,))
        if capacity < 8 or capacity % 4 or capacity > MAX_CAPACITY:
            raise ValueError("capacity must be a multiple of 4 between 8 and %d, got %d"
                             % (MAX_CAPACITY, capacity))
        self._blank(capacity)
        try:
            size = HEADER_SIZE + 2 * capacity
            if shareable:
                # A memfd, not an anonymous mapping: the worker is forked by
                # the fork server, a process that did not exist when this
                # channel was made; it maps the memfd it is sent.
                fd = self._fds[_MEMFD] = os.memfd_create("gdaemon-channel", os.MFD_CLOEXEC)
                os.ftruncate(fd, size)
                mm, self.mapping_fd = _map_fd(fd, size)
            else:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_ANONYMOUS", getattr(mmap, "MAP_ANON", 0))
                mm = mmap.mmap(-1, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            words = self._map(mm)
            words[_MAGIC] = MAGIC_VALUE
            words[_CAPACITY] = capacity
            self._fds[_D2W_R], self._fds[_D2W_W] = _pipe()
            self._fds[_W2D_R], self._fds[_W2D_W] = _pipe()
        except BaseException:
            self.close()
            raise

    def _blank(self, capacity):
        #: Bytes of each ring.
        self.capacity = capacity
        #: Largest message :meth:`Endpoint.send` accepts, in bytes.
        self.max_message_size = capacity - RECORD_HEADER_SIZE
        self._fds = [-1, -1, -1, -1, -1]
        self._ends: Dict[str, Endpoint] = {}
        self._closed = False
        self._closed_mapping = True
        self._mm: Optional[mmap.mmap] = None
        self._words: Optional[memoryview] = None
        self._rings: Tuple[Ring, ...] = ()
        self.status: Optional[StatusBlock] = None
        #: The descriptor ``mmap`` keeps (a dup of the memfd) while mapped;
        #: ``None`` for an anonymous mapping.  Children must not inherit it.
        self.mapping_fd = None

    def _map(self, mm: mmap.mmap) -> memoryview:
        """Map the header and the rings onto ``mm``; return the header's words."""
        capacity = self.capacity
        self._mm = mm
        self._closed_mapping = False
        self._words = words = memoryview(mm)[:HEADER_SIZE].cast("q")
        self._rings = (
            Ring(mm, words, HEADER_SIZE, capacity, _D2W_HEAD, _D2W_TAIL),
            Ring(mm, words, HEADER_SIZE + capacity, capacity, _W2D_HEAD, _W2D_TAIL),
        )
        #: The shared :class:`StatusBlock`.
        self.status = StatusBlock(words)
        return words

    def worker_fds(self):
        """What a worker forked elsewhere needs: ``[memfd, its read fd, its write fd]``.

        Only for a ``shareable`` channel, before :meth:`daemon_end`; the
        worker rebuilds its side with :meth:`attach`.
        """
        if self._fds[_MEMFD] < 0:
            raise ValueError("not a shareable channel (or its memfd is closed)")
        return [self._fds[_MEMFD], self._fds[_D2W_R], self._fds[_W2D_W]]

    @classmethod
    def attach(cls, memfd, rfd, wfd):
        """In a worker: the channel whose :meth:`worker_fds` were sent to it.

        Takes ownership of the three descriptors; call :meth:`worker_end` next.

        :raises ValueError: the memfd does not hold a channel.
        """
        size = os.fstat(memfd).st_size
        if size < HEADER_SIZE:
            raise ValueError("the memfd is too small for a channel (%d bytes)" % size)
        mm, mapping_fd = _map_fd(memfd, size)
        words = memoryview(mm)[:HEADER_SIZE].cast("q")
        try:
            magic, capacity = words[_MAGIC], words[_CAPACITY]
        finally:
            words.release()
        if magic != MAGIC_VALUE or size != HEADER_SIZE + 2 * capacity:
            mm.close()
            raise ValueError("the memfd does not hold a gdaemon channel")
        self = cls.__new__(cls)
        self._blank(capacity)
        self.mapping_fd = mapping_fd
        self._map(mm)
        self._fds[_D2W_R], self._fds[_W2D_W], self._fds[_MEMFD] = rfd, wfd, memfd
        return self

    def __repr__(self):
        return "<Channel capacity=%d fds=%r%s>" % (
            self.capacity, self.fds(), " closed" if self._closed else "")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def closed(self):
        return self._closed

    def fds(self):
        """Every fd the channel (including its endpoints) still holds."""
        return [fd for fd in self._fds if fd >= 0]

    def _close_fd(self, index):
        fd = self._fds[index]
        if fd < 0:
            return
        self._fds[index] = -1
        os.close(fd)

    def _end(self, side, close_peer):
        if self._closed:
            raise ChannelClosed("channel closed")
        end = self._ends.get(side)
        if end is not None:
            return end
        _, _, rfd_index, wfd_index, _, _ = _SIDES[side]
        if self._fds[rfd_index] < 0 or self._fds[wfd_index] < 0:
            raise ValueError("the %s end of this channel is gone: this process "
                             "already took the other end" % (side,))
        if close_peer:
            other = WORKER if side == DAEMON else DAEMON
            _, _, peer_rfd, peer_wfd, _, _ = _SIDES[other]
            self._close_fd(peer_rfd)
            self._close_fd(peer_wfd)
            self._close_fd(_MEMFD)  # the mapping stays; nobody needs the fd any more
        end = self._ends[side] = Endpoint(self, side)
        return end

    def daemon_end(self):
        """In the parent after the fork: close the worker's pipe ends.

        :returns: the daemon's :class:`Endpoint` (the same one on every call).
        :raises ValueError: this process already took the worker end.
        """
        return self._end(DAEMON, True)

    def worker_end(self):
        """In the child after the fork: close the daemon's pipe ends.

        :returns: the worker's :class:`Endpoint` (the same one on every call).
        :raises ValueError: this process already took the daemon end.
        """
        return self._end(WORKER, True)

    def pair(self):
        """Both ends in this process (a greenlet worker, or tests).

        :returns: ``(daemon_end, worker_end)``.
        """
        return self._end(DAEMON, False), self._end(WORKER, False)

    def close(self):
        """Release the mapping and every fd still held; idempotent.

        Endpoints are closed first (see :meth:`Endpoint.close`), then the
        status block and rings become unusable.
        """
        if self._closed:
            return
        self._closed = True
        for end in list(self._ends.values()):
            end.close()
        for index in range(len(self._fds)):
            self._close_fd(index)
        if self.status is not None:
            self.status._release()
        for ring in self._rings:
            ring.release()
        self._rings = ()
        if self._words is not None:
            self._words.release()
            self._words = None
        self._closed_mapping = True
        if self._mm is not None:
            self._mm.close()
            self._mm = None
