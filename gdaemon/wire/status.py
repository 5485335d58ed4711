"""Worker status codes: what ``worker.status`` and ``daemon.status`` answer.

The daemon sets them and clients name them (``gdaemon-ctl`` prints
``LOOPING``, not ``1``), so they live on the wire layer, which a client
imports without the daemon or gevent.  The first four are comodojo's.
"""

import enum

__all__ = ["WorkerStatus"]


class WorkerStatus(enum.IntEnum):
    """Status codes of a worker; ``worker.info`` ``status_name`` is the member's name."""

    SPINUP = 0
    LOOPING = 1
    PAUSED = 2
    SPINDOWN = 3
    #: dead, respawn pending or backing off.
    RESTARTING = 4
    #: stopped for good: a worker that is not respawned, or stopped by ``worker.stop``.
    STOPPED = 5
