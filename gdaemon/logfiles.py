"""Log files across logrotate: reopen every file handler of the process.

logrotate renames ``daemon.log`` away and signals the daemon (SIGUSR1, or
SIGHUP); every process that writes the file, the daemon and each forked
worker, must then reopen it by name, or it goes on writing to the renamed
file forever.  Workers inherit the daemon's handlers when forked, so one
function serves both.
"""

import logging

__all__ = ["reopen_file_handlers"]


def reopen_file_handlers():
    """Reopen the file of every ``logging.FileHandler`` of every logger; return how many.

    The new file is opened in append mode (a handler opened with ``"w"``
    must not truncate the log it just started again).
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
            stream = open(handler.baseFilename, "a", encoding=handler.encoding,
                          errors=getattr(handler, "errors", None))
            old = handler.setStream(stream)
            if old is not None:
                old.close()
            count += 1
    return count
