#!/usr/bin/env python3
"""A tiny HTTP server that takes its listening socket as fd 3 (systemd's protocol).

Any program that can do that runs as a prefork pool under gdaemon: the daemon
binds the socket once (``listen = "tcp://..."`` in the daemon file) and every
instance gets it as fd 3 with ``LISTEN_FDS=1`` and ``LISTEN_PID`` set to its
own pid, as systemd passes sockets.  Instances accept on the same socket, so
a crash, a respawn or a rolling reload refuses no connection: pending ones
wait in the kernel's backlog.  See ``stack.toml``.

Run alone it binds a port itself::

    python3 examples/fd3_server.py 8000
    curl http://127.0.0.1:8000/          # -> "hello from pid N"

Only the standard library: it stands for any program (gunicorn, uvicorn
``--fd 3``, a systemd-aware server...).
"""

import http.server
import os
import signal
import socket
import sys

#: The first descriptor systemd's protocol passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


class Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the pid of the process that served it."""

    def do_GET(self):
        body = ("hello from pid %d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # One line per request on stdout: gdaemon logs it as this worker's.
        print("%s %s" % (self.address_string(), format % args), flush=True)


def passed_socket():
    """The socket passed as fd 3, or ``None`` when none was passed to this process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=LISTEN_FDS_START)


def main():
    sock = passed_socket()
    if sock is None:
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
        server = http.server.HTTPServer(("127.0.0.1", port), Hello)
    else:
        # Bound and listening already: the server only accepts on it.
        server = http.server.HTTPServer(sock.getsockname()[:2], Hello, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        # Every process waits on the same socket and only one gets each
        # connection: the others must not block in accept().
        sock.setblocking(False)
    print("serving on %s:%d (pid %d)" % (server.server_address[:2] + (os.getpid(),)), flush=True)
    # SIGTERM (gdaemon's stopsignal) ends the loop after the request being
    # served: a connection this process accepted is answered, never dropped;
    # the ones waiting in the shared socket's backlog go to the other processes.
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    server.timeout = 0.2
    while not stopping:
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main()
