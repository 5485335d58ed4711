"""The interactive shell of ``gdaemon-ctl``: the same commands, one per line, with readline history.

Reads from the terminal with a prompt, or from a pipe without one; ``quit``,
``exit`` or end of input leaves.  The connection stays open between
commands; a command interrupted by Ctrl-C drops it (its reply may still
come) and the next command connects again.
"""

import os
import shlex
import sys

from .commands import command_help, run_command

__all__ = ["shell", "PROMPT", "HISTORY_FILE"]

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
