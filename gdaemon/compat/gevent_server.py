"""gevent's server internals, for bounded accept and TLS handshakes.

What is used, and why (by :class:`gdaemon.rpc.endpoint.BoundedServer`, the
base of the raw socket and HTTP servers):

- ``BaseServer.do_handle(sock, address)``, the accept loop's hook, is
  overridden: every accepted connection goes through the endpoint's
  admission (eviction of strangers, ``socketmaxconnections``) before a
  greenlet is spawned for it.
- ``BaseServer._spawn``: the server's spawner (its bounded greenlet pool),
  through :func:`spawn`, to serve an admitted connection in that pool.
- ``StreamServer.wrap_socket`` and ``ssl_args``: the TLS wrapper gevent set up
  from ``ssl_context``, through :func:`wrap_tls`.  gevent's own
  ``wrap_socket_and_handle`` waits for a handshake forever and prints a
  traceback for each failed one; gdaemon does the handshake itself, bounded
  in time, with the same wrapper.

The check at import: gevent within the supported range, and the names above
present; otherwise a one-line :class:`ImportError`.
"""

from gevent.baseserver import BaseServer
from gevent.server import StreamServer

from . import missing
from ._gevent import VERSION

__all__ = ["spawn", "wrap_tls"]

_absent = [name for cls, name in ((BaseServer, "do_handle"), (BaseServer, "_spawn"),
                                  (BaseServer, "max_accept"), (StreamServer, "ssl_enabled"),
                                  (StreamServer, "wrap_socket_and_handle"))
           if not hasattr(cls, name)]
if _absent:
    raise missing("gevent", VERSION, ["gevent.server.StreamServer." + name for name in _absent])


def spawn(server, function, *args):
    """Run ``function(*args)`` in a greenlet of ``server``'s spawner (its pool); return the greenlet."""
    return server._spawn(function, *args)


def wrap_tls(server, sock):
    """``sock`` wrapped in TLS by ``server``'s context (the handshake happens here)."""
    return server.wrap_socket(sock, **server.ssl_args)
