#!/usr/bin/env python
"""A prefork TCP echo server: one listening socket, a pool of forked workers.

The daemon binds ``tcp://127.0.0.1:10043`` once (``listen=``) and keeps it for
its whole life; each of the 4 instances of the ``echo`` pool accepts on it
(``self.listener``) with its own gevent server.  Kill an instance, scale the
pool or reload the daemon: pending connections wait in the socket's backlog,
none is refused::

    python examples/prefork_echo.py -d
    echo hello | nc -N 127.0.0.1 10043          # -> "echo.2 says hello"
    gdaemon-ctl call worker.scale echo 8         # 8 instances, once all LOOPING
    gdaemon-ctl workers
    python examples/prefork_echo.py --stop

The RPC socket is ``unix://daemon.sock`` (``$GDAEMON_SOCKET`` to change it);
the echo address is ``$ECHO_LISTEN`` (default ``tcp://127.0.0.1:10043``).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from gevent.pool import Pool  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from gdaemon import Daemon, Worker, exposed  # noqa: E402


class EchoWorker(Worker):
    """One instance of the pool: serves connections on the pool's listener."""

    def spinup(self):
        self.served = 0
        # A pool of handlers: stop() waits for them (gevent's default spawn
        # does not), so a restart, a reload or an upgrade cuts no connection.
        self.server = StreamServer(self.listener, self.handle, spawn=Pool())
        self.server.start()

    def handle(self, sock, address):
        with sock:
            for line in sock.makefile("rb"):
                sock.sendall(b"%s says %s" % (self.name.encode(), line))
                self.served += 1

    def loop(self):
        pass  # the server runs in this worker's hub between loops

    def spindown(self):
        self.server.stop(timeout=2)  # finish the connections in flight

    @exposed
    def stats(self):
        return {"instance": self.instance, "served": self.served}


class PreforkDaemon(Daemon):
    def setup(self):
        pass


def main():
    daemon = PreforkDaemon({"description": "Prefork Echo",
                            "sockethandler": os.environ.get("GDAEMON_SOCKET") or "unix://daemon.sock"})
    daemon.workers.install(EchoWorker("echo"), looptime=1, forever=True, instances=4,
                           listen=os.environ.get("ECHO_LISTEN") or "tcp://127.0.0.1:10043")
    daemon.init()


if __name__ == "__main__":
    main()
