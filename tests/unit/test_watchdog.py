"""The watchdog: its pure policy (restart intensity, backoff, heartbeat stalls)
with a fake clock, then the :class:`Watchdog` itself supervising greenlet
workers in this process (nothing is forked) by a clock the test moves."""

import signal
import time

import gevent
import pytest

from gdaemon import Daemon
from gdaemon.workers.worker import GreenletWorker, WorkerStatus
from gdaemon.workers.watchdog import (RestartPolicy, describe_exit, heartbeat_stalled)


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def advance(self, seconds):
        self.now += seconds
        return self.now


def crash_after(tracker, clock, uptime):
    """Start an instance now, let it live ``uptime`` s, die: return the delay."""
    tracker.started(clock.now)
    clock.advance(uptime)
    delay = tracker.next_delay(clock.now)
    clock.advance(delay)
    return delay


def test_respawns_at_once_up_to_intensity_then_backs_off_doubling():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=5, period=10.0).tracker()
    delays = [crash_after(tracker, clock, 0.0) for _ in range(12)]
    assert delays[:5] == [0.0] * 5
    assert delays[5:] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4])
    assert tracker.backing_off


def test_backoff_is_capped_at_max_delay():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=2, period=10.0, min_delay=0.1, max_delay=30.0).tracker()
    delays = [crash_after(tracker, clock, 0.0) for _ in range(30)]
    assert max(delays) == 30.0
    assert delays[-5:] == [30.0] * 5
    # Doubling, never more than twice the previous delay.
    backoff = [d for d in delays if d]
    assert all(b <= 2 * a + 1e-9 for a, b in zip(backoff, backoff[1:]))


def test_an_instance_up_longer_than_the_period_resets_the_count():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=3, period=10.0).tracker()
    assert [crash_after(tracker, clock, 0.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    # One healthy instance (longer than restartperiod): the history is forgotten.
    assert crash_after(tracker, clock, 10.5) == 0.0
    assert not tracker.backing_off
    assert [crash_after(tracker, clock, 0.0) for _ in range(3)] == pytest.approx([0, 0, 0.1])


def test_restarts_spread_over_more_than_the_period_never_back_off():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=5, period=10.0).tracker()
    # A crash every 3 s: at most 4 restarts in any 10 s window.
    delays = [crash_after(tracker, clock, 3.0) for _ in range(50)]
    assert delays == [0.0] * 50


def test_backoff_sticks_until_an_instance_outlives_the_period():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=2, period=10.0).tracker()
    [crash_after(tracker, clock, 0.0) for _ in range(3)]
    assert tracker.backing_off
    # Instances that live a while but less than the period keep backing off
    # (no new burst of immediate restarts once the window has slid by).
    delays = [crash_after(tracker, clock, 9.0) for _ in range(4)]
    assert all(d > 0 for d in delays)
    assert delays == sorted(delays)


def test_intensity_zero_backs_off_from_the_first_restart():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=0, period=10.0).tracker()
    assert crash_after(tracker, clock, 0.0) == pytest.approx(0.1)


def test_trackers_are_independent():
    clock = FakeClock()
    policy = RestartPolicy(intensity=1, period=10.0)
    a, b = policy.tracker(), policy.tracker()
    crash_after(a, clock, 0.0)
    assert crash_after(a, clock, 0.0) == pytest.approx(0.1)
    assert crash_after(b, clock, 0.0) == 0.0


def test_the_last_death_is_kept_until_the_next_start():
    # What decides whether a respawn may take the standby (crash loops may not).
    tracker = RestartPolicy(intensity=5, period=10.0).tracker()
    assert tracker.uptime(3.0) is None and tracker.last_death is None
    tracker.started(1.0)
    assert tracker.uptime(3.5) == 2.5
    tracker.next_delay(1.25, 1)
    assert tracker.last_death == (0.25, 1) and tracker.uptime(2.0) is None
    tracker.started(2.0)
    assert tracker.last_death is None


def test_reset_forgets_history():
    clock = FakeClock()
    tracker = RestartPolicy(intensity=1, period=10.0).tracker()
    crash_after(tracker, clock, 0.0)
    crash_after(tracker, clock, 0.0)
    tracker.reset()
    assert crash_after(tracker, clock, 0.0) == 0.0


@pytest.mark.parametrize("now, heartbeat, timeout, stalled", [
    (10.0, 9.5, 1.0, False),
    (10.0, 8.9, 1.0, True),
    (10.0, 9.0, 1.0, False),      # exactly at the limit: not yet
    (10.0, 0.0, 1.0, False),      # never beat: not a stall (no heartbeat yet)
    (10.0, 1.0, None, False),     # no timeout: never
    (10.0, 1.0, 0, False),
])
def test_heartbeat_stalled(now, heartbeat, timeout, stalled):
    assert heartbeat_stalled(now, heartbeat, timeout) is stalled


def test_describe_exit():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(None) == "exited"


def test_respawns_at_once_foretells_next_delay_without_changing_it():
    """What the child watcher asks before it tells the standby to go (issue 15)
    must agree with what the watchdog then decides, in every state of the policy."""
    import random
    rng = random.Random(7)
    for intensity in (0, 1, 3, 5):
        tracker = RestartPolicy(intensity=intensity, period=10.0).tracker()
        now = 0.0
        for _ in range(300):
            now += rng.choice((0.05, 0.5, 2.0, 11.0))
            if rng.random() < 0.7:
                tracker.started(now)
                now += rng.choice((0.01, 1.0, 12.0))
            foretold = tracker.respawns_at_once(now)
            assert tracker.respawns_at_once(now) == foretold  # asking changes nothing
            assert foretold == (tracker.next_delay(now) == 0.0)


# -- the Watchdog, by a clock the test moves ---------------------------------------


class Spinning(GreenletWorker):
    def loop(self):
        pass


class ShiftedClock:
    """The monotonic clock the workers' heartbeats use, plus ``offset`` seconds."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.monotonic() + self.offset


@pytest.fixture
def supervised():
    """``supervised(worker, config, **install_options)``: a started manager
    running that greenlet worker under a :class:`ShiftedClock`."""
    managers = []

    def start(worker, config=None, **options):
        daemon = Daemon(dict({"description": "unit watchdog"}, **(config or {})))
        failed = []
        daemon.events.signal("worker.failed").connect(lambda sender, **data: failed.append(data),
                                                      weak=False)
        handle = daemon.workers.install(worker, looptime=0.01, forever=True, **options)
        clock = ShiftedClock()
        daemon.workers.watchdog.clock = clock
        managers.append(daemon.workers)
        daemon.workers.start()
        return daemon.workers, handle, clock, failed

    yield start
    for manager in managers:
        manager.stop(timeout=2)


def wait_for(predicate, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        gevent.sleep(0.005)


def test_a_heartbeat_stalled_by_the_watchdogs_clock_gets_the_worker_killed(supervised):
    workers, handle, clock, failed = supervised(Spinning("hb"), timeout=1)
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, "LOOPING")
    # Long enough for several ticks (every 0.2 s): a beating worker is left alone.
    first = handle.generation
    wait_for(lambda: handle.loops >= 40, "40 loops")
    assert handle.killed is None and handle.generation == first and failed == []
    clock.offset = 5.0  # the last beat is 5 s old by the watchdog's clock
    wait_for(lambda: failed, "worker.failed")
    assert failed[0]["name"] == "hb"
    assert failed[0]["reason"].startswith("heartbeat stalled for ")
    assert failed[0]["reason"].endswith("(timeout 1s)")
    clock.offset = 0.0
    # Killed, then respawned at once as the forever worker it is.
    wait_for(lambda: handle.generation > first and handle.status is WorkerStatus.LOOPING, "respawn")
    assert handle.restarts == 1 and handle.killed is None


def test_a_worker_without_timeout_is_never_killed_for_its_heartbeat(supervised):
    workers, handle, clock, failed = supervised(Spinning("free"))
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, "LOOPING")
    clock.offset = 3600.0
    loops = handle.loops
    wait_for(lambda: handle.loops >= loops + 40, "40 more loops")
    assert failed == [] and handle.killed is None and handle.restarts == 0


def test_stopping_a_worker_cancels_its_pending_respawn(supervised):
    # restartintensity 0: every death waits for a backoff (0.1 s, then doubling).
    workers, handle, clock, failed = supervised(Spinning("later"), {"restartintensity": 0})
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, "LOOPING")
    workers.kill(handle)
    wait_for(lambda: handle.respawn_timer is not None, "a pending respawn")
    assert handle.status is WorkerStatus.RESTARTING and not handle.alive
    assert workers.stop_worker("later", timeout=2) is True
    assert handle.respawn_timer is None and handle.status is WorkerStatus.STOPPED
    # Started again on request: a new instance at once, counted as a restart.
    assert workers.start_worker("later", timeout=2) is True
    assert handle.status is WorkerStatus.LOOPING and handle.restarts == 1
