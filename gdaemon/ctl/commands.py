"""The commands of ``gdaemon-ctl``: one table, one handler each, and what they print.

:data:`COMMANDS` is the only list of commands: ``--help``, the shell's
``help`` and the argument checks are all made from it.  A handler takes the
:class:`CommandContext` (as ``session``) and its checked arguments and returns an exit status; an
RPC error or an unreachable daemon is turned into 1 or 3 by :func:`execute`.
"""

import collections
import inspect
import json
import re
import sys
import time

from ..errors import ConnectionLost, RpcError
from . import format as fmt

__all__ = ["Command", "COMMANDS", "CommandContext", "UsageError", "parse_command", "run_command", "execute",
           "command_help"]


class UsageError(Exception):
    """A command line that cannot be run; exit status 2."""


class CommandContext:
    """What a command of ``gdaemon-ctl`` needs: the (lazily connected) client and
    the output mode.  (Not the daemon's :class:`gdaemon.rpc.protocol.Session`, the
    state of one RPC connection.)

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

    def print_json(self, value):
        self.print(json.dumps(value, ensure_ascii=False))


# ---------------------------------------------------------------------------
# Handlers

def cmd_status(session):
    with session.client.batch() as batch:
        status = batch.daemon.status()
        infos = batch.worker.info()
    result = status.result()
    if session.as_json:
        session.print_json(result)
        return 0
    order = ["pid", "description", "version", "uptime", "started_at", "sockethandler", "connections"]
    keys = order + sorted(k for k in result if k not in order and k != "workers")
    width = max(len(k) for k in keys) + 2
    for key in keys:
        value = result.get(key)
        if value is None:
            continue  # not there, or nothing to say (replaced_pid before any upgrade); --json has it
        if key == "uptime":
            value = fmt.duration(value)
        elif key == "started_at":
            value = fmt.timestamp(value)
        elif not isinstance(value, str):
            value = json.dumps(value)
        session.print((key + ":").ljust(width) + value)
    if infos.exception() is None and isinstance(infos.result(), list):
        rows = fmt.worker_rows(infos.result())
    else:
        # Fall back on the status codes daemon.status gives.
        rows = [[name, None, None, fmt.status_name(code), None, None, None, None]
                for name, code in sorted((result.get("workers") or {}).items())]
    if not rows:
        session.print("workers:".ljust(width) + "none")
        return 0
    session.print()
    for line in fmt.table(fmt.WORKER_HEADERS, rows):
        session.print(line)
    return 0


def cmd_workers(session):
    infos = session.client.call("worker.info")
    if isinstance(infos, dict):
        infos = [infos]

    def human(infos):
        for line in fmt.table(fmt.WORKER_HEADERS, fmt.worker_rows(infos)):
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


def _daemon_command(method, done):
    def command(session):
        result = session.client.call(method)
        session.emit(result, lambda _: session.print(done))
        return 0
    command.__name__ = "cmd_" + method.split(".")[-1]
    return command


def cmd_stop(session, name=None):
    """``stop``: the daemon; ``stop NAME``: that worker or pool, which stays stopped."""
    if name is None:
        return _daemon_command("daemon.stop", "stopping")(session)
    result = session.client.call("worker.stop", name)
    session.emit(result, lambda _: session.print("stopped %s" % name))
    return 0


def cmd_signal(session, name, signal):
    result = session.client.call("worker.signal", name, signal)
    session.emit(result, lambda _: session.print("signalled %s with %s" % (name, signal)))
    return 0


def parse_signal_args(args):
    """``signal NAME SIG`` -> ``[NAME, SIG]`` (a number stays a number); raises :class:`UsageError`."""
    from ..signalnames import signal_number
    try:
        signal_number(args[1])
    except ValueError as exc:
        raise UsageError("signal: %s" % exc) from None
    sig = args[1].strip()
    return [args[0], int(sig) if sig.isdigit() else sig]


def cmd_scale(session, name, instances):
    names = session.client.call("worker.scale", name, instances)
    session.emit(names, lambda names: session.print("%s: %d instance%s%s" % (
        name, len(names), "" if len(names) == 1 else "s", (" (%s)" % " ".join(names)) if names else "")))
    return 0


def parse_scale_args(args):
    """``scale NAME N`` -> ``[NAME, N]``; raises :class:`UsageError`."""
    try:
        instances = int(args[1])
    except ValueError:
        raise UsageError("scale: N must be a number of instances, got %r" % args[1]) from None
    if instances < 0:
        raise UsageError("scale: N must be 0 or more, got %d" % instances)
    return [args[0], instances]


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
        session.print_json({"description": description, "signature": signatures, "info": described})
        return 0
    if isinstance(described, dict):
        session.print(fmt.signature_line(described))
    elif isinstance(signatures, list):
        # A daemon without system.methodInfo: the types alone.
        for sig in signatures:
            if isinstance(sig, list) and sig:
                session.print("%s(%s) -> %s" % (method, ", ".join(map(str, sig[1:])), sig[0]))
    session.print()
    session.print(description or "(no description)")
    return 0


def cmd_call(session, method, params):
    if isinstance(params, dict):
        result = session.client.call(method, **params)
    else:
        result = session.client.call(method, *params)
    session.emit(result, lambda value: session.print(fmt.human(value)))
    return 0


def cmd_watch(session, patterns):
    events = session.client.subscribe(patterns or ["*"])
    try:
        for event in events:
            if session.as_json:
                session.print_json(event)
            else:
                session.print("%s %s %s" % (fmt.timestamp(event.get("time"), precise=True), event.get("name"),
                                            json.dumps(event.get("data"), ensure_ascii=False, sort_keys=True)))
    except KeyboardInterrupt:
        _end_interrupted_line(session)
    finally:
        # The subscription lives as long as the connection: drop both.
        session.client.close()
    return 0


def cmd_tail(session, lines=10, follow=False, name=None):
    client = session.client
    try:
        mine = _worker_logger_test(client, name) if name is not None and follow else None
        events = client.subscribe(["log.record"]) if follow else None
        # Subscribed first, so no line falls between the tail and the events;
        # events of lines the tail already printed are skipped below.
        if name is None:
            tail = client.call("daemon.logtail", lines=lines)
        else:
            tail = client.call("daemon.logtail", lines=lines, worker=name)
        if session.as_json:
            session.print_json(tail)
        else:
            for line in tail:
                session.print(line)
        if events is None:
            return 0
        printed = collections.Counter(tail)
        for event in events:
            data = event.get("data") or {}
            if mine is not None and not mine(data.get("logger")):
                continue
            line = data.get("line")
            if line is None:
                line = "%s %s %s[%s]: %s" % (fmt.timestamp(data.get("time"), precise=True), data.get("level"),
                                             data.get("logger"), data.get("pid"), data.get("message"))
            if printed:
                if printed[line] > 0:
                    printed[line] -= 1
                    continue
                printed.clear()   # past the tail: print everything from now on
            session.print(json.dumps(event, ensure_ascii=False) if session.as_json else line)
    except KeyboardInterrupt:
        _end_interrupted_line(session)
    finally:
        if follow:
            client.close()
    return 0


def _worker_logger_test(client, name):
    """A test of a record's logger: is it worker (or pool) ``name``'s?

    A worker logs as ``gdaemon.<slug>.worker.<name>``, its program's output
    as ``gdaemon.<slug>.<name>``; an instance of pool ``name`` as
    ``<name>.<index>``.  Asking ``daemon.logtail`` for no lines checks that
    the worker exists first (an unknown one is the RPC error it should be).
    """
    client.call("daemon.logtail", lines=0, worker=name)
    base = "gdaemon." + re.sub(r"[^a-z0-9]+", "-", str(client.call("daemon.status").get(
        "description", "")).lower())
    prefixes = (base + "." + name, base + ".worker." + name)

    def mine(logger):
        if not isinstance(logger, str):
            return False
        for prefix in prefixes:
            if logger == prefix or (logger.startswith(prefix + ".")
                                    and logger[len(prefix) + 1:].isdigit()):
                return True
        return False
    return mine


def _end_interrupted_line(session):
    if session.err.isatty():
        session.err.write("\n")  # leave the terminal's "^C" on its own line


# ---------------------------------------------------------------------------
# The table.  ``args`` is the synopsis; ``least``/``most`` bound the number
# of words after the name (``None``: no limit); ``parse`` turns those words
# into the handler's arguments.

#: The value of ``key=value`` call arguments: a parameter name, then ``=``.
_NAMED_ARG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def _json_or_string(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_call_args(args):
    """``call METHOD ARG...`` -> ``[METHOD, list (positional) or dict (key=value)]``.

    :raises UsageError: when positional and named arguments are mixed.
    """
    positional, named = [], {}
    for arg in args[1:]:
        match = _NAMED_ARG.match(arg)
        if match:
            named[match.group(1)] = _json_or_string(match.group(2))
        else:
            positional.append(_json_or_string(arg))
    if positional and named:
        raise UsageError("call: arguments are either positional or key=value, not both")
    return [args[0], named if named else positional]


def parse_tail_args(args):
    """``tail`` arguments -> ``[lines, follow, name]``; raises :class:`UsageError`."""
    lines, follow, name = 10, False, None
    words = list(args)
    synopsis = COMMANDS["tail"].synopsis
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
        elif name is None and not word.startswith("-"):
            name = word
            continue
        else:
            raise UsageError("tail: unexpected argument %r (usage: %s)" % (word, synopsis))
        try:
            lines = int(value)
        except ValueError:
            raise UsageError("tail: -n takes a number of lines, got %r" % value) from None
        if not 0 <= lines <= 10000:
            raise UsageError("tail: -n must be between 0 and 10000, got %d" % lines)
    return [lines, follow, name]


class Command(collections.namedtuple("Command", "name handler least most args help parse")):
    """One ``gdaemon-ctl`` command: its handler, arguments and help lines."""

    @property
    def synopsis(self):
        return ("%s %s" % (self.name, self.args)).rstrip()


def _table(*rows):
    return {row[0]: Command(*row) for row in rows}


COMMANDS = _table(
    ("status", cmd_status, 0, 0, "", ["daemon status and its workers"], None),
    ("workers", cmd_workers, 0, 0, "", ["the workers: NAME KIND PID STATUS LOOPS RESTARTS RSS CPU"], None),
    ("pause", _worker_command("pause", "paused"), 0, 1, "[NAME]",
     ["pause a worker (every worker without NAME)"], None),
    ("resume", _worker_command("resume", "resumed"), 0, 1, "[NAME]",
     ["resume a worker (every worker without NAME)"], None),
    ("start", _worker_command("start", "started"), 1, 1, "NAME",
     ["start a stopped worker or pool, wait until it runs"], None),
    ("restart", _worker_command("restart", "restarted"), 1, 1, "NAME",
     ["restart a worker, wait until it runs again"], None),
    ("signal", cmd_signal, 2, 2, "NAME SIG",
     ["send signal SIG (HUP, TERM, 10...) to a worker or pool"], parse_signal_args),
    ("scale", cmd_scale, 2, 2, "NAME N",
     ["give pool NAME N instances, wait until it has them"], parse_scale_args),
    ("stop", cmd_stop, 0, 1, "[NAME]",
     ["stop worker or pool NAME (it stays stopped until start);", "without NAME, stop the daemon gracefully"], None),
    ("shutdown", _daemon_command("daemon.stop", "stopping"), 0, 0, "", ["stop the daemon gracefully"], None),
    ("reload", _daemon_command("daemon.reload", "reloading"), 0, 0, "",
     ["reload the daemon (rolling restart of the workers)"], None),
    ("methods", cmd_methods, 0, 0, "", ["list the RPC methods"], None),
    ("help", cmd_help, 1, 1, "METHOD",
     ["a method's signature (parameter names, types, defaults)", "and description"], None),
    ("tail", cmd_tail, 0, 4, "[NAME] [-n N] [-f]",
     ["the last N log lines (default 10), of worker or pool NAME", "only when given; -f then follows the log until Ctrl-C"],
     parse_tail_args),
    ("call", cmd_call, 1, None, "METHOD [ARG...]",
     ["call a method; each ARG is JSON when it parses, else a",
      "string; key=value ARGs call by name"], parse_call_args),
    ("watch", cmd_watch, 0, None, "[PATTERN...]",
     ["print pushed events until Ctrl-C (default pattern: *)"], lambda args: [args]),
)


#: Seconds ``upgrade`` waits for the daemon's answer at least (its
#: ``upgradetimeout`` is 30 s by default, then the old one hands over).
UPGRADE_WAIT = 60.0


def cmd_upgrade(session):
    """``upgrade``: have the daemon replace itself by a new one; print both pids."""
    client = session.client
    client.close()  # the wait is longer than the usual timeout
    client.timeout = max(client.timeout, UPGRADE_WAIT)
    before = client.call("daemon.status")["pid"]
    result = client.call("daemon.upgrade")
    client.close()
    after = None
    deadline = time.monotonic() + client.timeout
    while time.monotonic() < deadline:
        try:
            after = client.call("daemon.status")["pid"]
        except ConnectionLost:
            after = None
        finally:
            client.close()
        if after not in (None, before):
            break
        time.sleep(0.02)
    session.emit(result, lambda _: session.print("upgraded: pid %s replaced pid %s" % (after, before)))
    return 0


COMMANDS["upgrade"] = Command("upgrade", cmd_upgrade, 0, 0, "",
                              ["replace the daemon by a new one without downtime"], None)


def command_help(extra=()):
    """The help lines of every command (then of ``extra``: ``(synopsis, text)`` pairs), as ``--help`` shows them."""
    lines = []
    entries = [(c.synopsis, c.help) for c in COMMANDS.values()] + [(s, [t]) for s, t in extra]
    for synopsis, text in entries:
        lines.append("  %s %s" % (synopsis.ljust(24), text[0]))
        lines.extend(" " * 27 + more for more in text[1:])
    return lines


def parse_command(words):
    """Check a command line; return ``(handler, args)`` ready to run.

    :raises UsageError: unknown command or wrong number of arguments.
    """
    name, args = words[0], list(words[1:])
    try:
        command = COMMANDS[name]
    except KeyError:
        raise UsageError("unknown command %r (commands: %s)" % (name, ", ".join(COMMANDS))) from None
    if len(args) < command.least:
        raise UsageError("%s: missing %s (usage: %s)" % (name, command.args.split()[0], command.synopsis))
    if command.most is not None and len(args) > command.most:
        raise UsageError("%s: too many arguments (usage: %s)" % (name, command.synopsis))
    return command.handler, (command.parse(args) if command.parse else args)


def token_hint(exc, token):
    """The message of ``exc``; for ``-32001``, what to do instead of the protocol's words."""
    if exc.code != -32001:
        return exc.message
    if token is None:
        return "the daemon requires a token: give it with -t TOKEN or GDAEMON_TOKEN"
    return "the daemon refused the token (%s): give the right one with -t TOKEN or GDAEMON_TOKEN" % exc.message


def run_command(session, words):
    """Parse and run one command; print its output or error; return its status."""
    try:
        handler, args = parse_command(words)
    except UsageError as exc:
        session.err.write("gdaemon-ctl: %s\n" % exc)
        return 2
    return execute(session, handler, args)


def execute(session, handler, args):
    """Run ``handler``: 1 (``error CODE: MESSAGE``) on an RPC error, 3 when the daemon cannot be reached."""
    try:
        return handler(session, *args)
    except RpcError as exc:
        if session.as_json:
            session.print_json(exc.to_dict())
        session.err.write("error %d: %s\n" % (exc.code, token_hint(exc, session.client.token)))
        return 1
    except ConnectionLost as exc:
        text = str(exc)
        address = session.client.address
        session.err.write("gdaemon-ctl: %s\n" % (text if address in text else "%s: %s" % (address, text)))
        return 3
