"""The Python client of a gdaemon's RPC endpoint (docs/reference/rpc.rst; docs/reference/ctl.rst).

::

    from gdaemon.client import Client

    with Client("unix:///run/echo/daemon.sock") as client:
        client.call("examples.echo", "hi")             # positional -> JSON array
        client.examples.echo(message="hi")              # attribute proxy, by name
        with client.batch() as batch:                   # one batch line on the wire
            status = batch.daemon.status()
            names = batch.worker.list()
        status.result(), names.result()
        for event in client.subscribe(["worker.*"]):    # pushed notifications
            print(event["name"], event["data"])

Addresses: ``unix://PATH``, ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (certificate
verified against ``cafile`` or the system store, host name checked),
``ws://HOST:PORT/rpc`` and ``wss://HOST:PORT/rpc`` (the websocket endpoint of
docs/reference/http.rst, spoken by a small RFC 6455 client: no extra dependency).

The package, on top of the wire layer it shares with the daemon
(:mod:`gdaemon.wire`: codec, addresses, unix sockets, websocket frames):

- :mod:`~gdaemon.client.client`: :class:`Client`, the connection and the routing of replies and events;
- :mod:`~gdaemon.client.request`: a request's JSON object, a reply's result, the attribute proxy;
- :mod:`~gdaemon.client.batch`: :class:`Batch` and its :class:`Future` results;
- :mod:`~gdaemon.client.transports`: newline-framed and websocket connections.

Design decisions:

- **Lazy connection.**  Constructing a :class:`Client` does no I/O; the first
  request connects (or call :meth:`Client.connect` to fail early).  When the
  daemon closes the connection, the request in flight raises
  :class:`~gdaemon.errors.ConnectionLost` (it may or may not have run: it is
  never retried) and the next request connects again.  Before sending on an
  idle plain socket the client checks whether the daemon already closed it
  (idle timeout, daemon restart) and then reconnects first, since nothing can
  have been lost.  With a ``token``, ``system.auth`` is sent first on every
  (re)connection.
- **One reader, two kinds of lines.**  Replies (lines with an ``id``) and
  pushed events (``{"method": "event"}`` notifications) share the connection.
  Whoever reads routes each line: replies to the request waiting for them,
  events to a bounded queue that :meth:`Client.subscribe` and
  :meth:`Client.next_event` consume.  So calling methods while subscribed works.
- **Timeouts.**  ``timeout`` bounds the connection and each wait for a reply.
  A reply that does not come in time closes the connection (its state is
  unknown) and raises :class:`~gdaemon.errors.ConnectionLost`.  Waiting for
  events has its own timeout, ``None`` (forever) by default.
- **gevent.**  Only the plain :mod:`socket` and :mod:`ssl` modules are
  used, looked up at call time: under ``gevent.monkey.patch_all()``
  the client is cooperative, without it it simply blocks.  This package never
  patches anything itself.
- **Not thread-safe.**  A client is meant for one thread, or one greenlet, at a
  time (two greenlets reading one socket is an error in gevent).  Give each
  thread or greenlet its own client; connections are cheap.
- **JSON.**  The daemon's own codec (:mod:`gdaemon.wire.codec`): orjson, with
  the standard library for what orjson cannot do, so integers of any size
  round-trip exactly (ids, params and results alike).  A value JSON cannot
  represent among a request's params raises :class:`TypeError`.
"""

from ..wire.codec import dumps_strict as encode
from ..wire.codec import loads as decode
from ..wire.unix import connect_unix
from .batch import Batch, Future
from .client import Client

__all__ = ["Client", "Batch", "Future", "connect_unix", "encode", "decode"]
