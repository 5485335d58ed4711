"""The Python worker of ``stack.toml``: it watches the web pool from inside the daemon's stack.

``class = "stack_workers:Prober"`` in the daemon file imports this module
from the file's own directory (``gdaemon`` puts that directory first on
``sys.path``).  The worker is constructed with its table's name.
"""

import urllib.request

from gdaemon import Worker, exposed


class Prober(Worker):
    """Fetches ``/`` from the web pool every ``looptime`` seconds; logs when it goes up or down.

    The address is the ``listen`` of ``[workers.web]``, read from the daemon.
    """

    #: The pool it probes.
    watched = "web"

    def spinup(self):
        address = self.daemon.workers.pool(self.watched).listen
        self.target = "http://%s:%d/" % (address.host, address.port)
        self.ok = 0
        self.failed = 0
        self.last = None
        self.up = None

    def loop(self):
        try:
            with urllib.request.urlopen(self.target, timeout=2) as response:
                self.last = response.read().decode().strip()
        except OSError as exc:
            self.failed += 1
            self.last = str(exc)
            up = False
        else:
            self.ok += 1
            up = True
        if up != self.up:
            self.logger.info("%s is %s: %s", self.target, "up" if up else "DOWN", self.last)
            self.up = up

    @exposed
    def stats(self):
        """``gdaemon-ctl call worker.call prober stats``."""
        return {"target": self.target, "ok": self.ok, "failed": self.failed, "last": self.last}
