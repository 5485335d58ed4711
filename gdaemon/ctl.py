"""``gdaemon-ctl``: the command-line client and interactive shell (SPEC 7).

This module only parses command lines and formats results; every byte on the
wire goes through :class:`gdaemon.client.Client`.  Usage errors are detected
before any connection is attempted (exit status 2), so ``gdaemon-ctl restart``
says what is missing even when no daemon runs.

Exit status: 0 success, 1 the daemon answered an error (``error CODE:
MESSAGE`` on stderr), 2 usage error, 3 the daemon cannot be reached (the
message names the address).  In the shell, the status of the last command.
"""

import collections
import inspect
import json
import os
import re
import shlex
import sys
import time

from docopt import DocoptExit, docopt

from .client import Client
from .errors import ConfigError, ConnectionLost, RpcError

__all__ = ["main", "USAGE"]

DEFAULT_ADDRESS = "unix://daemon.sock"
PROMPT = "gdaemon> "
HISTORY_FILE = "~/.gdaemon_ctl_history"

USAGE = """Control a running gdaemon through its RPC endpoint.

Usage:
  gdaemon-ctl [options] [COMMAND [ARGS...]]
  gdaemon-ctl -h | --help

Options:
  -a ADDRESS, --address ADDRESS  unix://PATH, tcp://HOST:PORT, tls://HOST:PORT,
                                 ws://HOST:PORT/rpc or wss://HOST:PORT/rpc
                                 (default: $GDAEMON_SOCKET, else unix://daemon.sock)
  -t TOKEN, --token TOKEN        authentication token (default: $GDAEMON_TOKEN)
  --json                         print the JSON-RPC result (or error object) as JSON
  --cafile FILE                  CA certificates for tls:// and wss://
  --timeout SECONDS              seconds to wait for the daemon [default: 5]
  -h, --help                     show this help

Commands:
  status                 daemon status and its workers
  workers                the workers: NAME KIND PID STATUS LOOPS RESTARTS RSS CPU
  pause [NAME]           pause a worker (every worker without NAME)
  resume [NAME]          resume a worker (every worker without NAME)
  restart NAME           restart a worker, wait until it runs again
  stop                   stop the daemon gracefully
  reload                 reload the daemon (rolling restart of the workers)
  methods                list the RPC methods
  help METHOD            a method's signature (parameter names, types, defaults)
                         and description
  tail [-n N] [-f]       the last N log lines (default 10); -f then follows the
                         log until Ctrl-C
  call METHOD [ARG...]   call a method; each ARG is JSON when it parses, else a
                         string; key=value ARGs call by name
  watch [PATTERN...]     print pushed events until Ctrl-C (default pattern: *)

Without COMMAND, an interactive shell reads the same commands (quit, exit or
end of input leaves).

Exit status: 0 success, 1 RPC error, 2 usage error, 3 daemon unreachable.
"""

#: ``key=value`` call arguments: a parameter name, then ``=``.
_NAMED_ARG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)

_STATUS_NAMES = {0: "SPINUP", 1: "LOOPING", 2: "PAUSED", 3: "SPINDOWN", 4: "RESTARTING", 5: "STOPPED"}


class UsageError(Exception):
    """A command line that cannot be run; exit status 2."""


class Session:
    """What a command needs: the (lazily connected) client and the output mode.

    :param client: a :class:`~gdaemon.client.Client`.
    :param as_json: print results as JSON instead of human-readable text.
    """

    def __init__(self, client, as_json=False, out=None, err=None):
        self.client = client
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def print(self, text=""):
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, value, human):
        """Print ``value`` as JSON with ``--json``, else through ``human(value)``."""
        if self.as_json:
            self.print(json.dumps(value, ensure_ascii=False))
        else:
            human(value)


# ---------------------------------------------------------------------------
# Formatting helpers

def _table(headers, rows):
    cells = [headers] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def _duration(seconds):
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return "%dd %02dh %02dm" % (days, hours, minutes)
    if hours:
        return "%dh %02dm %02ds" % (hours, minutes, secs)
    return "%dm %02ds" % (minutes, secs)


def _timestamp(value, precise=False):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        return text + (".%03d" % (int(value * 1000) % 1000) if precise else "")
    return "-" if value is None else str(value)


def _human(value):
    """A result for people: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return json.dumps(value)


def _bytes(value):
    """``123456789`` -> ``"117.7M"``; ``None`` -> ``None`` (printed ``-``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    for unit in ("B", "K", "M", "G"):
        if abs(value) < 1024 or unit == "G":
            return ("%d%s" if unit == "B" else "%.1f%s") % (value, unit)
        value /= 1024.0


def _seconds(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return "%.2fs" % value


def _worker_rows(infos):
    rows = []
    for info in infos:
        status = info.get("status_name") or _STATUS_NAMES.get(info.get("status"), info.get("status"))
        rows.append([info.get("name"), info.get("kind"), info.get("pid"), status,
                     info.get("loops"), info.get("restarts"), _bytes(info.get("rss")),
                     _seconds(info.get("cpu"))])
    return rows


_WORKER_HEADERS = ["NAME", "KIND", "PID", "STATUS", "LOOPS", "RESTARTS", "RSS", "CPU"]


def _json_or_string(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------
# Commands.  Each takes the session and its checked arguments, returns a status.

def cmd_status(session):
    with session.client.batch() as batch:
        status = batch.daemon.status()
        infos = batch.worker.info()
    result = status.result()
    if session.as_json:
        session.emit(result, None)
        return 0
    order = ["pid", "description", "version", "uptime", "started_at", "sockethandler", "connections"]
    keys = order + sorted(k for k in result if k not in order and k != "workers")
    width = max(len(k) for k in keys) + 2
    for key in keys:
        if key not in result:
            continue
        value = result[key]
        if key == "uptime":
            value = _duration(value)
        elif key == "started_at":
            value = _timestamp(value)
        elif not isinstance(value, str):
            value = json.dumps(value)
        session.print((key + ":").ljust(width) + value)
    if infos.exception() is None and isinstance(infos.result(), list):
        rows = _worker_rows(infos.result())
    else:
        # Fall back on the status codes daemon.status gives.
        rows = [[name, None, None, _STATUS_NAMES.get(code, code), None, None, None, None]
                for name, code in sorted((result.get("workers") or {}).items())]
    if not rows:
        session.print("workers:".ljust(width) + "none")
        return 0
    session.print()
    for line in _table(_WORKER_HEADERS, rows):
        session.print(line)
    return 0


def cmd_workers(session):
    infos = session.client.call("worker.info")
    if isinstance(infos, dict):
        infos = [infos]

    def human(infos):
        for line in _table(_WORKER_HEADERS, _worker_rows(infos)):
            session.print(line)
    session.emit(infos, human)
    return 0


def _worker_command(verb, done):
    def command(session, name=None):
        if name is None:
            result = session.client.call("worker." + verb)
        else:
            result = session.client.call("worker." + verb, name=name)
        session.emit(result, lambda _: session.print("%s %s" % (done, name or "all workers")))
        return 0
    command.__name__ = "cmd_" + verb
    return command


cmd_pause = _worker_command("pause", "paused")
cmd_resume = _worker_command("resume", "resumed")
cmd_restart = _worker_command("restart", "restarted")


def cmd_stop(session):
    result = session.client.call("daemon.stop")
    session.emit(result, lambda _: session.print("stopping"))
    return 0


def cmd_reload(session):
    result = session.client.call("daemon.reload")
    session.emit(result, lambda _: session.print("reloading"))
    return 0


def cmd_methods(session):
    names = session.client.call("system.listMethods")
    session.emit(names, lambda names: [session.print(name) for name in names])
    return 0


def cmd_help(session, method):
    with session.client.batch() as batch:
        text = batch.system.methodHelp(method)
        signature = batch.system.methodSignature(method)
        info = batch.system.methodInfo(method)
    description = inspect.cleandoc(text.result() or "")
    described = info.result() if info.exception() is None else None
    signatures = signature.result() if signature.exception() is None else None
    if session.as_json:
        session.emit({"description": description, "signature": signatures, "info": described}, None)
        return 0
    if isinstance(described, dict):
        session.print(_signature_line(described))
    elif isinstance(signatures, list):
        # A daemon without system.methodInfo: the types alone.
        for sig in signatures:
            if isinstance(sig, list) and sig:
                session.print("%s(%s) -> %s" % (method, ", ".join(map(str, sig[1:])), sig[0]))
    session.print()
    session.print(description or "(no description)")
    return 0


def _signature_line(info):
    """``examples.echo(message: string) -> string`` from ``system.methodInfo``."""
    params = []
    for param in info.get("params") or []:
        text = "%s: %s" % (param.get("name"), param.get("type"))
        if param.get("nullable") and param.get("type") not in ("nil", "any"):
            text += " | nil"
        if "default" in param:
            text += " = %s" % json.dumps(param["default"], ensure_ascii=False)
        params.append(text)
    return "%s(%s) -> %s" % (info.get("name"), ", ".join(params), info.get("returns"))


def cmd_call(session, method, params):
    if isinstance(params, dict):
        result = session.client.call(method, **params)
    else:
        result = session.client.call(method, *params)
    session.emit(result, lambda value: session.print(_human(value)))
    return 0


def cmd_watch(session, patterns):
    events = session.client.subscribe(patterns or ["*"])
    try:
        for event in events:
            if session.as_json:
                session.print(json.dumps(event, ensure_ascii=False))
            else:
                session.print("%s %s %s" % (_timestamp(event.get("time"), precise=True), event.get("name"),
                                            json.dumps(event.get("data"), ensure_ascii=False, sort_keys=True)))
    except KeyboardInterrupt:
        if session.err.isatty():
            session.err.write("\n")  # leave the terminal's "^C" on its own line
        return 0
    finally:
        # The subscription lives as long as the connection: drop both.
        session.client.close()
    return 0


def cmd_tail(session, lines=10, follow=False):
    client = session.client
    try:
        events = client.subscribe(["log.record"]) if follow else None
        # Subscribed first, so no line falls between the tail and the events;
        # events of lines the tail already printed are skipped below.
        tail = client.call("daemon.logtail", lines=lines)
        if session.as_json:
            session.print(json.dumps(tail, ensure_ascii=False))
        else:
            for line in tail:
                session.print(line)
        if events is None:
            return 0
        printed = collections.Counter(tail)
        for event in events:
            data = event.get("data") or {}
            line = data.get("line")
            if line is None:
                line = "%s %s %s[%s]: %s" % (_timestamp(data.get("time"), precise=True), data.get("level"),
                                             data.get("logger"), data.get("pid"), data.get("message"))
            if printed:
                if printed[line] > 0:
                    printed[line] -= 1
                    continue
                printed.clear()   # past the tail: print everything from now on
            session.print(json.dumps(event, ensure_ascii=False) if session.as_json else line)
    except KeyboardInterrupt:
        if session.err.isatty():
            session.err.write("\n")
        return 0
    finally:
        if follow:
            client.close()
    return 0


# ---------------------------------------------------------------------------
# Parsing a command: (handler, min args, max args or None)

COMMANDS = {
    "status": (cmd_status, 0, 0),
    "workers": (cmd_workers, 0, 0),
    "pause": (cmd_pause, 0, 1),
    "resume": (cmd_resume, 0, 1),
    "restart": (cmd_restart, 1, 1),
    "stop": (cmd_stop, 0, 0),
    "reload": (cmd_reload, 0, 0),
    "methods": (cmd_methods, 0, 0),
    "help": (cmd_help, 1, 1),
    "call": (cmd_call, 1, None),
    "watch": (cmd_watch, 0, None),
    "tail": (cmd_tail, 0, 3),
}

_ARG_NAMES = {"pause": "[NAME]", "resume": "[NAME]", "restart": "NAME", "help": "METHOD",
              "call": "METHOD [ARG...]", "watch": "[PATTERN...]", "tail": "[-n N] [-f]"}


def parse_call_args(args):
    """``call`` arguments -> a list (positional) or a dict (``key=value``).

    :raises UsageError: when positional and named arguments are mixed.
    """
    positional, named = [], {}
    for arg in args:
        match = _NAMED_ARG.match(arg)
        if match:
            named[match.group(1)] = _json_or_string(match.group(2))
        else:
            positional.append(_json_or_string(arg))
    if positional and named:
        raise UsageError("call: arguments are either positional or key=value, not both")
    return named if named else positional


def parse_command(words):
    """Check a command line; return ``(handler, args)`` ready to run.

    :raises UsageError: unknown command or wrong number of arguments.
    """
    name, args = words[0], list(words[1:])
    try:
        handler, least, most = COMMANDS[name]
    except KeyError:
        raise UsageError("unknown command %r (commands: %s)" % (name, ", ".join(COMMANDS))) from None
    synopsis = ("%s %s" % (name, _ARG_NAMES.get(name, ""))).rstrip()
    if len(args) < least:
        raise UsageError("%s: missing %s (usage: %s)" % (name, _ARG_NAMES[name].split()[0], synopsis))
    if most is not None and len(args) > most:
        raise UsageError("%s: too many arguments (usage: %s)" % (name, synopsis))
    if name == "call":
        args = [args[0], parse_call_args(args[1:])]
    elif name == "watch":
        args = [args]
    elif name == "tail":
        args = parse_tail_args(args, synopsis)
    return handler, args


def parse_tail_args(args, synopsis):
    """``tail`` arguments -> ``[lines, follow]``; raises :class:`UsageError`."""
    lines, follow = 10, False
    words = list(args)
    while words:
        word = words.pop(0)
        if word in ("-f", "--follow"):
            follow = True
            continue
        if word in ("-n", "--lines"):
            if not words:
                raise UsageError("tail: %s needs a number (usage: %s)" % (word, synopsis))
            value = words.pop(0)
        elif word.startswith("-n") and len(word) > 2:
            value = word[2:]
        elif word.startswith("--lines="):
            value = word[len("--lines="):]
        else:
            raise UsageError("tail: unexpected argument %r (usage: %s)" % (word, synopsis))
        try:
            lines = int(value)
        except ValueError:
            raise UsageError("tail: -n takes a number of lines, got %r" % value) from None
        if not 0 <= lines <= 10000:
            raise UsageError("tail: -n must be between 0 and 10000, got %d" % lines)
    return [lines, follow]


def run_command(session, words):
    """Parse and run one command; print its output or error; return its status."""
    try:
        handler, args = parse_command(words)
    except UsageError as exc:
        session.err.write("gdaemon-ctl: %s\n" % exc)
        return 2
    return execute(session, handler, args)


def execute(session, handler, args):
    try:
        return handler(session, *args)
    except RpcError as exc:
        if session.as_json:
            session.print(json.dumps(exc.to_dict(), ensure_ascii=False))
        session.err.write("error %d: %s\n" % (exc.code, exc.message))
        return 1
    except ConnectionLost as exc:
        session.err.write("gdaemon-ctl: %s\n" % _unreachable(session.client, exc))
        return 3


def _unreachable(client, exc):
    text = str(exc)
    return text if client.address in text else "%s: %s" % (client.address, text)


# ---------------------------------------------------------------------------
# The interactive shell

def _shell_help(session):
    for line in USAGE.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines():
        session.print(line)
    session.print("  quit, exit             leave the shell")


def _read_lines(stdin, interactive):
    """Yield command lines; Ctrl-C at the prompt gives an empty line."""
    if interactive:
        while True:
            try:
                yield input(PROMPT)
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print()
                yield ""
    else:
        for line in stdin:
            yield line


def _enable_history():
    try:
        import readline
    except ImportError:  # not built with readline (some minimal Pythons)
        return None
    path = os.path.expanduser(HISTORY_FILE)
    try:
        readline.read_history_file(path)
    except OSError:
        pass  # no history yet: the first session creates it
    return lambda: _save_history(readline, path)


def _save_history(readline, path):
    try:
        readline.write_history_file(path)
    except OSError as exc:
        sys.stderr.write("gdaemon-ctl: cannot save history to %s: %s\n" % (path, exc))


def shell(session, stdin=None):
    """Read commands line by line (prompting when ``stdin`` is a terminal).

    :returns: the status of the last command run.
    """
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    save_history = _enable_history() if interactive else None
    status = 0
    try:
        for line in _read_lines(stdin, interactive):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(line)
            except ValueError as exc:
                session.err.write("gdaemon-ctl: %s\n" % exc)
                status = 2
                continue
            if words[0] in ("quit", "exit"):
                break
            if words == ["help"] or words == ["?"]:
                _shell_help(session)
                status = 0
                continue
            try:
                status = run_command(session, words)
            except KeyboardInterrupt:
                # The reply may still come: start over on a new connection.
                session.client.close()
                session.err.write("interrupted\n")
                status = 130
    finally:
        session.client.close()
        if save_history:
            save_history()
    return status


# ---------------------------------------------------------------------------

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
            sys.stderr.write("gdaemon-ctl: %s\n%s" % (exc, _short_usage()))
            return 2
    try:
        client = Client(address, token=token, timeout=timeout, cafile=options["--cafile"])
    except ConfigError as exc:
        sys.stderr.write("gdaemon-ctl: %s\n" % exc)
        return 2
    session = Session(client, as_json=options["--json"])
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


def _short_usage():
    return "Usage:\n  gdaemon-ctl [options] [COMMAND [ARGS...]]\n(gdaemon-ctl --help lists the commands)\n"


if __name__ == "__main__":
    sys.exit(main())
