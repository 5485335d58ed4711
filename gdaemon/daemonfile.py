"""A daemon described in a TOML file: read and check it, start nothing.

::

    [daemon]                      # configuration keys of the Daemon
    description = "Web stack"

    [workers.web]                 # a program (gdaemon.ExecWorker)
    command = ["uvicorn", "--fd", "3", "app:app"]
    instances = 4
    listen = "tcp://127.0.0.1:8000"

    [workers.mailer]              # a Python Worker subclass
    class = "myapp.workers:Mailer"
    looptime = 5

:func:`load` reads a file and returns a :class:`DaemonFile`, or raises
:class:`DaemonFileError` carrying every problem found, one line each, each
naming its table and key (``workers.web.maxrss: expected a size like "512M",
got "lots"``).  Nothing runs: the checks are those that can be made without
starting anything (types, names, start order, sizes, limits, signals, and
importing the Python worker classes).

Paths: relative paths of the file (a unix ``sockethandler``, ``pidfile``,
``logfile``, ``certfile``, ``keyfile``, a worker's ``cwd`` and unix
``listen``) resolve against ``basepath``, which defaults to the file's own
directory.  ``class = "module:Class"`` is imported with the file's directory
first on ``sys.path``.
"""

import difflib
import importlib
import math
import os
import re
import signal
import sys
from typing import Dict

from .config import DEFAULTS, Config
from .errors import ConfigError
from .identity import RLIMIT_NAMES, parse_rlimits, resolve_identity
from .signalnames import signal_number
from .wire.address import parse_address

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["DaemonFile", "WorkerSpec", "DaemonFileError", "load", "parse", "parse_size",
           "INSTALL_KEYS", "EXEC_KEYS", "RUNTIME_KEYS"]

#: Keys of a worker table that are ``install()`` options, for both kinds.
INSTALL_KEYS = ("looptime", "forever", "timeout", "instances", "after", "listen", "user", "group",
                "rlimits", "maxrss", "maxloops", "maxloopsjitter", "maxage", "maxagejitter")
#: Keys of an exec worker's table (``command = [...]``) besides ``install()`` options.
EXEC_KEYS = ("command", "env", "cwd", "shell", "stopsignal")
#: The key of a Python worker's table.
CLASS_KEY = "class"
#: ``[daemon]`` keys a running daemon takes from a reloaded file; the others
#: need a restart (or ``--upgrade``) to change.
RUNTIME_KEYS = ("shutdowntimeout", "workerlimit")
#: ``[daemon]`` keys a file cannot set: the ``gdaemon`` command's console is fixed.
_NOT_IN_FILE = {"arguments": "the gdaemon command has its own console"}
#: Keys that make any single key acceptable on its own to :class:`Config`.
_CERTIFIED = {"certfile": "cert.pem", "keyfile": "key.pem"}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class DaemonFileError(ConfigError):
    """A daemon file that cannot be used; :attr:`problems` holds one line per problem."""

    def __init__(self, path, problems):
        self.path = path
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid"
        more = len(self.problems) - 1
        super().__init__("%s: %s%s" % (path, first, " (and %d more problem%s: gdaemon --check %s)"
                                       % (more, "" if more == 1 else "s", path) if more else ""))


class WorkerSpec:
    """One ``[workers.NAME]`` table, checked.

    :ivar name: the table's name (the worker's, or its pool's).
    :ivar kind: ``"exec"`` (``command``) or ``"class"`` (``class``).
    :ivar table: the table as the daemon uses it (defaults filled in, paths
        absolute): two specs with equal tables run the same worker.
    :ivar options: the keyword arguments of ``install()``.
    :ivar worker_class: the imported class (``class`` tables, once imported).
    """

    def __init__(self, name, kind, table, options, worker_class=None):
        self.name = name
        self.kind = kind
        self.table = table
        self.options = options
        self.worker_class = worker_class

    @property
    def instances(self):
        return self.options.get("instances", 1)

    @property
    def after(self):
        return tuple(self.options.get("after", ()))

    def make(self):
        """A new, not yet installed, worker object for this table.

        :raises ConfigError: the class could not be constructed with the name.
        """
        if self.kind == "exec":
            ExecWorker = _exec_worker_class()
            if ExecWorker is None:
                raise ConfigError("workers.%s.command: this version of gdaemon cannot run programs "
                                  "(no gdaemon.ExecWorker)" % self.name)
            kwargs = {key: self.table[key] for key in EXEC_KEYS[1:] if key in self.table}
            return ExecWorker(self.name, self.table["command"], **kwargs)
        try:
            return self.worker_class(self.name)
        except Exception as exc:
            raise ConfigError("workers.%s.class: %s(%r) raised %s: %s"
                              % (self.name, self.table[CLASS_KEY], self.name, type(exc).__name__, exc)) from None

    def same_but_instances(self, other):
        """True when ``other`` differs from this table in ``instances`` only."""
        mine = dict(self.table, instances=None)
        return mine == dict(other.table, instances=None)

    def describe(self):
        """One line: ``web (exec, 4 instances, after cache)``."""
        parts = ["exec" if self.kind == "exec" else "class %s" % self.table[CLASS_KEY]]
        if self.instances != 1:
            parts.append("%d instance%s" % (self.instances, "" if self.instances == 1 else "s"))
        if "listen" in self.options:
            parts.append("listen %s" % self.options["listen"])
        if self.after:
            parts.append("after %s" % ", ".join(self.after))
        return "%s (%s)" % (self.name, ", ".join(parts))

    def __eq__(self, other):
        return isinstance(other, WorkerSpec) and (self.name, self.table) == (other.name, other.table)

    def __repr__(self):
        return "<WorkerSpec %s>" % self.describe()


class DaemonFile:
    """A checked daemon file.

    :ivar path: the file's absolute path.
    :ivar directory: its directory (first on ``sys.path`` for ``class =``).
    :ivar config: the ``[daemon]`` table as a config dict, ``basepath`` set.
    :ivar workers: ``{name: WorkerSpec}`` in the file's order.
    :ivar order: worker names in start order (a worker after those it names in ``after``).
    """

    def __init__(self, path, config, workers, order):
        self.path = path
        self.directory = os.path.dirname(path)
        self.config = config
        self.workers = workers
        self.order = order

    def resolved_config(self):
        """The ``[daemon]`` table as the daemon holds it (defaults, absolute paths)."""
        return Config(self.config).resolve()

    def __repr__(self):
        return "<DaemonFile %s: %s>" % (self.path, ", ".join(self.order))


# -- reading -------------------------------------------------------------------------

def load(path, import_classes=True, workers=True):
    """Read and check the daemon file at ``path``.

    :param import_classes: import the ``class =`` of Python workers (and
        check that each is a ``gdaemon.Worker``).
    :param workers: ``False``: check the ``[daemon]`` table only and leave
        the workers out (what ``--stop`` and ``--status`` need: a file
        being edited must not keep them from finding the running daemon).
    :raises DaemonFileError: every problem found, one line each.
    """
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DaemonFileError(path, ["cannot read the file: %s" % (exc.strerror or exc)]) from None
    return parse(data, path, import_classes=import_classes, workers=workers)


def parse(data, path, import_classes=True, workers=True):
    """Check the TOML text ``data`` (bytes or str) of the file at ``path``.

    :raises DaemonFileError: every problem found, one line each.
    """
    path = os.path.abspath(path)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DaemonFileError(path, ["not UTF-8 text: %s" % exc]) from None
    try:
        document = tomllib.loads(data)
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line: "Expected '=' after a key ... (at line 3, column 5)".
        raise DaemonFileError(path, ["invalid TOML: %s" % exc]) from None
    checker = _Checker(path, import_classes, workers)
    result = checker.check(document)
    if checker.problems:
        raise DaemonFileError(path, checker.problems)
    return result


# -- sizes, signals -------------------------------------------------------------------

def parse_size(value):
    """Bytes in ``value``: an int, or a string like ``"512M"``, ``"2G"``, ``"64k"``
    (powers of 1024; ``"512MB"`` and ``"512MiB"`` are the same).

    :raises ValueError: anything else, or a size that is not positive.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        number, unit = match.groups()
        size = int(float(number) * _UNITS[unit.lower()])
    else:
        raise ValueError('expected a size like "512M", got %s' % _show(value))
    if size <= 0:
        raise ValueError('expected a positive size like "512M", got %s' % _show(value))
    return size


def signal_name(value):
    """``"TERM"`` for ``"TERM"``, ``"SIGTERM"``, ``"term"`` or ``15`` (a number without a
    name, a real-time signal, stays a number).

    :raises ValueError: not a signal of this system.
    """
    number = signal_number(value)
    try:
        return signal.Signals(number).name[3:]
    except ValueError:
        return number


# -- the checks ----------------------------------------------------------------------

def _show(value):
    """A value as the message quotes it: TOML-like (strings in double quotes)."""
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _type(value):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _did_you_mean(key, known):
    close = difflib.get_close_matches(key, known, n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    """Collects every problem of one file; ``check()`` returns the :class:`DaemonFile`."""

    def __init__(self, path, import_classes, with_workers=True):
        self.path = path
        self.with_workers = with_workers
        self.directory = os.path.dirname(path)
        self.import_classes = import_classes
        self.problems = []

    def problem(self, where, message):
        self.problems.append("%s: %s" % (where, message))

    def check(self, document):
        for key in document:
            if key not in ("daemon", "workers"):
                self.problem(key, "unknown table (a daemon file has [daemon] and [workers.NAME])"
                             + _did_you_mean(key, ["daemon", "workers"]))
        daemon = document.get("daemon", {})
        if not isinstance(daemon, dict):
            self.problem("daemon", "expected a table, got %s" % _type(daemon))
            daemon = {}
        config = self.check_daemon(daemon)
        workers_table = document.get("workers", {}) if self.with_workers else {}
        if not isinstance(workers_table, dict):
            self.problem("workers", "expected tables [workers.NAME], got %s" % _type(workers_table))
            workers_table = {}
        workers = {}
        for name, table in workers_table.items():
            spec = self.check_worker(name, table, config)
            if spec is not None:
                workers[name] = spec
        order = self.check_order(workers, workers_table)
        self.check_together(workers, config)
        return DaemonFile(self.path, config, workers, order)

    # -- [daemon] --------------------------------------------------------------

    def check_daemon(self, table):
        config = {}
        count = len(self.problems)
        for key, value in table.items():
            where = "daemon.%s" % key
            if key in _NOT_IN_FILE:
                self.problem(where, "not in a daemon file: %s" % _NOT_IN_FILE[key])
                continue
            if key not in DEFAULTS:
                self.problem(where, "unknown key" + _did_you_mean(key, list(DEFAULTS)))
                continue
            try:
                # One key at a time, so that every bad key is named; what
                # needs several keys (tls:// and its certificate) comes after.
                Config(dict(_CERTIFIED, **{key: value}))
            except ConfigError as exc:
                message = str(exc)
                if message.startswith(key + ":"):
                    message = message[len(key) + 1:].strip()
                self.problem(where, message)
                continue
            config[key] = value
        basepath = config.get("basepath")
        config["basepath"] = os.path.normpath(os.path.join(self.directory, os.path.expanduser(basepath))
                                              if basepath else self.directory)
        if len(self.problems) == count:
            try:  # what needs several keys together (tls:// and its certificate)
                resolved = Config(config).resolve()
            except ConfigError as exc:
                self.problem("daemon", str(exc))
            else:
                self.check_security(resolved)
        return config

    def check_security(self, config):
        if config["token"] or config["insecure"]:
            return
        for key in ("sockethandler", "websockethandler"):
            address = config.address if key == "sockethandler" else config.websocket_address
            try:
                loopback = address is None or address.is_loopback
            except OSError:  # the host name does not resolve here
                continue
            if not loopback:
                self.problem("daemon.%s" % key, "a non-loopback address needs token (or insecure = true)")

    # -- [workers.NAME] -------------------------------------------------------------

    def check_worker(self, name, table, config):
        where = "workers.%s" % name
        if not isinstance(table, dict):
            self.problem(where, "expected a table, got %s" % _type(table))
            return None
        if not name or "." in name or name != name.strip():
            self.problem(where, "a worker name must be non-empty, without dots or surrounding spaces")
            return None
        has_command, has_class = "command" in table, CLASS_KEY in table
        if has_command and has_class:
            self.problem(where, "command and class exclude each other: a program or a Python worker")
            return None
        if not (has_command or has_class):
            self.problem(where, 'needs command = ["program", ...] (a program) or class = "module:Class" '
                         "(a Python worker)")
            return None
        kind = "exec" if has_command else "class"
        allowed = INSTALL_KEYS + (EXEC_KEYS if kind == "exec" else (CLASS_KEY,))
        count = len(self.problems)
        for key in table:
            if key not in allowed:
                if key in EXEC_KEYS:
                    self.problem("%s.%s" % (where, key), "only for programs (command = [...]), not for class =")
                else:
                    self.problem("%s.%s" % (where, key), "unknown key" + _did_you_mean(key, list(allowed)))
        basepath = config["basepath"]
        normal = {}
        options = {}
        worker_class = None
        if kind == "exec":
            normal.update(self.check_exec(where, table, basepath))
        else:
            normal[CLASS_KEY], worker_class = self.check_class(where, table[CLASS_KEY])
        options.update(self.check_install(where, table, config, kind))
        normal.update(options)
        if len(self.problems) > count:
            return None
        return WorkerSpec(name, kind, normal, options, worker_class)

    def check_exec(self, where, table, basepath):
        normal = {}
        shell = table.get("shell", False)
        if not isinstance(shell, bool):
            self.problem(where + ".shell", "expected true or false, got %s" % _show(shell))
            shell = False
        command = table["command"]
        if isinstance(command, str):
            if not shell:
                self.problem(where + ".command", "a string needs shell = true; else give a list of "
                             'arguments, ["program", "arg", ...]')
            elif not command.strip():
                self.problem(where + ".command", "empty")
        elif isinstance(command, list):
            if not command:
                self.problem(where + ".command", "empty: give the program and its arguments")
            elif not all(isinstance(arg, str) for arg in command):
                self.problem(where + ".command", "expected a list of strings, got %r" % (command,))
            elif not command[0]:
                self.problem(where + ".command", "the program (first argument) is empty")
        else:
            self.problem(where + ".command", "expected a list of strings, got %s" % _type(command))
        normal["command"] = command
        normal["shell"] = shell
        if "env" in table:
            env = table["env"]
            if not isinstance(env, dict):
                self.problem(where + ".env", "expected a table of strings, got %s" % _type(env))
            else:
                for key, value in env.items():
                    if not isinstance(value, str):
                        self.problem("%s.env.%s" % (where, key), "expected a string, got %s %s"
                                     % (_type(value), _show(value)))
                    if not key or "=" in key:
                        self.problem("%s.env" % where, "invalid variable name %r" % key)
                normal["env"] = dict(env)
        if "cwd" in table:
            cwd = table["cwd"]
            if not isinstance(cwd, str) or not cwd:
                self.problem(where + ".cwd", "expected a directory, got %s" % _show(cwd))
            else:
                normal["cwd"] = os.path.normpath(os.path.join(basepath, os.path.expanduser(cwd)))
        stopsignal = table.get("stopsignal", "TERM")
        try:
            normal["stopsignal"] = signal_name(stopsignal)
        except ValueError as exc:
            self.problem(where + ".stopsignal", str(exc))
        return normal

    def check_class(self, where, target):
        where += "." + CLASS_KEY
        if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
            self.problem(where, 'expected "module:Class", got %s' % _show(target))
            return target, None
        if not self.import_classes:
            return target, None
        module_name, qualname = target.split(":")
        if self.directory not in sys.path:
            sys.path.insert(0, self.directory)
        try:
            found = importlib.import_module(module_name)
        except ImportError as exc:
            self.problem(where, "cannot import %s: %s" % (module_name, exc))
            return target, None
        except Exception as exc:  # the module itself raised (a syntax error...)
            self.problem(where, "importing %s raised %s: %s" % (module_name, type(exc).__name__, exc))
            return target, None
        for part in qualname.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                self.problem(where, "%s has no %s" % (module_name, qualname))
                return target, None
        from .workers import Worker
        if not (isinstance(found, type) and issubclass(found, Worker)):
            self.problem(where, "%s is not a gdaemon.Worker subclass" % target)
            return target, None
        exec_worker = _exec_worker_class()
        if exec_worker is not None and issubclass(found, exec_worker):
            self.problem(where, "%s runs a program: give command = [...] instead" % target)
            return target, None
        return target, found

    def check_install(self, where, table, config, kind):
        options = {"forever": kind == "exec"} if kind == "exec" else {}
        for key in INSTALL_KEYS:
            if key not in table:
                continue
            value = table[key]
            spot = "%s.%s" % (where, key)
            try:
                options[key] = self.check_option(key, value, config)
            except ValueError as exc:
                self.problem(spot, str(exc))
        if "user" in options or "group" in options:
            try:
                resolve_identity(options.get("user"), options.get("group"), error=ValueError)
            except ValueError as exc:
                message = str(exc)
                key = "group" if "group" in message.split()[:2] and "group" in options else "user"
                self.problem("%s.%s" % (where, key if key in options else "group"), message)
        jitter_needs = (("maxloopsjitter", "maxloops"), ("maxagejitter", "maxage"))
        for jitter, base in jitter_needs:
            if jitter in options and base not in table:
                self.problem("%s.%s" % (where, jitter), "needs %s" % base)
        return options

    def check_option(self, key, value, config):
        """The value ``install()`` gets for option ``key``; ValueError says what is wrong."""
        if key in ("looptime", "timeout", "maxage"):
            if not _is_number(value) or value <= 0:
                raise ValueError("expected a positive number of seconds, got %s" % _show(value))
            return value
        if key in ("maxloopsjitter", "maxagejitter"):
            if not _is_number(value) or value < 0 or (key == "maxloopsjitter" and not isinstance(value, int)):
                raise ValueError("expected %s >= 0, got %s"
                                 % ("an integer" if key == "maxloopsjitter" else "a number", _show(value)))
            return value
        if key == "forever":
            if not isinstance(value, bool):
                raise ValueError("expected true or false, got %s" % _show(value))
            return value
        if key in ("instances", "maxloops"):
            low = 0 if key == "instances" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError("expected an integer >= %d, got %s" % (low, _show(value)))
            return value
        if key == "after":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ValueError("expected a list of worker names, got %s" % _show(value))
            return list(names)
        if key == "listen":
            try:
                address = parse_address(value, "listen", ("tcp", "unix"))
            except ConfigError as exc:
                raise ValueError(str(exc)[len("listen: "):]) from None
            if address.scheme == "unix":
                path = os.path.normpath(os.path.join(config["basepath"], os.path.expanduser(address.path)))
                return "unix://" + path
            if not config.get("insecure"):
                try:
                    loopback = address.is_loopback
                except OSError:
                    loopback = True  # does not resolve here; the start will say
                if not loopback:
                    raise ValueError("%s is not a loopback address: the daemon cannot authenticate "
                                     "the program's own protocol (set insecure = true in [daemon])" % value)
            return value
        if key in ("user", "group"):
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                raise ValueError("expected a %s name or a numeric id, got %s" % (key, _show(value)))
            return value
        if key == "maxrss":
            return parse_size(value)
        if key == "rlimits":
            if not isinstance(value, dict):
                raise ValueError('expected a table like {nofile = 4096, core = 0}, got %s' % _show(value))
            try:
                parse_rlimits(value, "rlimits", error=ValueError)
            except ValueError as exc:
                message = str(exc)[len("rlimits: "):]
                bad = [name for name in value if name.lower() not in RLIMIT_NAMES]
                if bad and message.startswith("unknown rlimit"):
                    message = "unknown limit %r%s" % (bad[0], _did_you_mean(bad[0].lower(), list(RLIMIT_NAMES)))
                raise ValueError(message) from None
            return {name.lower(): tuple(limit) if isinstance(limit, list) else limit
                    for name, limit in value.items()}
        raise ValueError("unknown option")  # pragma: no cover - INSTALL_KEYS are all handled

    # -- the workers together ---------------------------------------------------------

    def check_order(self, workers, tables):
        """Worker names in start order; problems for unknown names in ``after`` and cycles.

        Every table's ``after`` is looked at, also that of a table with other
        problems, so that one run of ``--check`` names them all.
        """
        after = {}
        for name, table in tables.items():
            names = table.get("after", []) if isinstance(table, dict) else []
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                names = []  # reported as a bad value already
            deps = []
            for dep in names:
                if dep == name:
                    self.problem("workers.%s.after" % name, "a worker cannot start after itself")
                elif dep not in tables:
                    self.problem("workers.%s.after" % name, "no worker %r in this file%s"
                                 % (dep, _did_you_mean(dep, list(tables))))
                else:
                    deps.append(dep)
            after[name] = deps
        order, placed = [], set()
        remaining = list(tables)
        while remaining:
            layer = [name for name in remaining if all(dep in placed for dep in after[name])]
            if not layer:
                cycle = _cycle(remaining, after)
                self.problem("workers.%s.after" % cycle[0], "workers wait for each other in a cycle: %s"
                             % " -> ".join(cycle))
                order += remaining
                break
            order += layer
            placed.update(layer)
            remaining = [name for name in remaining if name not in placed]
        return [name for name in order if name in workers]

    def check_together(self, workers, config):
        limit = config.get("workerlimit", DEFAULTS["workerlimit"])
        total = sum(spec.instances for spec in workers.values())
        if total > limit:
            self.problem("workers", "%d instances in all, past daemon.workerlimit (%d)" % (total, limit))
        seen: Dict[str, str] = {}
        for name, spec in workers.items():
            listen = spec.options.get("listen")
            if listen is None:
                continue
            if listen in seen:
                self.problem("workers.%s.listen" % name, "%s is the listen of workers.%s too"
                             % (listen, seen[listen]))
            seen.setdefault(listen, name)


def _cycle(names, after):
    """One cycle among ``names`` (each waits for another of them), as a list ending where it began."""
    name = names[0]
    seen = []
    while name not in seen:
        seen.append(name)
        name = next(dep for dep in after[name] if dep in names)
    return seen[seen.index(name):] + [name]


def _exec_worker_class():
    """``gdaemon.ExecWorker`` where this version has it, else ``None``."""
    try:
        from . import ExecWorker
    except ImportError:
        return None
    return ExecWorker
