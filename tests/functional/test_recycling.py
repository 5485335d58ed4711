"""Recycling workers past maxrss, maxloops or maxage, in real daemons (issue 16).

Checked from outside: the ``worker.recycled`` events and every ``worker.*``
event the daemon recorded (tests/support/workers.py), ``worker.info`` and
``/metrics``.
"""

import os
import sys
import time

import pytest

from support import DaemonProcess, free_port, rpc, wait_until
from support.workers import events, info, wait_looping, write_daemon

from test_metrics import scrape, value
from test_workers import stop_gracefully

LOOPING = 1

#: A worker that leaks memory on purpose, and a quick one for counting loops.
WORKERS = '''
class Leaky(Worker):
    def spinup(self):
        self.hoard = []

    def loop(self):
        self.hoard.append(b"x" * (4 << 20))  # 4 MiB a loop, really resident


class Quick(Worker):
    def loop(self):
        pass


class GQuick(GreenletWorker):
    def loop(self):
        pass
'''


@pytest.fixture
def start(spawn, workdir):
    started = []

    def _start(install, **config):
        path = write_daemon(workdir, install, extra=WORKERS, config=config)
        proc = spawn([sys.executable, path, "-f"])
        started.append(proc)
        return proc

    yield _start
    stop_gracefully(started)


def recycled(workdir, name=None):
    return [e["data"] for e in events(workdir, "worker.recycled")
            if name is None or e["data"]["name"] == name]


def test_a_worker_that_leaks_is_recycled_before_it_grows_without_bound(start, workdir):
    port = free_port()
    proc = start('daemon.workers.install(Leaky("leaky"), looptime=0.05, forever=True, maxrss="120M")',
                 rssinterval=0.2, websockethandler="tcp://127.0.0.1:%d" % port)
    first = wait_looping(proc, "leaky")["pid"]
    found = wait_until(lambda: recycled(workdir, "leaky"), 20, message="a worker.recycled event")
    assert found[0]["reason"] == "maxrss"
    assert found[0]["rss"] > 120 << 20
    assert set(found[0]) == {"name", "reason", "rss"}
    fresh = wait_looping(proc, "leaky", other_than=first)
    assert fresh["recycles"] >= 1 and fresh["recycle_reason"] == "maxrss"
    assert fresh["rss"] < 120 << 20
    # A graceful restart: no failure, no restart counted, spindown ran (exit 0).
    assert fresh["restarts"] == 0
    assert not events(workdir, "worker.failed")
    assert [e["data"]["exitcode"] for e in events(workdir, "worker.exited")][:1] == [0]
    samples, _ = scrape(port)
    assert value(samples, "gdaemon_worker_recycles_total", worker="leaky", reason="maxrss") >= 1
    # It keeps being recycled, never growing far past its limit.
    wait_until(lambda: len(recycled(workdir, "leaky")) >= 3, 30, message="three recycles")
    assert all(e["rss"] < 200 << 20 for e in recycled(workdir, "leaky"))


def test_a_pool_is_recycled_one_instance_at_a_time(start, workdir):
    proc = start('daemon.workers.install(Quick("pool"), looptime=0.01, forever=True, instances=3, '
                 'maxloops=15, maxloopsjitter=5)')
    for name in ("pool.0", "pool.1", "pool.2"):
        wait_looping(proc, name)
    wait_until(lambda: len(recycled(workdir)) >= 9, 40, message="nine recycles")
    # Replay every status change: once all three were LOOPING, never fewer than two.
    states = {}
    lowest = None
    for event in events(workdir, "worker.state"):
        states[event["data"]["name"]] = event["data"]["status"]
        looping = sum(1 for s in states.values() if s == LOOPING)
        if lowest is None and looping == 3:
            lowest = 3  # the pool is up: from here on, count
        elif lowest is not None:
            lowest = min(lowest, looping)
    assert lowest == 2, "a recycle overlapped another (lowest %s LOOPING)" % lowest
    figures = recycled(workdir)
    assert {e["reason"] for e in figures} == {"maxloops"}
    assert all(e["loops"] >= 15 for e in figures)
    assert {e["name"] for e in figures} == {"pool.0", "pool.1", "pool.2"}
    assert sum(info(proc, n)["recycles"] for n in ("pool.0", "pool.1", "pool.2")) >= 9


def test_recycling_never_backs_off_nor_counts_as_a_restart(start, workdir):
    # One restart in a minute is allowed before backoff: a recycle is none.
    proc = start('daemon.workers.install(Quick("q"), looptime=0.01, forever=True, maxloops=5)',
                 restartintensity=1, restartperiod=60)
    wait_until(lambda: len(recycled(workdir, "q")) >= 6, 30, message="six recycles")
    assert info(proc, "q")["restarts"] == 0
    assert not events(workdir, "worker.failed") and not events(workdir, "worker.respawned")
    # Every fresh instance started right after the old one exited.
    timeline = [(e["name"], e["time"]) for e in events(workdir, "worker.")
                if e["name"] in ("worker.exited", "worker.spawned")]
    gaps = [b[1] - a[1] for a, b in zip(timeline, timeline[1:])
            if a[0] == "worker.exited" and b[0] == "worker.spawned"]
    assert len(gaps) >= 5 and max(gaps) < 0.5, gaps
    codes = {e["data"]["status_name"] for e in events(workdir, "worker.state")}
    assert codes <= {"SPINUP", "LOOPING", "SPINDOWN", "RESTARTING"}


def test_a_greenlet_worker_is_recycled_by_age(start, workdir):
    proc = start('daemon.workers.install(GQuick("g"), looptime=0.05, forever=True, maxage=0.5, '
                 'maxagejitter=0.2)')
    began = time.monotonic()
    found = wait_until(lambda: recycled(workdir, "g"), 10, message="a recycle by age")
    assert found[0]["reason"] == "maxage" and 0.5 <= found[0]["age"] < 2.0
    assert time.monotonic() - began >= 0.5
    wait_until(lambda: info(proc, "g")["status"] == LOOPING and info(proc, "g")["recycles"] >= 1)
    assert info(proc, "g")["recycle_reason"] == "maxage"


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def readme_block(heading):
    """The first Python code block of the README section titled ``heading``, as shown."""
    with open(os.path.join(ROOT, "README.rst")) as f:
        text = f.read()
    section = text[text.index("\n%s\n" % heading):]
    block = section[section.index(".. code-block:: python"):]
    code = []
    for line in block.splitlines()[2:]:
        if line and not line.startswith("    "):
            break
        code.append(line[4:])
    return "\n".join(code).strip() + "\n"


def test_the_readme_recipe_recycles_its_leaky_scrapers(workdir):
    path = os.path.join(workdir, "scrapers.py")
    with open(path, "w") as f:
        f.write(readme_block("Recycling leaky workers"))
    proc = DaemonProcess([sys.executable, path, "-f"], workdir).start()
    try:
        address = proc.address
        for name in ("scraper.0", "scraper.1"):
            found = wait_until(lambda: rpc(address, "worker.info", [name])["result"]["recycles"] >= 1
                               and rpc(address, "worker.info", [name])["result"], 30,
                               message="%s recycled" % name)
            assert found["recycle_reason"] == "maxrss" and found["restarts"] == 0
    finally:
        proc.stop()


def test_an_exec_worker_is_recycled_by_age_and_memory(start, workdir):
    hog = "import time; data = b'x' * (80 << 20); time.sleep(3600)"
    proc = start('daemon.workers.install(gdaemon.ExecWorker("sleeper", ["sleep", "3600"]), '
                 'maxage=0.5)\n'
                 'daemon.workers.install(gdaemon.ExecWorker("hog", [sys.executable, "-c", %r]), '
                 'maxrss="40M")' % hog, rssinterval=0.2)
    first = wait_looping(proc, "sleeper")["pid"]
    found = wait_until(lambda: recycled(workdir, "sleeper"), 10, message="the program recycled")
    assert found[0]["reason"] == "maxage"
    assert wait_looping(proc, "sleeper", other_than=first)["recycles"] >= 1
    hogged = wait_until(lambda: recycled(workdir, "hog"), 20, message="the hog recycled")
    assert hogged[0]["reason"] == "maxrss" and hogged[0]["rss"] > 40 << 20
    assert info(proc, "hog")["restarts"] == 0 and info(proc, "sleeper")["restarts"] == 0
