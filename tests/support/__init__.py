"""Helpers for tests that run real daemons as real processes.

- :func:`wait_until` polls a condition with a deadline (never a blind sleep);
- :func:`gone` / :func:`wait_gone` tell (or wait) when a process has exited;
- :class:`DaemonProcess` starts a daemon command in a directory, in its own
  process group, and guarantees it (and every child) is gone on :meth:`stop`;
- :func:`rpc` / :class:`RawConnection` speak the newline-framed JSON-RPC of
  docs/reference/rpc.rst (Framing) over a real socket, independently of ``gdaemon.client`` so the
  wire format is tested from outside.

Daemon scripts are written with :mod:`support.scripts`; worker daemons with
:mod:`support.workers`.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

BIN = os.path.dirname(sys.executable)


def command(name):
    """Full path of an installed console script (``gdaemon-echo``...)."""
    return os.path.join(BIN, name)


def wait_until(predicate, timeout=10.0, interval=0.01, message="condition"):
    """Poll ``predicate()`` until it returns a truthy value; return that value.

    Exceptions raised by the predicate count as "not yet".  Raises
    :class:`AssertionError` with ``message`` and the last error after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)"
                                 % (timeout, message, last_error))
        time.sleep(interval)


def short_tmpdir():
    """A fresh directory with a short path: unix socket paths are limited to 107 bytes."""
    return tempfile.mkdtemp(prefix="gd-", dir="/tmp")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawConnection:
    """A newline-framed JSON-RPC connection over a unix or TCP socket."""

    def __init__(self, address, timeout=10.0):
        if address.startswith("unix://"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address[len("unix://"):])
        else:
            hostport = address.split("://", 1)[1]
            host, port = hostport.rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = b""
        self._next_id = 0

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def read_line(self):
        """The next line as bytes (without ``\\n``); ``None`` at EOF."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def read(self):
        """The next response, decoded; ``None`` at EOF."""
        line = self.read_line()
        return None if line is None else json.loads(line)

    def call(self, method, params=None, **named):
        """Send a request and return the whole response object."""
        self._next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "id": self._next_id}
        if params is None and named:
            params = named
        if params is not None:
            request["params"] = params
        self.send(request)
        while True:
            response = self.read()
            # Skip pushed event notifications.
            if response is None or "id" in response:
                return response

    def result(self, method, params=None, **named):
        """Send a request; return its result or raise AssertionError on an error."""
        response = self.call(method, params, **named)
        assert response is not None, "connection closed"
        assert "error" not in response, response
        return response["result"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def recv_until_closed(sock, timeout=10.0):
    """Everything ``sock`` receives until the peer closes it (or resets it).

    ``socket.timeout`` after ``timeout`` seconds without a byte: the peer
    kept the connection open.
    """
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def rpc(address, method, params=None, timeout=10.0, **named):
    """One request on a fresh connection; return the response object."""
    with RawConnection(address, timeout=timeout) as conn:
        return conn.call(method, params, **named)


def is_serving(address):
    try:
        response = rpc(address, "system.listMethods", timeout=2.0)
        return response is not None and "result" in response
    except OSError:
        return False


class DaemonProcess:
    """A daemon command run in ``cwd`` in its own session.

    ``stop()`` SIGKILLs the whole process group and every descendant it can
    find, then waits for them: no test leaves a process behind, even when it
    fails.  Use as the value of a fixture whose finalizer calls ``stop()``.
    """

    def __init__(self, argv, cwd, env=None, address=None):
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(os.environ, **(env or {}))
        self.address = address or "unix://" + os.path.join(cwd, "daemon.sock")
        self.proc = None
        self.stderr_path = os.path.join(cwd, "stderr.txt")
        self._known = set()

    def start(self, wait=True, timeout=15.0):
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s: %s" % (self.proc.returncode, self.output()))
            return is_serving(self.address)
        try:
            wait_until(ready, timeout, message="daemon to serve on %s" % self.address)
        except AssertionError as exc:
            raise AssertionError("%s\n--- output ---\n%s" % (exc, self.output())) from None
        self.remember_children()

    def output(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def connect(self, timeout=10.0):
        return RawConnection(self.address, timeout=timeout)

    def call(self, method, params=None, **named):
        return rpc(self.address, method, params, **named)

    def result(self, method, params=None, **named):
        response = rpc(self.address, method, params, **named)
        assert response is not None and "error" not in response, response
        return response["result"]

    def remember_children(self):
        """Record descendants now, so stop() can kill them even once orphaned."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._known.add(child)
        except psutil.Error:
            pass

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def wait(self, timeout=15.0):
        """Wait for the daemon to exit; return its exit code."""
        return self.proc.wait(timeout)

    def stop(self):
        """Kill the group and every known descendant; wait for them all."""
        if self.proc is None:
            return
        self.remember_children()
        procs = set(self._known)
        try:
            procs.add(psutil.Process(self.proc.pid))
        except psutil.Error:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        wait_gone(procs)
        self._stderr.close()


def gone(pid_or_process):
    """True once a process (a pid or a :class:`psutil.Process`) has exited.

    A zombie counts as gone: its reaper (often PID 1 for orphaned workers)
    may be slow to collect it, but it runs no more code.
    """
    try:
        if not isinstance(pid_or_process, psutil.Process):
            pid_or_process = psutil.Process(pid_or_process)
        return pid_or_process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids_or_processes, timeout=10.0):
    """Wait until every process (pids or :class:`psutil.Process`, or just one) is :func:`gone`."""
    if isinstance(pids_or_processes, (int, psutil.Process)):
        pids_or_processes = [pids_or_processes]
    procs = list(pids_or_processes)
    wait_until(lambda: all(gone(p) for p in procs), timeout,
               message="processes %s to exit" % ", ".join(str(getattr(p, "pid", p)) for p in procs))


def run(argv, cwd, timeout=30.0, env=None, input=None):
    """Run a command to completion; return the CompletedProcess (text output)."""
    return subprocess.run(argv, cwd=cwd, env=dict(os.environ, **(env or {})), input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def pid_from_file(path):
    with open(path) as f:
        return int(f.read().strip())


def kill_pidfile_daemon(cwd, name="daemon.pid"):
    """Finalizer for tests that start ``-d`` daemons: SIGKILL the daemon's group."""
    path = os.path.join(cwd, name)
    try:
        pid = pid_from_file(path)
    except (OSError, ValueError):
        return
    if pid <= 1 or pid == os.getpid() or pid in {p.pid for p in psutil.Process().parents()}:
        # A daemon that ran as PID 1 of its own namespace wrote "1": outside it,
        # that is the machine's init. Never kill it, ourselves or our ancestors.
        return
    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    wait_gone(procs)
