"""Process titles: what ``ps`` and ``top`` show for each process of a daemon.

Every process of a daemon says what it is, with the ``setproctitle`` package::

    gdaemon: Echo Daemon [daemon]
    gdaemon: Echo Daemon [fork server]
    gdaemon: Echo Daemon [standby]
    gdaemon: Echo Daemon [worker handyman]

The title replaces the command line (``/proc/PID/cmdline``, ``ps -ef``,
``top -c``).  The short process name (``/proc/PID/comm``, 15 bytes, what
``pgrep``, ``killall`` and ``pidof`` match) is left as it was, for the
daemon and its workers alike: a script run as ``gdaemon-echo`` stays
``gdaemon-echo`` to ``pgrep``.  (The standby and the fork server keep their
own short names, ``gdaemon-standby`` and ``gdaemon-forksrv``.)

Without ``setproctitle`` installed (it is a dependency; a vendored copy of
gdaemon might lack it) titles are simply not set.
"""

try:
    import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - it is a dependency
    _setproctitle = None  # type: ignore[assignment]  # titles are not set

__all__ = ["title", "set_title"]


def title(description, role):
    """``title("Echo Daemon", "worker copy")`` -> ``"gdaemon: Echo Daemon [worker copy]"``."""
    return "gdaemon: %s [%s]" % (description, role)


def set_title(description, role, comm=None):
    """Set this process's title to :func:`title`; keep its short name (``comm``:
    the name to keep, when the caller knows it; else it is read first).  True if set."""
    if _setproctitle is None:
        return False
    if comm is None:
        comm = _comm()
    _setproctitle.setproctitle(title(description, role))
    if comm:
        # setproctitle renames the process too (prctl PR_SET_NAME): put the
        # name pgrep and killall know back.
        _setproctitle.setthreadtitle(comm)
    return True


def _comm():
    try:
        with open("/proc/self/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return None
