"""Cross-process tests of gdaemon.workers.channel: a real fork, real shared memory.

The child branch of every fork is ``# pragma: no cover`` and leaves through
``os._exit``; the parent always kills and reaps it (see :func:`forked`).

The children are forked with ``gevent.os.fork_gevent`` (fork + ``gevent.reinit``
in the child) rather than ``gevent.fork``: the latter also starts a child
watcher, whose SIGCHLD handler would reap every child of the pytest process,
including other tests' subprocesses.
"""

import collections
import contextlib
import os
import random
import signal
import struct
import sys
import time
import traceback
import zlib

import gevent
import gevent.os
import pytest

from gdaemon.errors import ChannelClosed, ChannelFull
from gdaemon.workers.channel import Channel
from support import wait_until

MESSAGES = 100000
HEADER = struct.Struct("<QI")       # sequence number, crc32 of the payload
EXIT_OK, EXIT_FAILED, EXIT_SAW_CLOSED = 0, 1, 7

# Random content that messages are sliced from (fork shares it with the child).
_BLOB = random.Random(20240501).randbytes(200 * 1024)


def record_size(n):
    return 4 + ((n + 3) & ~3)


def message_sizes(seed, count):
    """Varied sizes: mostly small, some medium, a few up to 64 KiB."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.70:
            sizes.append(rng.randint(0, 64))
        elif roll < 0.97:
            sizes.append(rng.randint(65, 4096))
        else:
            sizes.append(rng.randint(4097, 64 * 1024))
    return sizes


def make_message(seq, size):
    offset = (seq * 7919) % (len(_BLOB) - size)
    body = _BLOB[offset:offset + size]
    return HEADER.pack(seq, zlib.crc32(body)) + body


def check_message(msg, expected_seq):
    """Raise AssertionError unless ``msg`` is message ``expected_seq``, intact."""
    seq, crc = HEADER.unpack_from(msg)
    assert seq == expected_seq, "got message %d, expected %d" % (seq, expected_seq)
    assert zlib.crc32(memoryview(msg)[HEADER.size:]) == crc, "message %d is torn" % seq


def reap(pid, timeout):
    """Wait up to ``timeout`` for ``pid`` to exit; return its exit status or None."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        gevent.sleep(0.005)


@contextlib.contextmanager
def forked(channel, child):
    """Fork; the child runs ``child(worker_end)`` and exits with its return value.

    Yields ``(pid, daemon_end, result)``; ``result["exitcode"]`` is set when the
    child was reaped by :meth:`wait`.  The child is always killed and reaped.
    """
    pid = gevent.os.fork_gevent()
    if pid == 0:  # pragma: no cover
        code = EXIT_FAILED
        try:
            code = child(channel.worker_end())
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    result = {"exitcode": None}
    try:
        end = channel.daemon_end()

        def wait(timeout=15.0):
            result["exitcode"] = reap(pid, timeout)
            return result["exitcode"]

        yield pid, end, wait
    finally:
        if result["exitcode"] is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        channel.close()


def echo_child(count):
    def child(end):  # pragma: no cover
        end.status.pid = os.getpid()
        for seq in range(count):
            msg = end.recv(timeout=10)
            if msg is None:
                return EXIT_FAILED
            check_message(msg, seq)
            end.send(msg)
            end.status.loops = seq + 1
        end.status.state = 5
        return EXIT_OK
    return child


def test_echo_100k_each_way():
    """100,000 messages of varied sizes go to the child and back: none lost,
    none torn, order kept (sequence numbers and crc32 checked on both sides)."""
    ch = Channel()
    t0 = time.monotonic()
    with forked(ch, echo_child(MESSAGES)) as (pid, end, wait):
        sizes = message_sizes(1, MESSAGES)
        in_flight = collections.deque()
        in_flight_bytes = 0
        sent = received = 0
        while received < MESSAGES:
            # Keep at most one ring's worth in flight, so that neither ring can
            # fill: any ChannelFull here would be a bug.
            while sent < MESSAGES:
                msg = make_message(sent, sizes[sent])
                if in_flight_bytes + record_size(len(msg)) > ch.capacity:
                    break
                end.send(msg)
                in_flight.append(msg)
                in_flight_bytes += record_size(len(msg))
                sent += 1
            first = end.recv(timeout=10)
            assert first is not None, "no echo of message %d within 10 s" % received
            for echo in [first] + end.drain():
                expected = in_flight.popleft()
                assert echo == expected, "echo %d differs" % received
                in_flight_bytes -= record_size(len(expected))
                received += 1
        assert not in_flight
        assert wait() == EXIT_OK
        assert ch.status.pid == pid
        assert ch.status.loops == MESSAGES and ch.status.state == 5
    elapsed = time.monotonic() - t0
    assert elapsed < 30, "took %.1f s" % elapsed


def test_backpressure_across_processes():
    """A child floods a small ring; ChannelFull pushes back, nothing is lost."""
    count = 20000
    ch = Channel(capacity=4096)

    def child(end):  # pragma: no cover
        sizes = message_sizes(2, count)
        fulls = 0
        for seq in range(count):
            msg = make_message(seq, sizes[seq] % 1500)
            while True:
                try:
                    end.send(msg)
                    break
                except ChannelFull:
                    fulls += 1
                    end.status.loops = fulls
                    gevent.sleep(0.0005)    # the producer's own back-off policy
        return EXIT_OK

    with forked(ch, child) as (pid, end, wait):
        # Let the child fill the ring before reading anything.
        wait_until(lambda: ch.status.loops > 0, timeout=10, message="a full ring")
        for seq in range(count):
            msg = end.recv(timeout=10)
            assert msg is not None, "message %d never arrived" % seq
            check_message(msg, seq)
        assert wait() == EXIT_OK
        with pytest.raises(ChannelClosed):
            end.recv(timeout=5)
        assert ch.status.loops > 0


def _send_then_hang(count):
    def child(end):  # pragma: no cover
        for seq in range(count):
            end.send(make_message(seq, 100))
        end.status.pid = os.getpid()
        end.status.state = 1
        end.recv()      # the daemon never sends: wait here until killed
        return EXIT_FAILED
    return child


def test_messages_outlive_a_killed_sender_then_closed():
    """SIGKILL the child: what it sent is still delivered, then ChannelClosed."""
    ch = Channel()
    with forked(ch, _send_then_hang(3)) as (pid, end, wait):
        wait_until(lambda: ch.status.state == 1, timeout=10, message="child ready")
        os.kill(pid, signal.SIGKILL)
        assert wait() == -signal.SIGKILL
        for seq in range(3):
            check_message(end.recv(timeout=5), seq)
        # recv() without a timeout can only end by noticing the death (the
        # gevent.Timeout is a guard against a hang, and fails the test).
        with gevent.Timeout(10), pytest.raises(ChannelClosed):
            end.recv()
        with pytest.raises(ChannelClosed):
            end.send(b"anyone?")    # nobody reads the doorbell any more: EPIPE


def test_waiting_reader_wakes_when_peer_is_killed():
    ch = Channel()
    with forked(ch, _send_then_hang(0)) as (pid, end, wait):
        wait_until(lambda: ch.status.state == 1, timeout=10, message="child ready")
        reader = gevent.spawn(end.recv)   # no timeout: only the death can end it
        gevent.sleep(0.05)
        assert not reader.ready()
        os.kill(pid, signal.SIGKILL)
        reader.join(timeout=10)
        assert reader.ready(), "the reader was not woken by the death of its peer"
        assert isinstance(reader.exception, ChannelClosed), reader.exception
        assert wait() == -signal.SIGKILL


def test_worker_sees_daemon_close():
    def child(end):  # pragma: no cover
        end.status.state = 1
        try:
            end.recv(timeout=10)
        except ChannelClosed:
            return EXIT_SAW_CLOSED
        return EXIT_FAILED

    ch = Channel()
    with forked(ch, child) as (pid, end, wait):
        wait_until(lambda: ch.status.state == 1, timeout=10, message="child ready")
        end.close()
        assert wait(timeout=10) == EXIT_SAW_CLOSED


def test_inherited_copy_closed_by_a_sibling_does_not_disturb():
    """A later fork closing its inherited copy of the channel (what the manager
    does for other workers' channels) leaves the real pair working."""
    ch = Channel(capacity=4096)
    with forked(ch, echo_child(2)) as (pid, end, wait):
        end.send(make_message(0, 10))
        check_message(end.recv(timeout=5), 0)
        sibling = gevent.os.fork_gevent()
        if sibling == 0:  # pragma: no cover
            try:
                ch.close()
            finally:
                os._exit(0)
        status = None
        try:
            status = reap(sibling, 10)
            assert status == 0
        finally:
            if status is None:
                os.kill(sibling, signal.SIGKILL)
                os.waitpid(sibling, 0)
        end.send(make_message(1, 10))
        check_message(end.recv(timeout=5), 1)
        assert wait() == EXIT_OK
