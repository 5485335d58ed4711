"""The daemon's own command line (SPEC 6): ``-d -f -s -v -h --stop --status``.

A program may replace the usage with its own docopt string
(``config["arguments"]``), which must keep ``-d`` and ``-f``; the parsed
options are then on ``daemon.arguments``.
"""

import os
import signal
import sys
import time

from docopt import DocoptExit, docopt

from . import process
from .rpc.server import unix_socket_is_live

__all__ = ["Console", "USAGE", "OPTIONS", "parse_arguments"]

#: The options every console has (SPEC 6); programs that write their own
#: usage (``config["arguments"]``, ``gdaemon-echo``) append them to theirs.
OPTIONS = """\
  -d, --daemon       run as a daemon (fork, setsid, detach from the terminal)
  -f, --foreground   run in the foreground with the shell's stdio
  -s, --clean        remove a stale socket file and pid file first (never those of a live daemon)
  -v, --verbose      debug logging
  -h, --help         print the console and exit 0
  --stop             stop the running daemon (SIGTERM via the pid file, wait until it is gone)
  --status           print whether it runs (exit 0) or not (exit 3)
"""

#: The default console; ``{prog}`` is the program's name.
USAGE = """\
Usage:
  {prog} [-d | -f] [-s] [-v]
  {prog} --stop [-v]
  {prog} --status
  {prog} -h | --help

Options:
""" + OPTIONS


def parse_arguments(usage, argv):
    """docopt without its own ``--help`` handling; raises :class:`DocoptExit`.

    docopt-ng calls the switch ``default_help``, the original docopt ``help``.
    """
    try:
        return docopt(usage, argv, default_help=False)
    except TypeError:  # the original docopt
        return docopt(usage, argv, help=False)


#: Exit status of ``--status`` when no daemon runs (LSB "program is not running").
NOT_RUNNING = 3
USAGE_ERROR = 2


class Console:
    """Parses the command line of an exec script and acts on it."""

    def __init__(self, daemon, prog=None):
        self.daemon = daemon
        self.prog = prog or os.path.basename(sys.argv[0]) or "gdaemon"
        self.usage = (daemon.config["arguments"] or USAGE).replace("{prog}", self.prog)

    def banner(self):
        return "%s\n\n%s" % (self.daemon.config["description"], self.usage.rstrip("\n"))

    def main(self, argv):
        """Act on ``argv``; return the process exit status."""
        argv = list(argv)
        if not argv:
            print(self.banner())
            return 0
        try:
            options = parse_arguments(self.usage, argv)
        except DocoptExit as exc:
            sys.stderr.write("%s\n" % (exc.code or self.usage.strip()))
            return USAGE_ERROR
        self.daemon.arguments = dict(options)
        opt = options.get
        if opt("--help"):
            print(self.banner())
            return 0
        self.daemon.verbose = bool(opt("--verbose"))
        if opt("--status"):
            return self.status()
        if opt("--stop"):
            return self.stop()
        if opt("--clean"):
            self.clean()
            if not (opt("--daemon") or opt("--foreground")):
                return 0
        if opt("--daemon"):
            owner = process.pidfile_owner(self.daemon.config["pidfile"])
            if owner:
                sys.stderr.write("error: already running (pid %s)\n" % owner)
                return 1
            return self.daemon.daemonize()
        if opt("--foreground"):
            return self.daemon.run_foreground()
        print(self.banner())
        return 0

    def status(self):
        owner = process.pidfile_owner(self.daemon.config["pidfile"])
        if owner:
            print("%s is running (pid %s)" % (self.daemon.config["description"], owner))
            return 0
        print("%s is not running" % self.daemon.config["description"])
        return NOT_RUNNING

    def stop(self):
        cfg = self.daemon.config
        owner = process.pidfile_owner(cfg["pidfile"])
        if not owner or owner < 0:
            print("%s is not running" % cfg["description"])
            return 0
        try:
            os.kill(owner, signal.SIGTERM)
        except ProcessLookupError:
            print("%s is not running" % cfg["description"])
            return 0
        deadline = time.monotonic() + cfg["shutdowntimeout"] + 10
        while time.monotonic() < deadline:
            if not process.pid_alive(owner) and not process.pidfile_owner(cfg["pidfile"]):
                print("%s stopped (pid %d)" % (cfg["description"], owner))
                return 0
            time.sleep(0.02)
        sys.stderr.write("error: %s (pid %d) did not stop within %ss\n"
                         % (cfg["description"], owner, cfg["shutdowntimeout"] + 10))
        return 1

    def clean(self):
        """Remove a stale pid file and socket file; never those of a live daemon."""
        cfg = self.daemon.config
        owner = process.pidfile_owner(cfg["pidfile"])
        if owner:
            print("not cleaning: %s is running (pid %s)" % (cfg["description"], owner))
            return False
        removed = []
        if os.path.lexists(cfg["pidfile"]):
            os.unlink(cfg["pidfile"])
            removed.append(cfg["pidfile"])
        address = cfg.address
        if address.is_unix and os.path.lexists(address.path):
            if unix_socket_is_live(address.path):
                print("not removing %s: a process serves it" % address.path)
            else:
                os.unlink(address.path)
                removed.append(address.path)
        for path in removed:
            print("removed %s" % path)
        return True
