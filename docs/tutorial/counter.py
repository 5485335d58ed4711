"""The first daemon with a worker: a forked process that counts its loops."""
from gevent import monkey

monkey.patch_all()

from gdaemon import Worker, exposed  # noqa: E402
from hello import HelloDaemon  # noqa: E402


class Counter(Worker):
    def spinup(self):
        self.count = 0
        self.logger.info("counting from 0")

    def loop(self):
        self.count += 1

    @exposed
    def stats(self):
        return {"count": self.count}


if __name__ == "__main__":
    daemon = HelloDaemon({"description": "Counter Daemon"})
    daemon.workers.install(Counter("counter"), looptime=0.5, forever=True)
    daemon.init()
