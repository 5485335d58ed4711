"""The wire: what crosses a socket between a gdaemon and its clients.

Both sides import this package, the daemon (:mod:`gdaemon.rpc`) and the
client (:mod:`gdaemon.client`), so there is one implementation of each
thing they must agree on:

- :mod:`~gdaemon.wire.codec`: JSON texts to and from bytes, integers of any size exact;
- :mod:`~gdaemon.wire.address`: ``unix://``, ``tcp://``, ``tls://``, ``ws://`` and ``wss://`` addresses;
- :mod:`~gdaemon.wire.unix`: unix sockets by path (long paths too), and whether one is live;
- :mod:`~gdaemon.wire.websocket`: RFC 6455 frames, their checks and the message size limit;
- :mod:`~gdaemon.wire.status`: worker status codes (``WorkerStatus``).

What it refuses to do: hold a connection, run a greenlet, or know about
the JSON-RPC engine, the daemon or its workers.  Every function here is
bytes or a plain socket in, bytes or a plain socket out, so the client can
use it with or without gevent's monkey-patching.
"""
