"""``gdaemon-echo``: the echo daemon, a complete working example (SPEC 8).

    gdaemon-echo -d                      # serve unix://daemon.sock in the current directory
    gdaemon-ctl call examples.echo hi    # -> "hi"
    gdaemon-echo --stop
"""

import os
import sys

from docopt import DocoptExit

from .console import OPTIONS, parse_arguments
from .daemon import Daemon

__all__ = ["EchoDaemon", "main", "USAGE"]

USAGE = """\
Usage:
  {prog} [-a ADDRESS] [-d | -f] [-s] [-v]
  {prog} [-a ADDRESS] --stop [-v]
  {prog} [-a ADDRESS] --status
  {prog} -h | --help

Options:
  -a, --address ADDRESS  RPC socket: unix://PATH, tcp://HOST:PORT [default: $GDAEMON_SOCKET or unix://daemon.sock]
""" + OPTIONS


class EchoDaemon(Daemon):
    """Serves ``examples.echo(message) -> message``."""

    def setup(self):
        @self.rpc.method("examples.echo", description="I'm here to reply your data",
                         params=[("message", str)], returns=str)
        def echo(message):
            return message


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    address = os.environ.get("GDAEMON_SOCKET") or "unix://daemon.sock"
    try:
        options = parse_arguments(USAGE.replace("{prog}", "gdaemon-echo"), argv)
        address = options.get("--address") or address
    except DocoptExit:
        pass  # the console reports usage errors itself
    if address.startswith("$GDAEMON_SOCKET"):
        address = os.environ.get("GDAEMON_SOCKET") or "unix://daemon.sock"
    daemon = EchoDaemon({"description": "Echo Daemon", "sockethandler": address,
                         "arguments": USAGE})
    daemon.init(argv)


if __name__ == "__main__":
    main()
