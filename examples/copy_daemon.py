#!/usr/bin/env python
"""The copy daemon of comodojo/daemon's documentation, on gdaemon.

A forked worker named ``handyman`` copies ``test.txt`` to ``copy_test.txt``
every 10 seconds, in the directory the daemon was started from.  The RPC
method ``handyman.changename`` sends it the command ``changename``, which its
``daemon.worker.changename`` receiver turns into a switch to
``copy_test_2.txt``::

    echo hello > test.txt
    python examples/copy_daemon.py -f &          # or -d to detach
    gdaemon-ctl call handyman.changename         # -> true
    gdaemon-ctl call worker.call handyman stats  # -> {"copies": ..., "target": ...}
    gdaemon-ctl stop

The socket is ``unix://daemon.sock`` (``$GDAEMON_SOCKET`` to change it).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402

from gdaemon import Daemon, Worker, exposed  # noqa: E402


class CopyWorker(Worker):
    """Copies ``test.txt`` to ``copy_test.txt`` (``copy_test_2.txt`` after ``changename``)."""

    source = "test.txt"
    target = "copy_test.txt"

    def spinup(self):
        # Runs in the worker process: open resources here, not in __init__.
        self.basepath = self.daemon.config["basepath"]
        self.copies = 0
        self.events.signal("daemon.worker.changename").connect(self.change_name, weak=False)
        self.logger.info("handyman ready in %s", self.basepath)

    def loop(self):
        self.copy()

    def spindown(self):
        self.logger.info("handyman leaving after %d copies", self.copies)

    def change_name(self, sender, payload=None, **kw):
        """Receiver of ``daemon.worker.changename``."""
        self.target = "copy_test_2.txt"
        self.logger.info("now copying to %s", self.target)
        # Copy at once rather than at the next loop, up to 10 s later.
        self.copy()

    def copy(self):
        source = os.path.join(self.basepath, self.source)
        try:
            shutil.copyfile(source, os.path.join(self.basepath, self.target))
        except FileNotFoundError:
            self.logger.warning("nothing to copy: %s does not exist", source)
            return
        self.copies += 1
        self.logger.info("copied %s to %s", self.source, self.target)

    @exposed
    def stats(self):
        return {"copies": self.copies, "target": self.target}


class CopyDaemon(Daemon):
    def setup(self):
        @self.rpc.method("handyman.changename", description="Make the handyman copy to copy_test_2.txt",
                         returns=bool)
        def changename():
            return self.workers.get("handyman").output_channel.send("changename") > 0


def main():
    daemon = CopyDaemon({"description": "Copy Daemon",
                         "sockethandler": os.environ.get("GDAEMON_SOCKET") or "unix://daemon.sock"})
    daemon.workers.install(CopyWorker("handyman"), looptime=10, forever=True)
    daemon.init()


if __name__ == "__main__":
    main()
