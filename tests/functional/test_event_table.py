"""The declared event table (gdaemon.events.EVENTS) against a real daemon's events.

The documentation's event reference is generated from the table, so every
event a subscriber receives here must be declared, with exactly the payload
keys the table gives (its optional keys aside).
"""

import signal
import sys

from gdaemon.client import Client
from gdaemon.events import EVENTS
from support.workers import wait_looping, write_daemon

DECLARED = {event.name: event for event in EVENTS if event.where in ("daemon", "push")}

PROGRAM = 'gdaemon.ExecWorker("program", ["sh", "-c", "sleep 0.2; exit 3"])'

TALKER = """
class Talker(Worker):
    def spinup(self):
        self.logger.warning("talker up")
        self.send("hello", {"from": self.name})

    def loop(self):
        pass
"""


def test_a_daemons_events_have_the_declared_payload_keys(spawn, workdir):
    proc = spawn([sys.executable, write_daemon(workdir, """
        daemon.workers.install(Talker("talker"), looptime=0.05, forever=True)
        daemon.workers.install(%s, forever=True)
    """ % PROGRAM, extra=TALKER), "-f"])
    wait_looping(proc, "talker")
    seen = {}
    with Client("unix://%s/daemon.sock" % workdir, timeout=10) as client:
        events = client.subscribe(["*"], timeout=10)
        assert client.call("worker.restart", "talker") is True
        proc.signal(signal.SIGUSR2)
        with Client("unix://%s/daemon.sock" % workdir, timeout=10) as other:
            other.call("daemon.status")
        wanted = {"worker.state", "worker.exited", "worker.spawned", "worker.message",
                  "posix.sigusr2", "rpc.connect", "rpc.disconnect", "log.record", "worker.exit"}
        try:
            for event in events:
                seen.setdefault(event["name"], []).append(event["data"])
                if wanted <= set(seen):
                    break
        except TimeoutError:
            raise AssertionError("no %s within 10 s (seen: %s)" % (wanted - set(seen), sorted(seen))) from None
    for name, payloads in seen.items():
        assert name in DECLARED, "event %r is not declared in gdaemon.events.EVENTS" % name
        declared = DECLARED[name]
        for data in payloads:
            keys = set(data)
            assert set(declared.keys) <= keys <= set(declared.keys) | set(declared.optional), (name, data)
