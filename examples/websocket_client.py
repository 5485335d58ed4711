#!/usr/bin/env python
"""Watch a daemon's events over its websocket endpoint.

Start a daemon with ``websockethandler`` set (e.g. ``tcp://127.0.0.1:8080``), then:

    python examples/websocket_client.py ws://127.0.0.1:8080/rpc

It calls ``daemon.status``, subscribes to every ``worker.*`` and ``daemon.*``
event and prints them as they are pushed (Ctrl-C to leave).
"""

import sys

from gdaemon.client import Client


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/rpc"
    with Client(address) as client:
        print("status:", client.call("daemon.status"))
        try:
            for event in client.subscribe(["worker.*", "daemon.*"]):
                print(event["name"], event["data"])
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
