"""The command line of ``gdaemon-ctl``: options, the usage text, and :func:`main`.

Usage errors are detected before any connection is attempted (exit status
2), so ``gdaemon-ctl restart`` says what is missing even when no daemon runs.
"""

import os
import sys

from docopt import DocoptExit, docopt

from ..client import Client
from ..errors import ConfigError
from ..version import __version__
from .commands import CommandContext, UsageError, command_help, execute, parse_command
from .shell import shell

__all__ = ["main", "USAGE", "DEFAULT_ADDRESS"]

DEFAULT_ADDRESS = "unix://daemon.sock"

_OPTIONS = """Control a running gdaemon through its RPC endpoint.

Usage:
  gdaemon-ctl [options] [COMMAND [ARGS...]]
  gdaemon-ctl -h | --help
  gdaemon-ctl --version

Options:
  -a ADDRESS, --address ADDRESS  unix://PATH, tcp://HOST:PORT, tls://HOST:PORT,
                                 ws://HOST:PORT/rpc or wss://HOST:PORT/rpc
                                 (default: $GDAEMON_SOCKET, else unix://daemon.sock)
  -t TOKEN, --token TOKEN        authentication token (default: $GDAEMON_TOKEN)
  --json                         print the JSON-RPC result (or error object) as JSON
  --cafile FILE                  CA certificates for tls:// and wss://
  --timeout SECONDS              seconds to wait for the daemon [default: 5]
  -h, --help                     show this help
  --version                      print the version and exit
"""

_EPILOGUE = """
Without COMMAND, an interactive shell reads the same commands (quit, exit or
end of input leaves).

Exit status: 0 success, 1 RPC error, 2 usage error, 3 daemon unreachable.
"""

#: What ``gdaemon-ctl --help`` prints (the commands come from :data:`~gdaemon.ctl.commands.COMMANDS`).
USAGE = _OPTIONS + "\nCommands:\n" + "\n".join(command_help()) + "\n" + _EPILOGUE

_SHORT_USAGE = "Usage:\n  gdaemon-ctl [options] [COMMAND [ARGS...]]\n(gdaemon-ctl --help lists the commands)\n"


def main(argv=None):
    """Entry point of ``gdaemon-ctl``; returns the exit status.

    :param argv: the arguments (``sys.argv[1:]`` when ``None``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        options = docopt(USAGE, argv, options_first=True)
    except DocoptExit as exc:
        sys.stderr.write("%s\n" % exc)
        return 2
    except SystemExit as exc:  # --help printed the usage
        return exc.code or 0
    if options["--version"]:
        print("gdaemon-ctl (gdaemon %s)" % __version__)
        return 0
    address = options["--address"] or os.environ.get("GDAEMON_SOCKET") or DEFAULT_ADDRESS
    token = options["--token"] or os.environ.get("GDAEMON_TOKEN") or None
    try:
        timeout = float(options["--timeout"])
        if timeout <= 0:
            raise ValueError(timeout)
    except ValueError:
        sys.stderr.write("gdaemon-ctl: --timeout must be a positive number of seconds\n")
        return 2
    words = ([options["COMMAND"]] + options["ARGS"]) if options["COMMAND"] else []
    if words:
        try:
            handler, args = parse_command(words)
        except UsageError as exc:
            sys.stderr.write("gdaemon-ctl: %s\n%s" % (exc, _SHORT_USAGE))
            return 2
    try:
        client = Client(address, token=token, timeout=timeout, cafile=options["--cafile"])
    except ConfigError as exc:
        sys.stderr.write("gdaemon-ctl: %s\n" % exc)
        return 2
    session = CommandContext(client, as_json=options["--json"])
    try:
        if not words:
            return shell(session)
        with client:
            return execute(session, handler, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Our reader went away (``| head``): stop quietly, and keep the
        # interpreter from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
