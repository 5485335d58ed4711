"""``gdaemon-echo``: the echo daemon, a complete working example (docs/reference/console.rst, gdaemon-echo).

    gdaemon-echo -d                      # serve unix://daemon.sock in the current directory
    gdaemon-ctl call examples.echo hi    # -> "hi"
    gdaemon-echo --stop

    gdaemon-echo --http tcp://127.0.0.1:8080 -d    # and the dashboard on http://127.0.0.1:8080/

The token (docs/reference/rpc.rst, Authentication) is read from ``GDAEMON_TOKEN``, never from the command
line, where ``ps`` would show it.  A bad address is one line, ``error: ...``,
and exit status 1; a bad command line prints the usage and one line, exit 2.
"""

import os
import sys

from .lazy import collector_paused

with collector_paused():  # the daemon side, without the collector (gdaemon.lazy)
    from docopt import DocoptExit

    from .console import OPTIONS, parse_arguments, report_usage_error
    from .daemon import Daemon
    from .errors import ConfigError

__all__ = ["EchoDaemon", "main", "USAGE"]

USAGE = """\
Usage:
  {prog} [-a ADDRESS] [--http ADDRESS] [-d | -f] [-s] [-v]
  {prog} [-a ADDRESS] --stop [-v]
  {prog} [-a ADDRESS] --status
  {prog} [-a ADDRESS] --upgrade [-v]
  {prog} --version
  {prog} -h | --help

Options:
  -a, --address ADDRESS  RPC socket: unix://PATH, tcp://HOST:PORT [default: $GDAEMON_SOCKET or unix://daemon.sock]
  --http ADDRESS         also serve HTTP, the websocket, /metrics and the dashboard on tcp://HOST:PORT
                         [default: $GDAEMON_HTTP or none]
""" + OPTIONS

_DEFAULT_SOCKET = "unix://daemon.sock"


class EchoDaemon(Daemon):
    """Serves ``examples.echo(message) -> message``."""

    def setup(self):
        @self.rpc.method("examples.echo", description="I'm here to reply your data",
                         params=[("message", str)], returns=str)
        def echo(message):
            return message


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = USAGE.replace("{prog}", "gdaemon-echo")
    try:
        options = parse_arguments(usage, argv)
    except DocoptExit:
        return report_usage_error(usage, argv)
    address = options.get("--address") or ""
    if address.startswith("$GDAEMON_SOCKET"):
        address = os.environ.get("GDAEMON_SOCKET") or _DEFAULT_SOCKET
    http = options.get("--http") or ""
    if http.startswith("$GDAEMON_HTTP"):
        http = os.environ.get("GDAEMON_HTTP") or ""
    config = {"description": "Echo Daemon", "sockethandler": address, "arguments": USAGE,
              "websockethandler": http or None, "token": os.environ.get("GDAEMON_TOKEN") or None}
    try:
        daemon = EchoDaemon(config)
    except ConfigError as exc:
        if options.get("--verbose"):
            raise
        message = str(exc)
        for key, name in (("sockethandler:", "-a:"), ("websockethandler:", "--http:")):
            if message.startswith(key):
                message = name + message[len(key):]
        sys.stderr.write("error: %s\n" % message)
        return 1
    daemon.init(argv)


if __name__ == "__main__":
    sys.exit(main())
