"""A first daemon: one RPC method on a unix socket."""
from gevent import monkey

monkey.patch_all()  # first, before anything else is imported

from gdaemon import Daemon  # noqa: E402


class HelloDaemon(Daemon):
    def setup(self):
        @self.rpc.method("hello.greet", description="Greet NAME.",
                         params=[("name", str)], returns=str)
        def greet(name):
            return "Hello, %s!" % name


if __name__ == "__main__":
    HelloDaemon({"description": "Hello Daemon"}).init()
