"""The daemon's own command line: ``-d -f -s -v -h --stop --status --upgrade --version``.

A program may replace the usage with its own docopt string
(``config["arguments"]``), which must keep ``-d`` and ``-f``; the parsed
options are then on ``daemon.arguments``.  Options are looked up by every
name the usage gives them, so a usage that declares ``-d`` and ``-f`` as
short options only works as well as the default one.

Errors on the command line (an unknown option, a bad combination) print the
usage and one plain line naming the offending option, and exit 2; docopt's
own diagnostics (``Option(None, '--bogus-flag', 0, True)``) never reach the
user.

``--stop`` sends SIGTERM to the pid in the pid file and waits; a daemon still
alive ``shutdowntimeout`` + :data:`STOP_GRACE` seconds later (a hub blocked by
a greenlet, a wedged spindown) is SIGKILLed together with its worker
processes, and ``--stop`` says so and exits 1: it never leaves a daemon
behind.
"""

import logging
import os
import re
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from docopt import DocoptExit, docopt

from . import process
from .version import __version__
from .upgrade import upgrading
from .wire.unix import unix_socket_is_live

__all__ = ["Console", "USAGE", "OPTIONS", "parse_arguments", "version_line"]

#: The options every console has (docs/reference/console.rst); programs that write their own
#: usage (``config["arguments"]``, ``gdaemon-echo``) append them to theirs.
OPTIONS = """\
  -d, --daemon       run as a daemon (fork, setsid, detach from the terminal)
  -f, --foreground   run in the foreground with the shell's stdio
  -s, --clean        remove a stale socket file and pid file first (never those of a live daemon)
  -v, --verbose      debug logging
  -h, --help         print the console and exit 0
  --stop             stop the running daemon (SIGTERM via the pid file, wait until it is gone)
  --status           print whether it runs (exit 0) or not (exit 3)
  --upgrade          replace the running daemon by a new one without downtime
  --version          print the version and exit 0
"""

#: The default console; ``{prog}`` is the program's name.
USAGE = """\
Usage:
  {prog} [-d | -f] [-s] [-v]
  {prog} --stop [-v]
  {prog} --status
  {prog} --upgrade [-v]
  {prog} --version
  {prog} -h | --help

Options:
""" + OPTIONS


def version_line(prog):
    """What ``--version`` prints: ``"PROG (gdaemon VERSION)"``, or ``"gdaemon VERSION"``."""
    if prog in ("", "gdaemon"):
        return "gdaemon %s" % __version__
    return "%s (gdaemon %s)" % (prog, __version__)


#: ``((usage, argv), options)`` of the last successful :func:`parse_arguments`.
_last_parse: Optional[Tuple[Tuple[str, Tuple[str, ...]], Dict[str, Any]]] = None


def parse_arguments(usage, argv):
    """docopt without its own ``--help`` handling; raises :class:`DocoptExit`.

    docopt-ng calls the switch ``default_help``, the original docopt ``help``.
    The last parse is remembered: a console script that reads its own
    options first (``gdaemon-echo``: ``-a``, ``--http``) and then hands the
    same command line to :meth:`Daemon.init` parses it once (docopt takes
    2-4 ms a parse).  Each call returns a dict of its own.
    """
    global _last_parse
    key = (usage, tuple(argv))
    if _last_parse is not None and _last_parse[0] == key:
        return dict(_last_parse[1])
    try:
        options = docopt(usage, argv, default_help=False)
    except TypeError:  # the original docopt
        options = docopt(usage, argv, help=False)  # type: ignore[call-arg]  # the original's keyword
    _last_parse = (key, dict(options))
    return dict(options)


#: Exit status of ``--status`` when no daemon runs (LSB "program is not running").
NOT_RUNNING = 3
USAGE_ERROR = 2
#: Seconds ``--stop`` waits beyond ``shutdowntimeout`` before SIGKILL.
STOP_GRACE = 3.0

#: The options of :data:`OPTIONS`, by every name they have.
_ALIASES = {"--daemon": "-d", "--foreground": "-f", "--clean": "-s", "--verbose": "-v", "--help": "-h"}


def option(options, name):
    """The value of option ``name`` in docopt's result, whichever of its names
    (``--daemon`` or ``-d``) the usage declared; ``None`` when absent."""
    value = options.get(name)
    if value is None:
        alias = _ALIASES.get(name)
        if alias is None:
            alias = next((long for long, short in _ALIASES.items() if short == name), None)
        if alias is not None:
            value = options.get(alias)
    return value


# -- usage errors ---------------------------------------------------------------

# Patterns, compiled (and cached) by re at first use: only a usage error
# needs them, and compiling them cost every start 0.4 ms.
_OPTION_LINE = r"^\s*(-[^\s].*?)(?:\s{2,}|$)"
_OPTION_NAME = r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)(?:[= ](<[^>]+>|[A-Z][A-Z0-9_-]*))?"


def declared_options(usage):
    """``{name: takes_a_value}`` for every option the docopt ``usage`` names."""
    found: Dict[str, bool] = {}
    for line in usage.splitlines():
        match = re.match(_OPTION_LINE, line)
        if match:  # an options-section line: "-a, --address ADDRESS  text"
            names = re.findall(_OPTION_NAME, match.group(1))
            takes = any(arg for _, arg in names)
            for name, _ in names:
                found[name] = found.get(name, False) or takes
    for name, arg in re.findall(_OPTION_NAME, usage):
        found[name] = found.get(name, False) or bool(arg)
    return found


def usage_section(usage):
    """The ``Usage:`` paragraph of a docopt string."""
    match = re.search(r"^([^\n]*usage:.*?)(?:\n\s*\n|\Z)", usage, re.I | re.S | re.M)
    return (match.group(1) if match else usage).rstrip()


def _units(argv, known):
    """Split ``argv`` into options (with their value) and other words.

    :returns: ``(units, problem)``; ``problem`` names an unknown option or a
        missing value, else ``None``.
    """
    units, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--" or not word.startswith("-") or word == "-":
            units.append([word])
            i += 1
            continue
        if word.startswith("--"):
            name, eq, _ = word.partition("=")
            matches = [n for n in known if n == name] or [n for n in known if n.startswith(name)
                                                          and n.startswith("--")]
            if not matches:
                return units, "unknown option %s" % name
            if len(matches) > 1:
                return units, "ambiguous option %s (%s)" % (name, ", ".join(sorted(matches)))
            unit = [word]
            if known[matches[0]] and not eq:
                if i + 1 >= len(argv):
                    return units, "option %s needs a value" % matches[0]
                unit.append(argv[i + 1])
                i += 1
            units.append(unit)
            i += 1
            continue
        unit = [word]
        for j, char in enumerate(word[1:], 1):
            name = "-" + char
            if name not in known:
                return units, "unknown option %s" % name
            if known[name]:
                if j == len(word) - 1:
                    if i + 1 >= len(argv):
                        return units, "option %s needs a value" % name
                    unit.append(argv[i + 1])
                    i += 1
                break
        units.append(unit)
        i += 1
    return units, None


def explain_usage_error(usage, argv):
    """One plain line saying what is wrong with ``argv`` for ``usage``."""
    units, problem = _units(argv, declared_options(usage))
    if problem:
        return problem
    # Every option is known: a bad combination.  The first word whose
    # removal makes the rest acceptable is the offending one.
    for index in range(len(units) - 1, -1, -1):
        rest = [word for k, unit in enumerate(units) if k != index for word in unit]
        try:
            parse_arguments(usage, rest)
        except DocoptExit:
            continue
        word = units[index][0]
        others = [unit[0] for k, unit in enumerate(units) if k != index]
        if not word.startswith("-"):
            return "unexpected argument %r" % word
        if others:
            return "option %s cannot be combined with %s" % (word.split("=")[0], " ".join(others))
        return "option %s is not accepted here" % word.split("=")[0]
    # Else the word that turns an acceptable beginning into a refused one.
    for index in range(1, len(units)):
        head = [word for unit in units[:index] for word in unit]
        try:
            parse_arguments(usage, head)
        except DocoptExit:
            continue
        try:
            parse_arguments(usage, head + units[index])
        except DocoptExit:
            return "option %s cannot be combined with %s" % (
                units[index][0].split("=")[0], " ".join(unit[0] for unit in units[:index]))
    words = [unit[0] for unit in units]
    return "invalid combination of arguments: %s" % (" ".join(words) if words else "(none)")


def report_usage_error(usage, argv, out=None):
    """Print the usage and the offending option (docs/reference/console.rst); return exit status 2."""
    out = out or sys.stderr
    out.write("%s\nerror: %s\n" % (usage_section(usage), explain_usage_error(usage, argv)))
    out.flush()
    return USAGE_ERROR


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
        except DocoptExit:
            return report_usage_error(self.usage, argv)
        self.daemon.arguments = dict(options)

        def opt(name):
            return option(options, name)
        if opt("--help"):
            print(self.banner())
            return 0
        if opt("--version"):
            print(version_line(self.prog))
            return 0
        self.daemon.verbose = bool(opt("--verbose"))
        if opt("--status"):
            return self.status()
        if opt("--upgrade"):
            return self.upgrade()
        if opt("--stop"):
            return self.stop()
        if upgrading():
            # Started by the daemon it replaces: that one holds the pid file
            # and the sockets; this one is already detached when it was.
            return self.daemon.run_upgrade(foreground=bool(opt("--foreground")))
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
            # Until the daemon's own logging is set up, a record would go to
            # logging's last-resort handler (stderr), doubling the one
            # "error: ..." line a failed start prints (docs/reference/console.rst).
            root = logging.getLogger()
            if not root.handlers:
                root.addHandler(logging.NullHandler())
            return self.daemon.run_foreground()
        print(self.banner())
        return 0

    def upgrade(self):
        """Ask the running daemon to replace itself (``daemon.upgrade``); wait for the new one."""
        from .upgrade import request_upgrade
        return request_upgrade(self.daemon.config)

    def status(self):
        owner = process.pidfile_owner(self.daemon.config["pidfile"])
        if owner:
            print("%s is running (pid %s)" % (self.daemon.config["description"], owner))
            return 0
        print("%s is not running" % self.daemon.config["description"])
        return NOT_RUNNING

    def stop(self):
        """SIGTERM the daemon and wait; past ``shutdowntimeout`` + grace, SIGKILL it."""
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
        allowed = cfg["shutdowntimeout"] + STOP_GRACE
        if self._wait_gone(owner, allowed):
            print("%s stopped (pid %d)" % (cfg["description"], owner))
            return 0
        killed = kill_tree(owner)
        if not killed:
            sys.stderr.write("error: %s (pid %d) did not stop within %gs; not killing it: it is PID 1 "
                             "or an ancestor of this command\n" % (cfg["description"], owner, allowed))
            return 1
        gone = self._wait_gone(owner, 5.0)
        children = len(killed) - 1   # workers, the standby, what they started
        sys.stderr.write("error: %s (pid %d) did not stop within %gs: killed it%s with SIGKILL%s\n"
                         % (cfg["description"], owner, allowed,
                            " and its %d child process%s" % (children, "" if children == 1 else "es")
                            if children > 0 else "",
                            "" if gone else ", but it is still there"))
        if gone:
            self.clean(quiet=True)
        return 1

    def _wait_gone(self, pid, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not process_alive(pid) and not process.pidfile_owner(self.daemon.config["pidfile"]):
                return True
            time.sleep(0.02)
        return False

    def clean(self, quiet=False):
        """Remove a stale pid file and socket file; never those of a live daemon."""
        cfg = self.daemon.config
        owner = process.pidfile_owner(cfg["pidfile"])
        if owner:
            if not quiet:
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
            if not quiet:
                print("removed %s" % path)
        return True


# -- processes, from /proc -------------------------------------------------------

def _stat(pid):
    """``(state, ppid, pgid)`` of ``pid`` from ``/proc/PID/stat``, or ``None``."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def process_alive(pid):
    """True while ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    if not process.pid_alive(pid):
        return False
    stat = _stat(pid)
    return stat is None or stat[0] != "Z"  # None: no /proc (macOS), kill(pid, 0) is all we know


def _ancestors(pid):
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        stat = _stat(pid)
        if stat is None:
            break
        pid = stat[1]
    return found


def descendants(pid):
    """Every live process whose ancestry leads to ``pid`` (one scan of /proc)."""
    children: Dict[int, List[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid):
    """SIGKILL ``pid``, its descendants and, when it leads one, its process group.

    The daemon is stopped (SIGSTOP) first so it cannot fork while its children
    are listed.  Returns the pids signalled, ``pid`` first.  Never touches
    PID 1 or an ancestor of this process (a pid file written in another PID
    namespace can name a process that is not the daemon here): returns ``[]``.
    """
    if pid <= 1 or pid in _ancestors(os.getpid()):
        return []
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return []
    victims = [pid] + descendants(pid)
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass  # exited meanwhile
    try:
        if os.getpgid(pid) == pid != os.getpgid(0):
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # gone, or a group we may not signal: its members were killed above
    return victims
