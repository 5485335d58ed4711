"""Unit tests of gdaemon.workers.channel: the ring, the status block, closing.

Everything runs in one process, with :meth:`Channel.pair` giving both ends;
the cross-process behaviour is in tests/functional/test_channel_stress.py.
"""

import collections
import fcntl
import os
import random
import select
import time

import gevent
import pytest
from gevent.exceptions import ConcurrentObjectUseError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdaemon.errors import ChannelClosed, ChannelFull
from gdaemon.workers.channel import (DEFAULT_CAPACITY, Channel, ChannelMessageTooLarge,
                                     StatusBlock)


def record_size(n):
    """Ring bytes taken by a message of ``n`` bytes (length word + padded payload)."""
    return 4 + ((n + 3) & ~3)


def payload(seq, size):
    """Distinct, position-dependent content: a torn or shifted copy cannot match."""
    return random.Random(seq).randbytes(size)


def _is_open(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def open_fds():
    """The fds open in this process (not counting the one listdir used)."""
    return set(fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd))


def shm_entries():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.fixture
def channel():
    ch = Channel(capacity=256)
    yield ch
    ch.close()


# -- the ring, against a model ------------------------------------------------

_OPS = st.lists(
    st.tuples(st.sampled_from(["send_d", "send_w", "recv_d", "recv_w", "drain_d", "drain_w"]),
              st.integers(min_value=0, max_value=2 ** 20)),
    max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.integers(min_value=2, max_value=160).map(lambda k: 4 * k), ops=_OPS)
def test_ring_matches_model(capacity, ops):
    """Random interleavings of send/recv/drain on both directions match a deque model.

    ChannelFull is raised exactly when the model has no room, nothing is written
    then, and messages come out whole and in order across wrap-arounds.
    """
    ch = Channel(capacity=capacity)
    try:
        ends = dict(zip("dw", ch.pair()))
        model = {"d": collections.deque(), "w": collections.deque()}   # queued towards
        used = {"d": 0, "w": 0}
        seq = 0
        for op, x in ops:
            kind, side = op.split("_")
            peer = "w" if side == "d" else "d"
            if kind == "send":
                seq += 1
                size = x % (capacity // 2 + 1)
                msg = payload(seq, size)
                full = record_size(size) > capacity - used[peer]
                if full:
                    with pytest.raises(ChannelFull):
                        ends[side].send(msg)
                else:
                    assert ends[side].send(msg) == 4 + size
                    model[peer].append(msg)
                    used[peer] += record_size(size)
            elif kind == "recv":
                expected = model[side].popleft() if model[side] else None
                how = x % 3
                if how == 0:
                    got = ends[side].recv_nowait()
                elif how == 1:
                    got = ends[side].recv(timeout=0)
                else:   # a blocking recv, only when it cannot block
                    got = ends[side].recv() if expected is not None else ends[side].recv_nowait()
                assert got == expected
                if expected is not None:
                    used[side] -= record_size(len(expected))
            else:
                assert ends[side].drain() == list(model[side])
                model[side].clear()
                used[side] = 0
            assert ends["d"].pending() == used["d"]
            assert ends["w"].pending() == used["w"]
            assert ends["d"].free() == capacity - used["w"]
        for side in "dw":
            assert ends[side].drain() == list(model[side])
    finally:
        ch.close()


@pytest.mark.parametrize("capacity", [8, 12, 100, 4096])
def test_many_wrap_arounds(capacity):
    """Far more bytes than the capacity pass through; counters keep growing."""
    ch = Channel(capacity=capacity)
    try:
        d, w = ch.pair()
        rng = random.Random(capacity)
        queued = collections.deque()
        total = 0
        for seq in range(5000):
            size = rng.randint(0, ch.max_message_size)
            msg = payload(seq, size)
            while True:
                try:
                    d.send(msg)
                    break
                except ChannelFull:
                    assert w.recv_nowait() == queued.popleft()
            queued.append(msg)
            total += record_size(size)
        assert total > 100 * capacity
        assert w.drain() == list(queued)
        assert w.pending() == 0
    finally:
        ch.close()


def test_max_message_size(channel):
    d, w = channel.pair()
    assert channel.max_message_size == d.max_message_size == 252
    msg = payload(1, 252)
    assert d.send(msg) == 256
    assert d.free() == 0
    with pytest.raises(ChannelFull):
        d.send(b"")
    assert w.recv() == msg
    with pytest.raises(ChannelMessageTooLarge) as info:
        d.send(b"x" * 253)
    assert isinstance(info.value, ValueError)
    assert "253" in str(info.value) and "252" in str(info.value)
    assert w.recv_nowait() is None and d.free() == 256


def test_default_capacity_carries_64k_messages():
    ch = Channel()
    try:
        assert ch.capacity == DEFAULT_CAPACITY
        assert ch.max_message_size >= 64 * 1024
        d, w = ch.pair()
        for seq in range(10):   # wraps: 10 * 64 KiB > 256 KiB
            msg = payload(seq, 64 * 1024)
            d.send(msg)
            assert w.recv() == msg
    finally:
        ch.close()


def test_full_ring_writes_nothing(channel):
    d, w = channel.pair()
    sent = []
    with pytest.raises(ChannelFull):
        for seq in range(100):
            msg = payload(seq, 50)
            d.send(msg)
            sent.append(msg)
    assert len(sent) == 256 // record_size(50)
    assert w.drain() == sent
    assert w.recv_nowait() is None


def test_bytes_like_inputs(channel):
    d, w = channel.pair()
    d.send(bytearray(b"abc"))
    d.send(memoryview(b"defg"))
    d.send(memoryview(bytearray(b"\x01\x00\x02\x00")).cast("H"))
    assert w.drain() == [b"abc", b"defg", b"\x01\x00\x02\x00"]
    with pytest.raises(TypeError):
        d.send("text")
    assert w.recv_nowait() is None


@pytest.mark.parametrize("capacity", [0, 4, 6, 10, 2 ** 31 + 4, 8.0, True])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError):
        Channel(capacity=capacity)


def test_corrupted_counters_are_detected(channel):
    d, w = channel.pair()
    d.send(b"hello")
    channel._words[16] += 10 ** 6   # d->w tail far beyond the capacity
    with pytest.raises(ChannelClosed, match="corrupted"):
        w.recv_nowait()


# -- waiting ------------------------------------------------------------------

def test_recv_times_out_without_spinning(channel):
    """recv(timeout) sleeps in the hub until its deadline: no spinning, no polling.

    What is counted does not depend on the machine's load: the turns of the
    event loop (a 1 ms poll takes some 200 in 0.2 s, sleeping takes one or
    two) and the CPU time of this process (a spin uses its share of 0.2 s,
    sleeping a few microseconds).  The wall clock only bounds the wait from
    below; how late a loaded machine wakes us is not this test's business.
    """
    d, w = channel.pair()
    turns = []
    counter = gevent.get_hub().loop.prepare(ref=False)   # runs once per turn of the loop
    counter.start(turns.append, None)
    try:
        cpu0, t0 = time.process_time(), time.monotonic()
        assert w.recv(timeout=0.2) is None
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        counter.stop()
        counter.close()
    assert elapsed >= 0.19           # it waited its timeout ...
    assert elapsed < 10              # ... and then returned, late only by what load adds
    assert len(turns) <= 10, "the loop turned %d times in %.2f s: recv polled" % (len(turns), elapsed)
    assert cpu < 0.05, "recv used %.3f s of CPU in %.2f s: it spun" % (cpu, elapsed)


def test_recv_wakes_on_send_from_another_greenlet(channel):
    d, w = channel.pair()
    gevent.spawn_later(0.05, d.send, b"late")
    with gevent.Timeout(10):   # a guard against a hang: recv() itself waits forever
        assert w.recv() == b"late"


def test_recv_twice_concurrently_is_refused(channel):
    d, w = channel.pair()
    waiter = gevent.spawn(w.recv, 5)
    gevent.sleep(0.01)
    with pytest.raises(ConcurrentObjectUseError):
        w.recv(timeout=1)
    d.send(b"one")
    assert waiter.get(timeout=5) == b"one"


def test_close_wakes_a_waiting_greenlet(channel):
    d, w = channel.pair()
    waiter = gevent.spawn(w.recv)
    gevent.sleep(0.01)
    w.close()
    waiter.join(timeout=5)
    assert isinstance(waiter.exception, ChannelClosed)


def test_own_watcher_with_drain(channel):
    """A caller with its own watcher on fileno() sees it go quiet after drain()."""
    d, w = channel.pair()
    for i in range(3):
        d.send(b"%d" % i)
    assert select.select([w.fileno()], [], [], 0)[0] == [w.fileno()]
    assert w.drain() == [b"0", b"1", b"2"]
    assert select.select([w.fileno()], [], [], 0)[0] == []
    assert w.drain() == []


def test_doorbell_pipe_full_is_harmless():
    """More sends than the pipe holds bytes: sends keep working, nothing lost."""
    ch = Channel(capacity=4 * 1024 * 1024)
    try:
        d, w = ch.pair()
        n = 70000       # > 65536, the default pipe capacity
        for i in range(n):
            d.send(b"")
        got = w.drain()
        assert len(got) == n and got[0] == b""
        assert select.select([w.fileno()], [], [], 0)[0] == []
    finally:
        ch.close()


# -- closing ------------------------------------------------------------------

def test_peer_close_delivers_then_raises(channel):
    d, w = channel.pair()
    d.send(b"last words")
    d.close()
    assert d.closed
    assert w.recv(timeout=1) == b"last words"
    with pytest.raises(ChannelClosed):
        w.recv(timeout=1)
    with pytest.raises(ChannelClosed):
        w.recv_nowait()
    with pytest.raises(ChannelClosed):
        w.drain()
    with pytest.raises(ChannelClosed):
        w.send(b"anyone?")
    for call in (lambda: d.send(b"x"), d.recv_nowait, d.drain, d.recv):
        with pytest.raises(ChannelClosed):
            call()
    d.close()   # idempotent


def test_eof_alone_means_closed(channel):
    """A peer killed outright leaves no flag, only EOF on the doorbell.

    Closing an endpoint from another process (here: pretending to be one)
    must not set the shared flag either.
    """
    d, w = channel.pair()
    d.send(b"before")
    d._pid = -1     # as if this endpoint had been inherited by a fork
    d.close()
    assert channel._words[10] == 0      # the daemon's closed flag was left alone
    assert w.recv(timeout=1) == b"before"
    with pytest.raises(ChannelClosed):
        w.recv(timeout=1)


def test_close_releases_every_fd_and_is_idempotent():
    gevent.get_hub()    # the hub's own fds must not be counted as ours
    before = open_fds()
    ch = Channel(capacity=1024)
    fds = ch.fds()
    assert len(fds) == 4 and set(fds) <= open_fds() - before
    d, w = ch.pair()
    d.send(b"x")
    assert w.recv(timeout=1) == b"x"
    assert w.recv(timeout=0.01) is None     # creates the io watcher too
    ch.close()
    assert ch.closed and ch.fds() == []
    ch.close()
    assert open_fds() == before
    with pytest.raises(ChannelClosed):
        ch.status.state
    with pytest.raises(ChannelClosed):
        d.send(b"x")
    with pytest.raises(ChannelClosed):
        ch.daemon_end()


def test_fds_are_nonblocking_and_cloexec():
    ch = Channel(capacity=64)
    try:
        for fd in ch.fds():
            assert not os.get_blocking(fd)
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert not os.get_inheritable(fd)
    finally:
        ch.close()


def test_choosing_a_side_closes_the_other_sides_fds():
    for take, other in (("daemon_end", "worker_end"), ("worker_end", "daemon_end")):
        ch = Channel(capacity=64)
        try:
            all_fds = ch.fds()
            end = getattr(ch, take)()
            assert getattr(ch, take)() is end
            kept = ch.fds()
            assert len(kept) == 2 and set(kept) < set(all_fds)
            assert end.fileno() in kept
            assert set(all_fds) - set(kept) <= set(all_fds) - open_fds()
            with pytest.raises(ValueError):
                getattr(ch, other)()
            end.close()
            assert ch.fds() == []
            ch.status.loops = 3     # the mapping outlives the endpoint
            assert ch.status.loops == 3
        finally:
            ch.close()


def test_nothing_appears_in_dev_shm():
    before = shm_entries()
    channels = [Channel() for _ in range(4)]
    try:
        for ch in channels:
            d, w = ch.pair()
            d.send(b"x" * 1000)
            assert w.recv() == b"x" * 1000
        assert shm_entries() == before
    finally:
        for ch in channels:
            ch.close()
    assert shm_entries() == before


def test_context_manager():
    with Channel(capacity=64) as ch:
        assert len(ch.fds()) == 4
    assert ch.closed and ch.fds() == []


# -- the status block ---------------------------------------------------------

def test_status_round_trips(channel):
    status = channel.status
    assert isinstance(status, StatusBlock)
    assert status.snapshot() == {"state": 0, "pid": 0, "heartbeat": 0.0, "loops": 0}
    status.state = 3
    status.pid = 4194304
    status.loops = 2 ** 63 - 1
    status.heartbeat = 12345.678901234
    assert (status.state, status.pid, status.loops) == (3, 4194304, 2 ** 63 - 1)
    assert status.heartbeat == pytest.approx(12345.678901234, abs=1e-9)
    assert status.heartbeat_ns == 12345678901234
    status.heartbeat_ns = 5
    assert status.heartbeat_ns == 5
    before = time.monotonic()
    beat = status.beat()
    assert before <= beat <= time.monotonic()
    assert status.heartbeat == beat
    assert "state=3" in repr(status)


def test_status_is_shared_through_the_mapping(channel):
    """Both ends see one status block (the same memory the fork shares)."""
    d, w = channel.pair()
    w.status.state = 1
    w.status.loops += 1
    assert d.status.state == 1 and d.status.loops == 1
    assert d.status is channel.status


@given(st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1))
@settings(max_examples=50, deadline=None)
def test_status_fields_hold_any_int64(value):
    ch = Channel(capacity=8)
    try:
        for field in ("state", "pid", "loops", "heartbeat_ns"):
            setattr(ch.status, field, value)
            assert getattr(ch.status, field) == value
    finally:
        ch.close()
