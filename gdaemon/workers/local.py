"""The in-process channel of a greenlet worker: same API as a forked worker's.

A greenlet worker runs in the daemon's process, so its "channel" is a queue
(:class:`LocalLink`) and its status block a plain object
(:class:`LocalStatus`); the runtime cannot tell them from the shared-memory
:class:`~gdaemon.workers.channel.Endpoint` and
:class:`~gdaemon.workers.channel.StatusBlock` of a forked worker.
"""

import os
import time
from collections import deque
from typing import Any, Deque

import gevent
from gevent.event import Event

from ..errors import ChannelClosed, ChannelFull, ChannelMessageTooLarge
from .worker import WorkerStatus

__all__ = ["LocalStatus", "LocalLink"]


def _record_size(data):
    """Bytes a message takes in a ring: a 4-byte header, the data padded to 4."""
    return 4 + ((len(data) + 3) & ~3)


class LocalStatus:
    """The status block of a greenlet worker: same fields as the shared one."""

    __slots__ = ("state", "pid", "heartbeat", "loops")

    def __init__(self):
        self.state = int(WorkerStatus.SPINUP)
        self.pid = os.getpid()
        self.heartbeat = time.monotonic()
        self.loops = 0

    def beat(self):
        self.heartbeat = now = time.monotonic()
        return now


class LocalLink:
    """The channel of a greenlet worker: an in-process queue, same API as an
    :class:`~gdaemon.workers.channel.Endpoint` on the worker side.

    It accepts what a forked worker's ring accepts and refuses the same way:
    the same largest message (``capacity - 4`` bytes,
    :class:`~gdaemon.errors.ChannelMessageTooLarge` beyond), the same
    accounting of bytes (4-byte records), :class:`~gdaemon.errors.ChannelFull`
    when no room is left.  A forked worker drains its ring in parallel with
    the daemon; a greenlet worker drains only when the sender yields, so a
    full queue first lets a waiting worker run (a few times, while it makes
    progress) before refusing: a pipelined burst that a forked worker takes
    is taken here too.

    :param deliver: called with each message the worker sends (bytes).
    :param capacity: bytes the daemon -> worker queue may hold, like a ring.
    """

    #: Times a sender facing a full queue yields to a draining worker.
    drain_attempts = 8

    def __init__(self, deliver, capacity):
        self._deliver = deliver
        self._capacity = capacity
        self._queue: Deque[Any] = deque()
        self._used = 0
        self._event = Event()
        self._waiting = False
        self.closed = False
        #: Largest message :meth:`push` accepts, in bytes (as a ring's).
        self.max_message_size = capacity - 4

    # -- daemon side ------------------------------------------------------

    def push(self, data):
        """Queue a message for the worker; return the bytes written (> 0).

        :raises ChannelClosed: the worker is gone.
        :raises ChannelMessageTooLarge: the message can never fit.
        :raises ChannelFull: the queue holds ``capacity`` bytes already.
        """
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        if len(data) > self.max_message_size:
            raise ChannelMessageTooLarge(
                "message of %d bytes exceeds the channel's max_message_size of %d bytes"
                % (len(data), self.max_message_size))
        size = _record_size(data)
        if self._used + size > self._capacity:
            self._let_worker_drain(size)
            if self.closed:
                raise ChannelClosed("the greenlet worker's channel is closed")
            if self._used + size > self._capacity:
                raise ChannelFull("channel full: %d bytes needed, %d free of %d"
                                  % (size, self._capacity - self._used, self._capacity))
        self._queue.append(data)
        self._used += size
        self._event.set()
        return size

    def _let_worker_drain(self, size):
        hub = gevent.get_hub()
        if gevent.getcurrent() is hub:
            return  # hub callbacks cannot yield
        for _ in range(self.drain_attempts):
            if not self._waiting or self.closed:
                return  # busy in loop(): it cannot drain now, like a busy forked worker
            before = self._used
            # The worker's wake-up is already queued (Event.set): sleep(0)
            # queues us after it.  Not idle(): a busy daemon is never idle.
            gevent.sleep(0)
            if self._used + size <= self._capacity or self._used >= before:
                return

    def close(self):
        self.closed = True
        self._event.set()

    # -- worker side (the Endpoint API the runtime uses) -----------------

    def send(self, data):
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        self._deliver(data)
        return _record_size(data)

    def recv_nowait(self):
        if self._queue:
            data = self._queue.popleft()
            self._used -= _record_size(data)
            return data
        if self.closed:
            raise ChannelClosed("the greenlet worker's channel is closed")
        return None

    def recv(self, timeout=None):
        data = self.recv_nowait()
        if data is not None:
            return data
        if timeout is not None and timeout <= 0:
            return None
        self._event.clear()
        self._waiting = True
        try:
            self._event.wait(timeout)
        finally:
            self._waiting = False
        return self.recv_nowait()
