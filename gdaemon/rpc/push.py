"""Pushing a subscriber's events to its connection, for every transport.

Events reach a :class:`~gdaemon.rpc.protocol.Session` through its bounded
queue without ever blocking the daemon; an :class:`EventPusher` is the one
greenlet per subscribing connection that waits for them and writes them out.
If the client reads slowly, only this greenlet waits (and the queue drops the
oldest events); the request loop and the rest of the daemon go on.
"""

import gevent
from gevent.event import Event

__all__ = ["EventPusher"]


class EventPusher:
    """Writes a session's queued events from a greenlet of its own.

    :param session: the subscriber's session.
    :param flush: writes ``session.pending_notifications()`` to the
        connection (under the connection's write lock).
    :param on_error: called when writing fails with ``OSError`` (the
        client is gone, or stopped reading); the pusher then ends.
    """

    def __init__(self, session, flush, on_error):
        self.session = session
        self._flush = flush
        self._on_error = on_error
        self._ready = Event()
        self._greenlet = None

    @property
    def running(self):
        return self._greenlet is not None

    def start(self):
        """Start pushing (idempotent); called after the first ``events.subscribe``."""
        if self._greenlet is None:
            self.session.wakeup = self._ready.set
            self._greenlet = gevent.spawn(self._run)
            if len(self.session.events):
                self._ready.set()

    def _run(self):
        try:
            while True:
                self._ready.wait()
                self._ready.clear()
                self._flush()
        except OSError:
            self._on_error()

    def stop(self):
        """Stop pushing (idempotent); does not wait."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
