"""The shared-memory layout of a worker's channel: header words, rings, status block.

A :class:`~gdaemon.workers.channel.Channel` maps ``HEADER_SIZE + 2 *
capacity`` bytes; this module knows where everything lies in them (see
:mod:`gdaemon.workers.channel` for the design: memory ordering, torn-message
safety, closing) and gives typed access to it: :class:`Ring`, one
single-producer single-consumer ring of length-prefixed records, and
:class:`StatusBlock`, the worker's status words.
"""

import time

from ..errors import ChannelClosed, ChannelFull, ChannelMessageTooLarge

__all__ = ["Ring", "StatusBlock", "DEFAULT_CAPACITY", "HEADER_SIZE", "RECORD_HEADER_SIZE"]


#: Default size in bytes of each of the two rings.
DEFAULT_CAPACITY = 256 * 1024
#: Bytes of shared header before the ring data (status block and counters).
HEADER_SIZE = 4096
#: Bytes of the length prefix of every record.
RECORD_HEADER_SIZE = 4

MAGIC_VALUE = 0x67644368616E3031  # "gdChan01"
MAX_CAPACITY = 1 << 31            # lengths are stored as uint32

# Word (8-byte) indexes into the header.  One 64-byte line = 8 words.
_STATE, _PID, _HEARTBEAT, _LOOPS = 0, 1, 2, 3          # line 0: status block
_MAGIC, _CAPACITY, _DAEMON_CLOSED, _WORKER_CLOSED = 8, 9, 10, 11
_D2W_TAIL, _D2W_HEAD, _W2D_TAIL, _W2D_HEAD = 16, 24, 32, 40


class Ring:
    """One single-producer single-consumer ring inside the shared mapping.

    Owns no resource: views are released by :meth:`release`, the mapping by
    the :class:`Channel`.
    """

    __slots__ = ("_mm", "_words", "_lengths", "_base", "_capacity", "_head", "_tail")

    def __init__(self, mm, words, base, capacity, head, tail):
        self._mm = mm
        self._words = words
        self._lengths = memoryview(mm)[base:base + capacity].cast("I")
        self._base = base
        self._capacity = capacity
        self._head = head
        self._tail = tail

    def release(self):
        self._lengths.release()

    def used(self):
        """Bytes in use (records and padding)."""
        return self._words[self._tail] - self._words[self._head]

    def prefault(self, producer):
        """Map the page the next record goes to (``producer``: and dirty it, its
        word written back unchanged) or comes from (reading it), so that its
        page fault is taken now and not on that record's way: a fresh
        channel's first record otherwise waits for the page to be allocated.
        Safe at any time: a producer writes only where the consumer does not
        read yet, and reading changes nothing."""
        words = self._words
        index = ((words[self._tail] if producer else words[self._head]) % self._capacity) >> 2
        value = self._lengths[index]
        if producer:
            self._lengths[index] = value

    def push(self, data):
        """Append one message; return header + payload bytes written.

        :raises ChannelMessageTooLarge: it can never fit.
        :raises ChannelFull: no room now; nothing was written.
        """
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B")
        n = len(data)
        cap = self._capacity
        if n > cap - RECORD_HEADER_SIZE:
            raise ChannelMessageTooLarge(
                "message of %d bytes exceeds the channel's max_message_size of %d bytes"
                % (n, cap - RECORD_HEADER_SIZE))
        words = self._words
        tail = words[self._tail]
        size = RECORD_HEADER_SIZE + ((n + 3) & ~3)
        if size > cap - (tail - words[self._head]):
            raise ChannelFull("channel full: %d bytes needed, %d free of %d"
                              % (size, cap - (tail - words[self._head]), cap))
        pos = tail % cap
        self._lengths[pos >> 2] = n
        pos += RECORD_HEADER_SIZE
        if pos == cap:
            pos = 0
        base = self._base
        end = pos + n
        if end <= cap:
            self._mm[base + pos:base + end] = data
        else:  # wraps around the end of the buffer: two copies
            first = cap - pos
            view = memoryview(data)
            self._mm[base + pos:base + cap] = view[:first]
            self._mm[base:base + n - first] = view[first:]
            view.release()
        # Publish only now that the payload and its length are in place.
        words[self._tail] = tail + size
        return RECORD_HEADER_SIZE + n

    def pop(self):
        """Remove and return the oldest message, or ``None`` when empty.

        :raises ChannelClosed: the counters or a length word are inconsistent
            (the shared memory was corrupted); the ring is unusable.
        """
        words = self._words
        head = words[self._head]
        avail = words[self._tail] - head
        if avail <= 0:
            if avail:
                self._corrupt("head %d is past tail %d" % (head, head + avail))
            return None
        cap = self._capacity
        if avail > cap:
            self._corrupt("%d bytes in use in a ring of %d" % (avail, cap))
        pos = head % cap
        n = self._lengths[pos >> 2]
        size = RECORD_HEADER_SIZE + ((n + 3) & ~3)
        if size > avail:
            self._corrupt("record of %d bytes but only %d in use" % (size, avail))
        pos += RECORD_HEADER_SIZE
        if pos == cap:
            pos = 0
        base = self._base
        end = pos + n
        if end <= cap:
            msg = self._mm[base + pos:base + end]
        else:
            msg = self._mm[base + pos:base + cap] + self._mm[base:base + end - cap]
        # Release the space only once the payload has been copied out.
        words[self._head] = head + size
        return msg

    @staticmethod
    def _corrupt(what):
        raise ChannelClosed("channel corrupted: %s" % (what,))


class StatusBlock:
    """The worker's status, shared by the daemon and the worker.

    Every field is one aligned 64-bit word: reads and writes are atomic, but
    there is no transaction across fields.

    - ``state``: an int (a ``WorkerStatus`` value);
    - ``pid``: the worker's pid;
    - ``heartbeat``: ``time.monotonic()`` of the last beat, a float in
      seconds (0.0 = never); stored as integer nanoseconds, see
      :attr:`heartbeat_ns`;
    - ``loops``: the number of loops run.

    After the channel is closed every access raises
    :class:`~gdaemon.errors.ChannelClosed`.
    """

    __slots__ = ("_words",)

    def __init__(self, words):
        self._words = words

    def _view(self):
        words = self._words
        if words is None:
            raise ChannelClosed("channel closed: status block released")
        return words

    def _release(self):
        self._words = None

    @property
    def state(self):
        return self._view()[_STATE]

    @state.setter
    def state(self, value):
        self._view()[_STATE] = int(value)

    @property
    def pid(self):
        return self._view()[_PID]

    @pid.setter
    def pid(self, value):
        self._view()[_PID] = int(value)

    @property
    def loops(self):
        return self._view()[_LOOPS]

    @loops.setter
    def loops(self, value):
        self._view()[_LOOPS] = int(value)

    @property
    def heartbeat_ns(self):
        """The heartbeat as integer ``time.monotonic_ns()`` nanoseconds."""
        return self._view()[_HEARTBEAT]

    @heartbeat_ns.setter
    def heartbeat_ns(self, value):
        self._view()[_HEARTBEAT] = int(value)

    @property
    def heartbeat(self):
        return self._view()[_HEARTBEAT] / 1e9

    @heartbeat.setter
    def heartbeat(self, value):
        self._view()[_HEARTBEAT] = int(round(value * 1e9))

    def beat(self):
        """Set the heartbeat to now; return it (``time.monotonic()`` seconds)."""
        now = time.monotonic_ns()
        self._view()[_HEARTBEAT] = now
        return now / 1e9

    def snapshot(self):
        """All fields as a dict (each read atomically, not all together)."""
        return {"state": self.state, "pid": self.pid,
                "heartbeat": self.heartbeat, "loops": self.loops}

    def __repr__(self):
        if self._words is None:
            return "<StatusBlock released>"
        return "<StatusBlock state=%d pid=%d heartbeat=%.6f loops=%d>" % (
            self.state, self.pid, self.heartbeat, self.loops)
