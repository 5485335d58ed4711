"""gevent-websocket's internals, for the websocket endpoint.

gevent-websocket does the HTTP upgrade handshake (its ``WebSocketHandler``,
which is also gdaemon's pywsgi handler); gdaemon then reads and writes the
frames itself (gevent-websocket's reader has no size limit and unmasks byte
by byte in Python).  What is used, and why:

- ``WebSocketHandler.upgrade_websocket``: overridden to refuse a websocket
  whose ``Origin`` is not allowed before the handshake is answered.
- ``environ["wsgi.websocket"]`` and its ``handler`` attribute: the handler
  (its ``socket`` and ``rfile``) the frames are then read from.
- ``WebSocket.closed``: set by gdaemon once it speaks the frames itself, so
  that gevent-websocket does not write a close frame of its own when the
  request ends.

gevent-websocket 0.10.1 (2017) is the only release of its current API, so
the supported range is that release's series.  The check at import: the
version within the range and the names above present; otherwise a
one-line :class:`ImportError`.
"""

import geventwebsocket
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import WebSocket

from . import missing, require

__all__ = ["WebSocketHandler", "mark_closed", "handler_of"]

#: The oldest gevent-websocket tested, and the first not known to work.
LOWEST, BELOW = "0.10.1", "0.11"

VERSION = require("gevent-websocket", LOWEST, BELOW, "its handler's upgrade hook",
                  installed=".".join(map(str, geventwebsocket.VERSION[:3])))

_absent = [name for owner, name in ((WebSocketHandler, "upgrade_websocket"), (WebSocket, "closed"),
                                               (WebSocket, "handler"))
           if not hasattr(owner, name)]
if _absent:
    raise missing("gevent-websocket", VERSION, ["geventwebsocket." + name for name in _absent])


def handler_of(websocket):
    """The pywsgi handler that upgraded ``websocket`` (``environ["wsgi.websocket"]``)."""
    return websocket.handler


def mark_closed(websocket):
    """Tell gevent-websocket that ``websocket`` is closed: it writes no close frame of its own."""
    websocket.closed = True
