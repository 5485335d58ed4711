"""Log files: one line per record, and reopening across logrotate.

**One record, one line** (docs/reference/rpc.rst, What one client can cost).  Much of what the daemon logs came from
a client: a path, a method name, a header, a param.  :class:`LogFormatter`,
the daemon's formatter (its file or stderr, the ring of ``daemon.logtail``
and ``log.record`` events, and every forked worker, which inherits it),
escapes control characters in the formatted record with
:func:`escape_control`: a newline becomes ``\\n``, any other control
character ``\\xNN`` (``\\uNNNN`` for the Unicode line separators and lone
surrogates, which the log file could not even encode).  So a client cannot
forge a line of the log (``GET /static/x%0aFORGED-LINE.css``, issue 14) nor
write a terminal escape into it.  A traceback appended to a record keeps its
lines; in it, a line that starts at the margin and is neither a header of
the traceback nor an exception's ``Name: message`` line (a message that
itself held a newline) is indented, so it can never pass for a record.

**logrotate** renames ``daemon.log`` away and signals the daemon (SIGUSR1, or
SIGHUP); every process that writes the file, the daemon and each forked
worker, must then reopen it by name, or it goes on writing to the renamed
file forever.  Workers inherit the daemon's handlers when forked, so one
function serves both.
"""

import logging
import re

__all__ = ["reopen_file_handlers", "LogFormatter", "escape_control"]

# The patterns are compiled (and cached) by re at first use: most daemons
# never log a control character or a traceback, and compiling both cost
# every start 1.2 ms.
# C0 controls, DEL, C1 controls (NEL among them), the Unicode line and
# paragraph separators, and lone surrogates.
_CONTROL = "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
# What may start a line of a traceback at the margin.
_TRACEBACK_MARGIN = (r"(Traceback \(most recent call last\):|During handling of the above "
                     r"exception, another exception occurred:|The above exception was the "
                     r"direct cause of the following exception:|Stack \(most recent call "
                     r"last\):|[A-Za-z_][\w.]*(: .*)?|\s.*|)$")


def _escape_one(match):
    char = match.group()
    if char == "\n":
        return "\\n"
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def escape_control(text):
    """``text`` on one line: ``\\n`` for a newline, ``\\xNN`` (``\\uNNNN``)
    for any other control character, line separator or lone surrogate."""
    # Printable text (the usual) has none of them: str.isprintable() is
    # False for every character the pattern matches (and for a few more,
    # such as a no-break space, which the pattern then leaves alone).
    if text.isprintable():
        return text
    return re.sub(_CONTROL, _escape_one, text)


def _escape_block(text):
    """A traceback or stack: its lines kept, each escaped, and a line that could
    pass for a record indented (see the module docstring)."""
    lines = []
    for line in text.split("\n"):
        line = escape_control(line)
        if not re.match(_TRACEBACK_MARGIN, line):
            line = "  " + line
        lines.append(line)
    return "\n".join(lines)


class LogFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that writes each record on one line (see
    the module docstring); an exception's traceback follows on lines of its own."""

    def formatMessage(self, record):
        return escape_control(super().formatMessage(record))

    def formatException(self, ei):
        return _escape_block(super().formatException(ei))

    def formatStack(self, stack_info):
        return _escape_block(super().formatStack(stack_info))


def reopen_file_handlers():
    """Reopen the file of every ``logging.FileHandler`` of every logger; return how many.

    The new file is opened in append mode (a handler opened with ``"w"``
    must not truncate the log it just started again).  A file this process
    may not open (a worker running as another user than the daemon that
    made it) keeps its old stream, with one warning: losing the worker over
    a log rotation would be worse.
    """
    seen = set()
    loggers = [logging.getLogger()]
    loggers += [obj for obj in list(logging.Logger.manager.loggerDict.values())
                if isinstance(obj, logging.Logger)]
    count = 0
    for logger in loggers:
        for handler in list(logger.handlers):
            if id(handler) in seen or not isinstance(handler, logging.FileHandler):
                continue
            seen.add(id(handler))
            try:
                stream = open(handler.baseFilename, "a", encoding=handler.encoding,
                              errors=getattr(handler, "errors", None))
            except OSError as exc:
                logging.getLogger("gdaemon.logfiles").warning(
                    "cannot reopen %s (%s): writing on to the file it had open",
                    handler.baseFilename, exc.strerror or exc)
                continue
            old = handler.setStream(stream)
            if old is not None:
                old.close()
            count += 1
    return count
