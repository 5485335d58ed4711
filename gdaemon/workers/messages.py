"""The messages between the daemon and a worker: kinds, encoding, decoding.

Every message is a pickled tuple (both ends run the same program, and pickle
is the fastest codec the standard library has); the first field says what it
is:

=================  ==========================================  ===============
kind               fields                                       direction
=================  ==========================================  ===============
``CMD``            ``command, payload``                         daemon -> worker
``CALL``           ``call_id, method, params``                  daemon -> worker
``STATE``          ``status code``                              worker -> daemon
``MSG``            ``command, payload`` (``self.send``)         worker -> daemon
``REPLY``          ``call_id, ok, result or error dict``        worker -> daemon
``ACTIVATE``       ``name``: "become worker NAME"               daemon -> standby
``REOPEN``         (none): reopen the log files                 daemon -> worker
``LOG``            a log record's fields (a dict)               worker -> daemon
``EXEC_FAILED``    why the program could not be started         worker -> daemon
=================  ==========================================  ===============
"""

import enum

try:
    # The C pickler itself: pickle.py around it (2-3 ms of every daemon's
    # start-up) adds nothing used here.
    from _pickle import PicklingError, dumps, loads
except ImportError:  # not CPython
    from pickle import PicklingError, dumps, loads

__all__ = ["MessageKind", "CMD", "CALL", "STATE", "MSG", "REPLY", "ACTIVATE", "REOPEN", "LOG",
           "EXEC_FAILED", "encode", "decode", "dumps", "UnencodableMessage", "PROTOCOL"]


class MessageKind(enum.IntEnum):
    """The first field of every message."""

    CMD = 0
    CALL = 1
    STATE = 2
    MSG = 3
    REPLY = 4
    ACTIVATE = 5
    REOPEN = 6
    LOG = 7
    EXEC_FAILED = 8


CMD, CALL, STATE, MSG, REPLY, ACTIVATE, REOPEN, LOG, EXEC_FAILED = MessageKind

#: The pickle protocol of every message (``pickle.HIGHEST_PROTOCOL`` since Python 3.8).
PROTOCOL = 5


class UnencodableMessage(ValueError):
    """A message cannot be encoded (nested too deeply, or not picklable)."""


def encode(*fields):
    """One message as bytes.

    :raises UnencodableMessage: a field cannot be pickled (a payload nested
        deeper than the interpreter's recursion limit allows, an object
        pickle refuses): a clear error instead of a traceback.
    """
    try:
        return dumps(fields, PROTOCOL)
    except RecursionError:
        raise UnencodableMessage("nested too deeply to be sent to a worker") from None
    except (PicklingError, TypeError, AttributeError) as exc:
        raise UnencodableMessage("cannot be sent to a worker: %s" % (exc,)) from None


#: Bytes -> the message tuple.
decode = loads
