#!/usr/bin/env python
"""Talk to a gdaemon daemon with nothing but the standard library.

    python examples/raw_client.py [unix://daemon.sock] [message]

The wire is newline-delimited JSON-RPC 2.0 (one request per line, one
response per line), so a plain socket is all a client needs.
"""

import json
import socket
import sys


def connect(address):
    if address.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address[len("unix://"):])
        return sock
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "unix://daemon.sock"
    message = sys.argv[2] if len(sys.argv) > 2 else "hello"
    with connect(address) as sock:
        reader = sock.makefile("rb")
        # Pipelining: write both requests, then read both answers, in order.
        for i, (method, params) in enumerate([("examples.echo", {"message": message}),
                                              ("daemon.status", [])], 1):
            request = {"jsonrpc": "2.0", "method": method, "params": params, "id": i}
            sock.sendall(json.dumps(request).encode() + b"\n")
        for _ in range(2):
            print(json.loads(reader.readline()))


if __name__ == "__main__":
    main()
