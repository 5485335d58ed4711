"""Signals as people name them: ``"HUP"``, ``"SIGHUP"``, ``"hup"`` or ``1``.

Used by ``worker.signal``, :class:`~gdaemon.workers.exec.ExecWorker`'s
``stopsignal`` and ``gdaemon-ctl signal`` (which checks a name before it
connects, so this module imports nothing heavy).
"""

import signal

__all__ = ["signal_number"]


def signal_number(value):
    """A signal given as ``"HUP"``, ``"SIGHUP"``, ``"hup"``, ``"1"`` or ``1``: its number.

    :raises ValueError: not a signal of this system (the message names it).
    """
    if isinstance(value, bool):
        raise ValueError("unknown signal %r" % (value,))
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int):
        if value in signal.valid_signals():
            return int(value)
        raise ValueError("unknown signal %d" % value)
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        number = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(number, signal.Signals):
            return int(number)
    raise ValueError("unknown signal %r (expected a name like \"HUP\" or a number)" % (value,))
