"""The worker manager's decisions, in-process: its registry of pools and
instances, a handle's status transitions, and the restart policy applied by
the watchdog (with a fake clock) to greenlet workers, which run in this
process (nothing is forked)."""

import gevent
import pytest

from gdaemon import Daemon
from gdaemon.errors import InvalidParams, UnknownWorker, WorkerError
from gdaemon.workers.exec import ExecWorker
from gdaemon.workers.worker import GreenletWorker, Worker, WorkerStatus


class Idle(Worker):
    def loop(self):
        pass


class Spinning(GreenletWorker):
    def loop(self):
        pass


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class Recorder:
    """Records the daemon's ``worker.*`` events (name, payload)."""

    def __init__(self, daemon, *names):
        self.events = []
        self._signals = [daemon.events.signal(name) for name in names]
        for signal in self._signals:
            signal.connect(self._receive, weak=False)

    def _receive(self, sender, **data):
        self.events.append(data)

    def states(self, name):
        return [e["status_name"] for e in self.events if e.get("name") == name and "status_name" in e]


def make_daemon(**config):
    return Daemon(dict({"description": "unit manager"}, **config))


@pytest.fixture
def started():
    """A daemon whose worker manager runs (greenlet workers only: nothing forks)."""
    made = []

    def start(daemon):
        made.append(daemon.workers)
        daemon.workers.start()
        return daemon.workers

    yield start
    for manager in made:
        manager.stop(timeout=2)


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        gevent.sleep(0.005)


# -- the registry ---------------------------------------------------------------------


def test_instances_are_found_through_their_pool_as_it_scales():
    workers = make_daemon().workers
    workers.install(Idle("web"))
    assert workers.names() == ["web"] and len(workers) == 1
    assert workers.scale("web", 3) == ["web", "web.1", "web.2"]
    assert [workers.get(name).name for name in ("web", "web.1", "web.2")] == ["web", "web.1", "web.2"]
    assert workers.get("web.2") is workers.pool("web").handles[2]
    assert len(workers) == 3 and "web.1" in workers
    with pytest.raises(UnknownWorker):
        workers.get("web.0")  # a pool installed as one instance names it plainly
    assert workers.scale("web", 1) == ["web"]
    assert workers.names() == ["web"] and len(workers) == 1 and "web.1" not in workers
    with pytest.raises(UnknownWorker):
        workers.get("web.1")


def test_a_pool_of_several_instances_is_not_a_worker_itself():
    workers = make_daemon().workers
    workers.install(Idle("q"), instances=3)
    assert workers.names() == ["q.0", "q.1", "q.2"]
    assert workers.get("q.1").instance == 1
    for name in ("q", "q.3", "q.01", "q.x", "", None, ["q.0"]):
        assert name not in workers
        with pytest.raises(UnknownWorker):
            workers.get(name)


def test_scaling_refuses_an_instance_name_another_worker_has():
    workers = make_daemon().workers
    workers.install(Idle("a"))
    workers.install(Idle("a.1"))
    with pytest.raises(InvalidParams, match="'a.1'"):
        workers.scale("a", 2)
    assert workers.names() == ["a", "a.1"]
    assert workers.get("a.1").pool == "a.1"


def test_install_refuses_a_taken_name_and_uninstall_frees_it():
    workers = make_daemon().workers
    workers.install(Idle("w"), instances=2)
    with pytest.raises(WorkerError, match="installed already"):
        workers.install(Idle("w.1"))
    workers.uninstall("w")
    assert workers.names() == [] and len(workers) == 0
    workers.install(Idle("w.1"))
    assert workers.names() == ["w.1"]


def test_workerlimit_counts_every_instance():
    workers = make_daemon(workerlimit=4).workers
    workers.install(Idle("a"), instances=3)
    with pytest.raises(WorkerError, match="workerlimit"):
        workers.install(Idle("b"), instances=2)
    with pytest.raises(InvalidParams, match="workerlimit"):
        workers.scale("a", 5)
    assert workers.scale("a", 4) == ["a.0", "a.1", "a.2", "a.3"]


# -- settings ------------------------------------------------------------------------


def test_settings_are_the_workers():
    workers = make_daemon().workers
    handle = workers.install(Idle("s"), looptime=0.25, forever=True, timeout=3)
    pool = workers.pool("s")
    assert (handle.looptime, handle.forever, handle.timeout) == (0.25, True, 3.0)
    assert (pool.looptime, pool.forever, pool.timeout) == (0.25, True, 3.0)
    workers.scale("s", 2)
    assert workers.get("s.1").info()["looptime"] == 0.25
    # A program has no heartbeat: no heartbeat timeout, whatever its worker's timeout.
    program = workers.install(ExecWorker("prog", ["true"]), timeout=2)
    assert program.worker.timeout == 2.0 and program.timeout is None


# -- status --------------------------------------------------------------------------


def test_a_transition_emits_worker_state_once_per_change():
    daemon = make_daemon()
    recorder = Recorder(daemon, "worker.state")
    handle = daemon.workers.install(Idle("t"))
    assert handle.status is WorkerStatus.STOPPED
    assert handle.transition(WorkerStatus.SPINUP) is True
    assert handle.transition(WorkerStatus.SPINUP) is False
    assert handle.transition(WorkerStatus.LOOPING) is True
    assert handle.status is WorkerStatus.LOOPING and handle.info()["status_name"] == "LOOPING"
    assert recorder.events == [
        {"name": "t", "status": int(WorkerStatus.SPINUP), "status_name": "SPINUP"},
        {"name": "t", "status": int(WorkerStatus.LOOPING), "status_name": "LOOPING"},
    ]


def test_waiters_wake_on_a_transition():
    handle = make_daemon().workers.install(Idle("t"))
    gevent.spawn_later(0.01, handle.transition, WorkerStatus.LOOPING)
    assert handle.wait_until(lambda: handle.status is WorkerStatus.LOOPING, 2.0)
    assert not handle.wait_until(lambda: handle.status is WorkerStatus.PAUSED, 0.05)


# -- supervision, with a fake clock ---------------------------------------------------


def test_a_greenlet_worker_runs_and_its_status_follows_its_messages(started):
    daemon = make_daemon()
    recorder = Recorder(daemon, "worker.state")
    handle = daemon.workers.install(Spinning("g"), looptime=0.01, forever=True)
    started(daemon)
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, what="LOOPING")
    assert recorder.states("g")[:2] == ["SPINUP", "LOOPING"]
    handle.send("pause")
    wait_for(lambda: handle.status is WorkerStatus.PAUSED, what="PAUSED")
    assert recorder.states("g")[-1] == "PAUSED"
    assert handle.info()["restarts"] == 0


def test_deaths_past_restartintensity_back_off(started):
    daemon = make_daemon(restartintensity=2, restartperiod=10)
    recorder = Recorder(daemon, "worker.state", "worker.failed")
    handle = daemon.workers.install(Spinning("c"), looptime=0.01, forever=True)
    clock = FakeClock()
    daemon.workers.watchdog.clock = clock  # frozen: every death is within the period
    workers = started(daemon)
    for deaths in (1, 2):
        wait_for(lambda: handle.status is WorkerStatus.LOOPING, what="LOOPING")
        generation = handle.generation
        workers.kill(handle)
        # Within restartintensity: respawned at once, counted as a restart.
        wait_for(lambda: handle.generation > generation and handle.alive, what="respawn %d" % deaths)
        assert handle.restarts == deaths and handle.respawn_timer is None
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, what="LOOPING")
    workers.kill(handle)
    # The third death within the period: a respawn later, RESTARTING meanwhile.
    wait_for(lambda: not handle.alive, what="the third death")
    assert handle.status is WorkerStatus.RESTARTING
    assert handle.respawn_timer is not None and handle.restarts == 2
    assert handle.tracker.backing_off
    failed = [e for e in recorder.events if "reason" in e]
    assert len(failed) == 3 and all(e["reason"] == "killed by SIGKILL" for e in failed)
    # The backoff (0.1 s) passes: the respawn happens.
    wait_for(lambda: handle.alive and handle.restarts == 3, what="the delayed respawn")
    # Each death showed RESTARTING once before the next SPINUP.
    assert recorder.states("c").count("RESTARTING") == 3


def test_an_instance_up_longer_than_the_period_is_respawned_at_once(started):
    daemon = make_daemon(restartintensity=1, restartperiod=10)
    handle = daemon.workers.install(Spinning("u"), looptime=0.01, forever=True)
    clock = FakeClock()
    daemon.workers.watchdog.clock = clock
    workers = started(daemon)
    for deaths in (1, 2, 3):
        wait_for(lambda: handle.status is WorkerStatus.LOOPING, what="LOOPING")
        clock.now += 11  # each instance outlives restartperiod: the history resets
        generation = handle.generation
        workers.kill(handle)
        wait_for(lambda: handle.generation > generation and handle.alive, what="respawn %d" % deaths)
        assert handle.respawn_timer is None and not handle.tracker.backing_off
    assert handle.restarts == 3


def test_a_stopped_worker_stays_stopped(started):
    daemon = make_daemon()
    recorder = Recorder(daemon, "worker.state")
    handle = daemon.workers.install(Spinning("s"), looptime=0.01, forever=True)
    workers = started(daemon)
    wait_for(lambda: handle.status is WorkerStatus.LOOPING, what="LOOPING")
    assert workers.stop_worker("s", timeout=2) is True
    assert handle.status is WorkerStatus.STOPPED and not handle.alive and handle.exited.is_set()
    # (The watchdog emits the events of a death once it has handled it.)
    wait_for(lambda: recorder.states("s")[-2:] == ["SPINDOWN", "STOPPED"], what="worker.state STOPPED")
    gevent.sleep(0.05)
    assert not handle.alive and handle.restarts == 0
    assert workers.start_worker("s", timeout=2) is True
    assert handle.status is WorkerStatus.LOOPING and handle.restarts == 1
