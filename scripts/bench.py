#!/usr/bin/env python
"""gdaemon benchmarks: figures as ratios against baselines measured in the same run.

    python scripts/bench.py              # everything
    python scripts/bench.py core         # echo round trips, memory, start-up
    python scripts/bench.py workers      # respawn, worker.call, pause, USS, scale, crash-loop
    python scripts/bench.py websocket    # websocket echo vs raw socket, idle subscribers
    python scripts/bench.py --quick ...  # fewer iterations (a smoke run)

Every daemon runs as a real process on a unix socket in a temporary
directory; the client side is the same code for the baseline and for gdaemon,
so ratios compare servers, not clients.  The machine is shared and noisy:
trust ratios more than absolute numbers, and run twice.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))

#: The baseline of the echo benchmark: a bare gevent StreamServer speaking
#: newline-delimited JSON with the stdlib json module.
BARE_SERVER = textwrap.dedent("""
    import json, os, sys
    from gevent.server import StreamServer
    from gevent import socket

    def handle(sock, addr):
        f = sock.makefile("rb")
        for line in f:
            req = json.loads(line)
            resp = {"jsonrpc": "2.0", "result": req["params"]["message"], "id": req["id"]}
            sock.sendall(json.dumps(resp).encode() + b"\\n")

    path = sys.argv[1]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1024)
    StreamServer(listener, handle).serve_forever()
""")


# -- helpers --------------------------------------------------------------------

def wait_for_socket(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("nothing serves %s" % path)


class Proc:
    """A server process started for one measurement, always killed afterwards."""

    def __init__(self, argv, cwd, env=None):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=dict(os.environ, **(env or {})),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class LineClient:
    """A blocking newline-JSON client (the same for every server)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""
        self.n = 0

    def call(self, method, params):
        self.n += 1
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "method": method,
                                      "params": params, "id": self.n}).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        response = json.loads(line)
        if "error" in response:
            raise RuntimeError(response["error"])
        return response["result"]

    def close(self):
        self.sock.close()


def round_trips(path, count, connections):
    """Round trips per second of examples.echo over ``connections`` connections."""
    if connections == 1:
        client = LineClient(path)
        client.call("examples.echo", {"message": "warm-up"})
        start = time.perf_counter()
        for i in range(count):
            client.call("examples.echo", {"message": "hello %d" % i})
        elapsed = time.perf_counter() - start
        client.close()
        return count / elapsed
    # Concurrent connections: one process per connection, so the client side
    # is not serialised by one interpreter; each does count/connections calls.
    per = max(1, count // connections)
    code = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from bench import LineClient
        c = LineClient(sys.argv[1]); c.call("examples.echo", {"message": "w"})
        sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
        t = time.perf_counter()
        for i in range(int(sys.argv[2])):
            c.call("examples.echo", {"message": "hello"})
        sys.stdout.write("%%f\\n" %% (time.perf_counter() - t)); sys.stdout.flush()
    """ % HERE)
    procs = [subprocess.Popen([sys.executable, "-c", code, path, str(per)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(connections)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.stdout.readline()
        p.wait()
    elapsed = time.perf_counter() - start
    return per * connections / elapsed


def start_bare(tmp):
    path = os.path.join(tmp, "bare.sock")
    script = os.path.join(tmp, "bare.py")
    with open(script, "w") as f:
        f.write(BARE_SERVER)
    proc = Proc([sys.executable, script, path], cwd=tmp)
    wait_for_socket(path)
    return proc, path


def start_echo(tmp, extra_env=None):
    path = os.path.join(tmp, "daemon.sock")
    proc = Proc([os.path.join(BIN, "gdaemon-echo"), "-f"], cwd=tmp, env=extra_env)
    wait_for_socket(path)
    return proc, path


def report(rows, title):
    print("\n== %s" % title)
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print("  %-*s  %s" % (width, name, value))


# -- core ----------------------------------------------------------------------

def bench_core(quick):
    count = 2000 if quick else 20000
    rows = []
    tmp = tempfile.mkdtemp(prefix="gdb-")
    try:
        from gdaemon.rpc import codec
        results = {}
        for conns in (1, 16):
            best = {}
            for _ in range(1 if quick else 3):
                for name, starter in (("bare", start_bare), ("gdaemon", start_echo)):
                    proc, path = starter(tmp)
                    try:
                        rate = round_trips(path, count, conns)
                    finally:
                        proc.kill()
                        for leftover in ("daemon.sock", "daemon.pid", "bare.sock"):
                            if os.path.exists(os.path.join(tmp, leftover)):
                                os.unlink(os.path.join(tmp, leftover))
                    best[name] = max(best.get(name, 0), rate)
            results[conns] = best
            rows.append(("echo round trips, %d connection(s)" % conns,
                         "gdaemon %.0f/s, bare gevent server %.0f/s, ratio %.2f (target >= 0.9; codec %s)"
                         % (best["gdaemon"], best["bare"], best["gdaemon"] / best["bare"], codec.BACKEND)))

        # Idle memory: RSS of each server a second after it serves.
        proc, path = start_echo(tmp)
        bare, bare_path = start_bare(tmp)
        try:
            time.sleep(1.0)
            echo_rss = psutil.Process(proc.proc.pid).memory_info().rss / 2**20
            bare_rss = psutil.Process(bare.proc.pid).memory_info().rss / 2**20
        finally:
            proc.kill()
            bare.kill()
        rows.append(("idle RSS of gdaemon-echo", "%.1f MB (bare gevent server %.1f MB; target <= 25 MB)"
                     % (echo_rss, bare_rss)))

        # Start-up: launching `gdaemon-echo -d` to a successful first call.
        times = []
        for _ in range(3 if quick else 7):
            for leftover in ("daemon.sock", "daemon.pid"):
                if os.path.exists(os.path.join(tmp, leftover)):
                    os.unlink(os.path.join(tmp, leftover))
            start = time.perf_counter()
            subprocess.run([os.path.join(BIN, "gdaemon-echo"), "-d"], cwd=tmp, check=True)
            client = LineClient(os.path.join(tmp, "daemon.sock"))
            client.call("examples.echo", {"message": "first"})
            times.append(time.perf_counter() - start)
            client.close()
            subprocess.run([os.path.join(BIN, "gdaemon-echo"), "--stop"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
        rows.append(("gdaemon-echo -d to first call", "median %.0f ms (min %.0f, max %.0f; target < 500 ms)"
                     % (statistics.median(times) * 1e3, min(times) * 1e3, max(times) * 1e3)))
    finally:
        subprocess.run([os.path.join(BIN, "gdaemon-echo"), "--stop"], cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, "core (%d round trips per measurement)" % count)


SECTIONS = {"core": bench_core}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", help="core, workers, websocket (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    names = args.sections or list(SECTIONS)
    for name in names:
        if name not in SECTIONS:
            parser.error("unknown section %r (have: %s)" % (name, ", ".join(SECTIONS)))
    print("gdaemon benchmarks on %d cores, Python %s" % (os.cpu_count(), sys.version.split()[0]))
    for name in names:
        SECTIONS[name](args.quick)


if __name__ == "__main__":
    main()
