"""TLS: the ``tls://`` RPC socket and HTTPS/WSS on the websocket endpoint.

Each test makes a throw-away CA and a server certificate for 127.0.0.1
(tests/support/certs.py), starts a daemon with ``certfile``/``keyfile`` and
checks that verified clients get through, that plain-text or unverified
clients do not, and that neither disturbs the daemon.
"""

import json
import socket
import ssl
import sys
import urllib.error
import urllib.request
import xmlrpc.client

import pytest
import websocket

from support import free_port, wait_until
from support.certs import make_certs
from support.workers import write_daemon


def client_context(cafile):
    return ssl.create_default_context(cafile=cafile)


def tls_call(port, cafile, method, params=None):
    """One newline-framed request over a verified TLS connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(cafile).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            request = {"jsonrpc": "2.0", "method": method, "id": 1}
            if params is not None:
                request["params"] = params
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                data += chunk
            return json.loads(data)


def plain_reply(port, data):
    """What a plain-text client sending ``data`` to a TLS port reads first (``b""`` if reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(data)
        raw.settimeout(5)
        try:
            return raw.recv(4096)
        except ConnectionResetError:
            return b""


def start(spawn, workdir, certs, **config):
    cfg = {"certfile": certs.certfile, "keyfile": certs.keyfile}
    cfg.update(config)
    path = write_daemon(workdir, "pass", config=cfg)
    return spawn([sys.executable, path, "-f"], wait=False)


def test_tls_socket(spawn, workdir):
    certs = make_certs(workdir)
    port = free_port()
    start(spawn, workdir, certs, sockethandler="tls://127.0.0.1:%d" % port)
    wait_until(lambda: tls_call(port, certs.cafile, "test.ping"), 15, message="TLS socket up")
    assert tls_call(port, certs.cafile, "test.ping")["result"] == "pong"

    from gdaemon.client import Client
    with Client("tls://127.0.0.1:%d" % port, cafile=certs.cafile) as client:
        assert client.test.ping() == "pong"
        assert client.daemon.status()["sockethandler"] == "tls://127.0.0.1:%d" % port

    # A client that does not trust the CA fails its handshake...
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    # ... plain text gets nowhere...
    assert b"pong" not in plain_reply(port, b'{"jsonrpc":"2.0","method":"test.ping","id":1}\n')
    # ... and the daemon serves on.
    assert tls_call(port, certs.cafile, "test.ping")["result"] == "pong"


def test_https_and_wss_endpoint(spawn, workdir):
    certs = make_certs(workdir)
    port = free_port()
    proc = start(spawn, workdir, certs, websockethandler="tcp://127.0.0.1:%d" % port)
    proc.wait_ready()  # the unix socket stays plain
    context = client_context(certs.cafile)
    base = "https://127.0.0.1:%d" % port

    def post(payload):
        req = urllib.request.Request(base + "/rpc", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())

    wait_until(lambda: post({"jsonrpc": "2.0", "method": "test.ping", "id": 1}), 15, message="HTTPS up")
    assert post({"jsonrpc": "2.0", "method": "test.ping", "id": 1}) == (
        200, {"jsonrpc": "2.0", "result": "pong", "id": 1})
    with urllib.request.urlopen(base + "/", context=context, timeout=10) as response:
        assert b"dashboard.js" in response.read()

    proxy = xmlrpc.client.ServerProxy(base + "/RPC2", context=context)
    assert proxy.test.ping() == "pong"

    # WSS; websocket-client sends Origin https://127.0.0.1:PORT, the endpoint's own.
    ws = websocket.create_connection("wss://127.0.0.1:%d/rpc" % port, timeout=10,
                                     sslopt={"ca_certs": certs.cafile})
    try:
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "test.ping", "id": 1}))
        assert json.loads(ws.recv())["result"] == "pong"
    finally:
        ws.close()

    from gdaemon.client import Client
    with Client("wss://127.0.0.1:%d/rpc" % port, cafile=certs.cafile) as client:
        assert client.test.ping() == "pong"

    # Plain HTTP on the HTTPS port gets no answer, and breaks nothing.
    assert b"dashboard" not in plain_reply(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/", timeout=10)  # system CAs do not know ours
    assert post({"jsonrpc": "2.0", "method": "test.ping", "id": 2})[1]["result"] == "pong"
    assert "Traceback" not in proc.output()


def test_bad_certificate_refuses_to_start(spawn, workdir):
    with open(workdir + "/junk.pem", "w") as f:
        f.write("not a certificate\n")
    path = write_daemon(workdir, "pass", config={
        "websockethandler": "tcp://127.0.0.1:%d" % free_port(),
        "certfile": workdir + "/junk.pem", "keyfile": workdir + "/junk.pem"})
    proc = spawn([sys.executable, path, "-f"], wait=False)
    assert proc.wait(15) == 1
    assert "certfile" in proc.output()
