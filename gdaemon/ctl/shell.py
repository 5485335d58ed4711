"""The interactive shell of ``gdaemon-ctl``: the same commands, one per line, with readline history.

Reads from the terminal with a prompt, or from a pipe without one; ``quit``,
``exit`` or end of input leaves.  At the prompt, Tab completes command names,
then worker and pool names (fetched from the daemon once, and again when
nothing matches) and signal names.  The connection stays open between
commands; a command interrupted by Ctrl-C drops it (its reply may still
come) and the next command connects again.
"""

import os
import shlex
import sys

from .commands import COMMANDS, command_help, run_command

__all__ = ["shell", "Completer", "PROMPT", "HISTORY_FILE"]

PROMPT = "gdaemon> "
HISTORY_FILE = "~/.gdaemon_ctl_history"


def _shell_help(session):
    for line in command_help(extra=[("quit, exit", "leave the shell")]):
        session.print(line)


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


#: Commands whose first argument is a worker or pool name.
_NAMED = frozenset(("start", "stop", "restart", "signal", "scale", "tail", "pause", "resume"))
_SIGNALS = ("HUP", "INT", "QUIT", "TERM", "KILL", "USR1", "USR2", "WINCH", "CONT", "STOP")


class Completer:
    """Tab completion: command names, then worker and pool names, then signal names.

    :param fetch_names: returns the worker and pool names (a call to the
        daemon); called on first need and again whenever nothing matches
        (a worker installed or a pool scaled since).
    """

    def __init__(self, fetch_names):
        self._fetch = fetch_names
        self._names = None
        self._matches = []

    def names(self, refresh=False):
        if self._names is None or refresh:
            try:
                self._names = sorted(set(self._fetch()))
            except Exception:  # no daemon (yet): nothing to offer, no traceback at the prompt
                self._names = self._names or []
        return self._names

    def candidates(self, words, text):
        """What may complete ``text``, the word being typed after ``words``."""
        if not words:
            return [name + " " for name in list(COMMANDS) + ["help", "quit", "exit"]
                    if name.startswith(text)]
        if words[0] in _NAMED and len(words) == 1:
            found = [n + " " for n in self.names() if n.startswith(text)]
            if not found:
                found = [n + " " for n in self.names(refresh=True) if n.startswith(text)]
            return found
        if words[0] == "signal" and len(words) == 2:
            return [sig + " " for sig in _SIGNALS if sig.startswith(text.upper())]
        if words[0] == "help" and len(words) == 1:
            return []
        return []

    def complete(self, text, state):
        """The readline completer: the ``state``-th candidate for ``text``."""
        if state == 0:
            import readline
            line = readline.get_line_buffer()[:readline.get_begidx()]
            try:
                words = shlex.split(line)
            except ValueError:
                words = line.split()
            self._matches = self.candidates(words, text)
        return self._matches[state] if state < len(self._matches) else None


def _fetch_names(session):
    """Every worker and pool name of the daemon (one batch: two calls)."""
    with session.client.batch() as batch:
        workers = batch.worker.list()
        pools = batch.worker.pools()
    names = list(workers.result() or [])
    if pools.exception() is None and isinstance(pools.result(), dict):
        names += list(pools.result())
    return names


def _enable_completion(session):
    try:
        import readline
    except ImportError:
        return
    completer = Completer(lambda: _fetch_names(session))
    readline.set_completer_delims(" \t")
    readline.set_completer(completer.complete)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")


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
    if interactive:
        _enable_completion(session)
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
