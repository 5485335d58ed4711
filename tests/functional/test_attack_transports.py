"""Issue 14, the connection layer: attackers who flood, reconnect or send exact bytes.

What they may cost is in docs/reference/rpc.rst, What one client can cost.

Each attack runs in a process of its own (tests/support/attack.py, the code
``scripts/bench.py hostile`` runs too) against a real daemon; what it costs
is measured from a second client on another connection, usually
``daemon.status`` on the unix socket.  The deadlines here are generous (2 or
3 seconds where the target is 10 ms and the attack, unbounded, held the
daemon for its whole length or 12 s): they hold on a loaded machine.  The
figures are in ``scripts/bench.py hostile``.
"""

import http.client
import json
import os
import ssl
import subprocess
import sys
import time

import pytest
import websocket

from support import RawConnection, free_port, wait_until
from support.certs import make_certs
from support.scripts import echo_daemon, write_script

ATTACK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support", "attack.py")
TOKEN = "s3cret-token"


@pytest.fixture
def attack(request):
    """``attack(kind, target, seconds, *args)`` starts an attacker process and waits until it is
    ready; ``.result()`` is what it saw.  Every attacker is killed at teardown."""
    started = []

    def _attack(kind, target, seconds, *args):
        proc = subprocess.Popen([sys.executable, ATTACK, kind, target, str(seconds)] + list(args),
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready", "attacker %s did not start" % kind

        def result(timeout=30):
            line = proc.stdout.readline()
            proc.wait(timeout)
            return json.loads(line)
        proc.result = result
        return proc

    yield _attack
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def start(workdir, spawn, **config):
    """An echo daemon on ``unix://workdir/daemon.sock`` with ``config``; ready (authenticated) when returned."""
    cfg = {"description": "Attacked Daemon"}
    cfg.update(config)
    path = write_script(workdir, echo_daemon(cfg), name="attacked.py")
    proc = spawn([sys.executable, path, "-f"], wait="token" not in cfg)
    if "token" in cfg:
        wait_until(lambda: admin(proc), 15, message="daemon to serve")
    return proc


def admin(proc, timeout=10.0):
    """A connection on the unix socket, authenticated if the daemon has a token; or None."""
    conn = RawConnection(proc.address, timeout=timeout)
    try:
        if conn.call("system.auth", [TOKEN]).get("result") is not True:
            conn.close()
            return None
    except (OSError, AttributeError):
        conn.close()
        raise
    return conn


def slowest_status(conn, seconds):
    """The slowest of the ``daemon.status`` calls made on ``conn`` for ``seconds`` (in seconds)."""
    worst = 0.0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.monotonic()
        assert "result" in conn.call("daemon.status"), "daemon.status failed"
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.005)
    return worst


# == time slices on every transport ========================================================

@pytest.mark.timeout(60)
def test_an_unauthenticated_websocket_flooding_pings_gets_no_pong_and_freezes_nothing(workdir, spawn, attack):
    port = free_port()
    proc = start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port, token=TOKEN, socketauthtimeout=5)
    conn = admin(proc)
    try:
        flood = attack("ws-ping", "127.0.0.1:%d" % port, 4.5)
        # Before issue 14 the flood held the hub until it stopped (or socketauthtimeout):
        # seconds on end.  A call delayed by a loaded machine takes a fraction of that.
        assert slowest_status(conn, 4.0) < 2.0
        seen = flood.result()
    finally:
        conn.close()
    assert seen["sent"] > 1000, seen
    assert seen["pongs"] == 0, seen


@pytest.mark.timeout(60)
def test_a_websocket_flooding_valid_calls_freezes_nothing(workdir, spawn, attack):
    port = free_port()
    proc = start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port)
    with proc.connect() as conn:
        flood = attack("ws-calls", "127.0.0.1:%d" % port, 4.5)
        assert slowest_status(conn, 4.0) < 2.0   # (as above)
        seen = flood.result()
    assert seen["answers"] > 100, seen


# == no lock-out by returning strangers ======================================================

@pytest.mark.timeout(60)
def test_reconnecting_strangers_never_lock_the_admin_out_of_the_unix_socket(workdir, spawn, attack):
    proc = start(workdir, spawn, token=TOKEN, socketmaxconnections=8)
    strangers = attack("strangers", "unix:" + proc.address[len("unix://"):], 4.0, "--count", "24")
    tries = []
    stop = time.monotonic() + 3.0
    while time.monotonic() < stop:
        try:
            conn = admin(proc, timeout=2.0)
        except OSError:
            conn = None
        tries.append(conn is not None and "result" in conn.call("daemon.status"))
        if conn is not None:
            conn.close()
    seen = strangers.result()
    assert seen["opened"] > 24, seen  # they were closed, and came back
    # Before issue 14: 0 of them.  (A client the machine pauses between its
    # connect() and its first send is silent meanwhile: allow a rare miss.)
    assert sum(tries) >= 0.95 * len(tries), "the admin got in %d times of %d" % (sum(tries), len(tries))


def healthz(port, context=None, timeout=2.0):
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_reconnecting_slow_http_clients_never_keep_healthz_at_503(workdir, spawn, attack):
    port = free_port()
    start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port, socketmaxconnections=8)
    slow = attack("strangers", "127.0.0.1:%d" % port, 4.0, "--count", "24", "--slow")
    codes = []
    stop = time.monotonic() + 3.0
    while time.monotonic() < stop:
        try:
            codes.append(healthz(port))
        except OSError:
            codes.append(None)
        time.sleep(0.01)
    seen = slow.result()
    assert seen["opened"] > 24, seen
    # Before issue 14: 503, every one (a rare miss: see the test above).
    assert codes.count(200) >= 0.95 * len(codes), codes


@pytest.mark.timeout(60)
def test_silent_tls_connections_do_not_delay_a_real_handshake(workdir, spawn, attack):
    certs = make_certs(workdir)
    port = free_port()
    start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port, socketmaxconnections=16,
          certfile=certs.certfile, keyfile=certs.keyfile)
    context = ssl.create_default_context(cafile=certs.cafile)
    assert healthz(port, context) == 200
    silent = attack("tls-silent", "127.0.0.1:%d" % port, 6.0, "--count", "200")
    try:
        for _ in range(5):
            started = time.monotonic()
            # Before issue 14 it waited behind every silent one in the backlog
            # (200 / (16 + 16) x sockettimeout: some 12 s).
            assert healthz(port, context, timeout=10.0) == 200
            assert time.monotonic() - started < 3.0
    finally:
        silent.kill()


# == subscribers are not idle ================================================================

@pytest.mark.timeout(60)
def test_subscribers_outlive_socketidle_on_raw_sockets_and_websockets(workdir, spawn):
    port = free_port()
    proc = start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port, socketidle=1)
    raw = proc.connect()
    ws = websocket.create_connection("ws://127.0.0.1:%d/rpc" % port, timeout=10)
    idle = None
    try:
        assert raw.result("events.subscribe", [["rpc.connect"]]) is True
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "events.subscribe", "params": [["rpc.connect"]], "id": 1}))
        assert json.loads(ws.recv())["result"] is True
        # A connection opened after they last spoke is closed as idle...
        idle = proc.connect()
        assert idle.read_line() is None
        raw.read()  # (its rpc.connect event)
        ws.recv()
        # ...the subscribers, idle longer, still get their events.
        proc.connect().close()
        event = raw.read()
        assert event["method"] == "event" and event["params"]["name"] == "rpc.connect", event
        event = json.loads(ws.recv())
        assert event["method"] == "event" and event["params"]["name"] == "rpc.connect", event
    finally:
        raw.close()
        ws.close()
        if idle is not None:
            idle.close()


# == strict HTTP framing =====================================================================

@pytest.mark.timeout(60)
def test_http_requests_framed_two_ways_get_400_and_nothing_after_them_is_served(workdir, spawn, attack):
    port = free_port()
    proc = start(workdir, spawn, websockethandler="tcp://127.0.0.1:%d" % port)
    seen = attack("smuggle", "127.0.0.1:%d" % port, 0).result()
    # Each variant once, with a GET /healthz pipelined after it: one 400, nothing else.
    assert seen == {name: {"400": 1} for name in seen}, seen
    assert len(seen) >= 8
    assert healthz(port) == 200
    assert "Traceback" not in proc.output()
