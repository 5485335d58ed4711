"""Where a worker's status comes from, in a real daemon (issue 18).

The daemon records a worker's status from the STATE messages its instance
sends; the instance also writes it to its shared-memory status block.  When
the message is lost (the channel to the daemon was full), the watchdog's tick
finds the status in the block and records it all the same.
"""

import os
import sys

import pytest

from support import wait_until
from support.workers import events, marks, wait_looping, write_daemon

SPINDOWN = 3

#: A worker that fills its channel to the daemon while the daemon's hub is
#: blocked (an unpatched ``time.sleep`` in an RPC handler), then stops: the
#: STATE message of its SPINDOWN finds no room.
FLOODER = '''
from gdaemon.errors import ChannelFull


class Flooder(Worker):
    def loop(self):
        if not os.path.exists(os.path.join(HERE, "go")):
            return
        sent = 0
        # Smaller and smaller messages, down to the smallest (a record as
        # large as a STATE message's): what room is left cannot take a STATE.
        for command, payload in (("filler", "x" * 4000), ("filler", "x" * 100), ("", None)):
            try:
                while True:
                    self.send(command, payload)
                    sent += 1
            except ChannelFull:
                pass
        mark(self.name, "full %d" % sent)
        self.stop()

    def spindown(self):
        mark(self.name, "spindown")
        gevent.sleep(3600)  # stays SPINDOWN until the daemon kills it
'''

INSTALL = '''
daemon.workers.install(Flooder("flooder"), looptime=0.02)


@daemon.rpc.method("test.block", returns=bool)
def block():
    """Block the hub until the worker is in its spindown (at most 10 s)."""
    open(os.path.join(HERE, "go"), "w").close()
    deadline = time.monotonic() + 10
    log = os.path.join(HERE, "flooder.log")
    while time.monotonic() < deadline:
        if os.path.exists(log) and "spindown" in open(log).read():
            break
        time.sleep(0.01)  # unpatched: the hub reads nothing meanwhile
    return True
'''


@pytest.fixture
def flooded(spawn, workdir):
    path = write_daemon(workdir, INSTALL, extra=FLOODER, config={"shutdowntimeout": 0.5},
                        patched=False)
    return spawn([sys.executable, path, "-f"])


def test_a_status_whose_message_was_lost_is_read_from_the_status_block(flooded, workdir):
    wait_looping(flooded, "flooder")
    response = flooded.call("test.block")
    assert response.get("result") is True, response
    full = [line for line in marks(workdir, "flooder") if line.startswith("full ")]
    assert full and int(full[0].split()[1]) > 0, marks(workdir, "flooder")
    assert "spindown" in marks(workdir, "flooder")
    # No STATE message says SPINDOWN, yet the daemon records it (within a few ticks).
    wait_until(lambda: flooded.result("worker.status", ["flooder"]) == SPINDOWN, 5,
               message="worker.status SPINDOWN")
    assert flooded.result("worker.info", ["flooder"])["status_name"] == "SPINDOWN"
    wait_until(lambda: [e for e in events(workdir, "worker.state")
                        if e["data"]["status_name"] == "SPINDOWN"], 5, message="worker.state SPINDOWN")
    states = [e["data"]["status_name"] for e in events(workdir, "worker.state")]
    assert states.count("SPINDOWN") == 1, states
    assert states[-1] == "SPINDOWN", states


@pytest.fixture
def restarted(spawn, workdir):
    path = write_daemon(workdir, 'daemon.workers.install(Counter("c"), looptime=0.01, forever=True)')
    return spawn([sys.executable, path, "-f"])


def test_states_said_by_an_instance_come_before_its_exit_in_the_event_stream(restarted, workdir):
    """A STATE message the hub records at once has its worker.state emitted later, from
    the watchdog: still in order with the instance's exit, restart after restart (a
    restarted instance says SPINDOWN and exits at once, so its exit and its last
    STATE often reach the daemon in the same turn of the loop)."""
    pid = wait_looping(restarted, "c")["pid"]
    for _ in range(15):
        assert restarted.call("worker.restart", ["c"]).get("result") is True
        pid = wait_looping(restarted, "c", other_than=pid)["pid"]

    def stream():
        names = []
        for event in events(workdir, "worker."):
            if event["data"].get("name") != "c":
                continue
            if event["name"] == "worker.state":
                names.append(event["data"]["status_name"])
            elif event["name"] == "worker.exited":
                names.append("exited")
        return names
    wait_until(lambda: stream().count("exited") == 15 and stream()[-1] == "LOOPING", 10,
               message="the 15 restarts' events")
    names = stream()
    cycles = " ".join(names).split("exited")
    assert len(cycles) == 16, names
    for before, after in zip(cycles, cycles[1:]):
        # Each instance says SPINDOWN last, then exits; the next one is then
        # RESTARTING, SPINUP and LOOPING, in that order and nothing after.
        assert before.split()[-1] == "SPINDOWN", names
        assert after.split()[:3] == ["RESTARTING", "SPINUP", "LOOPING"], names
