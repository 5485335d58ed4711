"""Attackers of the connection layer (issue 14), each run as a process of its own.

    python attack.py KIND TARGET SECONDS [OPTIONS]

TARGET is ``unix:PATH`` or ``HOST:PORT``.  The attacker prints ``ready`` once
its connections are open, attacks for SECONDS, then prints one JSON line of
what it saw (``{"sent": ..., "pongs": ..., ...}``) and exits.  The tests
(tests/functional/test_attack_transports.py) and ``scripts/bench.py hostile``
run the same code, so a figure in the README and a test are about one attack.

Kinds:

- ``ws-ping``: a websocket on ``/rpc`` that floods ping frames and drains
  whatever comes back (counting pongs), never authenticating;
- ``ws-calls``: a websocket that pipelines valid calls (``daemon.status``,
  after ``system.auth`` when ``--token`` is given) as fast as the daemon takes them;
- ``strangers``: ``--count`` connections that never say a word (``--slow``:
  an HTTP request head one byte at a time), each reopened the moment the
  daemon closes it;
- ``tls-silent``: ``--count`` TCP connections to a TLS port that never send a
  ClientHello, reopened the moment they are closed.

Only the standard library and :mod:`gdaemon.wire.websocket` (frame encoding)
are used.
"""

import argparse
import base64
import json
import os
import selectors
import socket
import sys
import threading
import time

from gdaemon.wire.websocket import Opcode, encode_frame, parse_frame


def connect(target, timeout=5.0):
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(target[5:])
        return sock
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def websocket(target):
    """An upgraded ``/rpc`` websocket (no ``Origin``: not a browser)."""
    sock = connect(target)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /rpc HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (target, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError("upgrade refused: %r" % head[:80])
    return sock, bytearray(head.split(b"\r\n\r\n", 1)[1])


def masked(opcode, payload):
    return encode_frame(opcode, payload, mask_key=os.urandom(4))


class Drain(threading.Thread):
    """Reads frames off a websocket until it closes; counts them by opcode."""

    def __init__(self, sock, buffered):
        super().__init__(daemon=True)
        self.sock, self.buffer = sock, buffered
        self.counts = {}

    def run(self):
        try:
            while True:
                frame = parse_frame(self.buffer, 1 << 30)
                if frame is None:
                    chunk = self.sock.recv(1 << 16)
                    if not chunk:
                        return
                    self.buffer += chunk
                    continue
                name = Opcode(frame[1]).name.lower()
                self.counts[name] = self.counts.get(name, 0) + 1
        except OSError:
            return


def flood(sock, blob, seconds):
    """Send ``blob`` over and over for ``seconds``; how many times it went out whole."""
    sent, stop = 0, time.monotonic() + seconds
    sock.settimeout(1.0)
    try:
        while time.monotonic() < stop:
            try:
                sock.sendall(blob)
            except socket.timeout:
                continue
            sent += 1
    except OSError:
        pass  # the daemon closed it
    return sent


def ready():
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def attack_ws_ping(args):
    sock, buffered = websocket(args.target)
    drain = Drain(sock, buffered)
    drain.start()
    blob = masked(Opcode.PING, b"x" * 125) * 200
    ready()
    sent = flood(sock, blob, args.seconds)
    time.sleep(0.2)  # late pongs, if any
    return {"sent": sent * 200, "pongs": drain.counts.get("pong", 0), "frames": drain.counts}


def attack_ws_calls(args):
    sock, buffered = websocket(args.target)
    drain = Drain(sock, buffered)
    drain.start()
    if args.token:
        sock.sendall(masked(Opcode.TEXT, json.dumps(
            {"jsonrpc": "2.0", "method": "system.auth", "params": [args.token], "id": 0}).encode()))
    call = masked(Opcode.TEXT, b'{"jsonrpc":"2.0","method":"daemon.status","id":1}')
    ready()
    sent = flood(sock, call * 100, args.seconds)
    return {"sent": sent * 100, "answers": drain.counts.get("text", 0)}


def attack_strangers(args, hello=b""):
    """Keep ``count`` connections open, reopening each the moment it closes."""
    selector = selectors.DefaultSelector()
    opened = refused = 0
    slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " if args.slow else b""

    def open_one():
        nonlocal opened
        try:
            sock = connect(args.target)
        except OSError:
            return False
        sock.setblocking(False)
        if hello:
            sock.send(hello)
        selector.register(sock, selectors.EVENT_READ, [0])
        opened += 1
        return True

    for _ in range(args.count):
        open_one()
    ready()
    stop = time.monotonic() + args.seconds
    next_byte = time.monotonic()
    while time.monotonic() < stop:
        for key, _ in selector.select(0.05):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if data:
                if b"-32004" in data or b" 503 " in data:
                    refused += 1
                continue
            selector.unregister(key.fileobj)
            key.fileobj.close()
            open_one()
        if slow and time.monotonic() >= next_byte:
            next_byte = time.monotonic() + 0.1
            for key in list(selector.get_map().values()):
                sent = key.data
                try:
                    key.fileobj.send(slow[sent[0]:sent[0] + 1] or b"a")
                    sent[0] += 1
                except OSError:
                    pass
        while len(selector.get_map()) < args.count and time.monotonic() < stop:
            if not open_one():
                break
    return {"opened": opened, "refused": refused}


#: Requests that frame their body in two ways at once, or in a way RFC 9112
#: section 6 does not allow; each is followed by a pipelined ``GET /healthz``
#: that must never be answered (a smuggled request, if the framing is lenient).
SMUGGLE_BODY = b'{"jsonrpc":"2.0","method":"system.listMethods","id":1}'
SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _post(headers, body):
    return (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers
            + b"\r\n" + body)


def _chunk(data):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


SMUGGLING = {
    "cl+te": _post(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(_chunk(SMUGGLE_BODY)),
                   _chunk(SMUGGLE_BODY)),
    "two-cl": _post(b"Content-Length: %d\r\nContent-Length: 5\r\n" % len(SMUGGLE_BODY), SMUGGLE_BODY),
    "equal-cl": _post(b"Content-Length: %d\r\nContent-Length: %d\r\n" % ((len(SMUGGLE_BODY),) * 2),
                      SMUGGLE_BODY),
    "cl-plus": _post(b"Content-Length: +%d\r\n" % len(SMUGGLE_BODY), SMUGGLE_BODY),
    "te-list": _post(b"Transfer-Encoding: chunked, x\r\n", _chunk(SMUGGLE_BODY)),
    "te-other": _post(b"Transfer-Encoding: gzip\r\nContent-Length: %d\r\n" % len(SMUGGLE_BODY),
                      SMUGGLE_BODY),
    "huge-chunk": _post(b"Transfer-Encoding: chunked\r\n", b"FFFFFFFFFFFFFFF\r\n" + SMUGGLE_BODY),
    "bad-chunk": _post(b"Transfer-Encoding: chunked\r\n", b"0x10\r\n" + SMUGGLE_BODY + b"\r\n0\r\n\r\n"),
}


def exchange(target, data, timeout=5.0):
    """Send ``data`` on a fresh connection, shut our side, return all that comes back."""
    sock = connect(target, timeout)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        sock.close()


def statuses(reply):
    """The status codes of every HTTP response in ``reply``, in order."""
    return [int(line.split()[1]) for line in reply.split(b"\r\n")
            if line.startswith(b"HTTP/1.") and len(line.split()) > 1]


def attack_smuggle(args):
    """Every variant of :data:`SMUGGLING` (pipelined with a smuggled GET) in turn, for ``seconds``."""
    seen = {name: {} for name in SMUGGLING}
    ready()
    stop = time.monotonic() + args.seconds
    while True:
        for name, data in SMUGGLING.items():
            codes = ",".join(map(str, statuses(exchange(args.target, data + SMUGGLED)))) or "none"
            seen[name][codes] = seen[name].get(codes, 0) + 1
        if time.monotonic() >= stop:
            return seen


ATTACKS = {"ws-ping": attack_ws_ping, "ws-calls": attack_ws_calls,
           "strangers": attack_strangers, "tls-silent": attack_strangers, "smuggle": attack_smuggle}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(ATTACKS))
    parser.add_argument("target")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--token")
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args(argv)
    result = ATTACKS[args.kind](args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
