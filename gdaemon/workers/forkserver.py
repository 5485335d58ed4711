"""The fork server: forks workers and standbys so that the daemon's hub never does.

A ``fork()`` blocks the process that calls it for as long as the kernel
copies its page tables, and the daemon's hub serves every RPC connection:
forking workers from it (at every respawn of a crash-looping worker, a pool
scaled to 64, a rolling reload) stalls the control plane in bursts.  So the
daemon forks one small helper instead, the *fork server*, and asks it for
every worker and standby process.

How a worker is made (Linux)::

    daemon ──request + channel fds (SCM_RIGHTS)──▶ fork server
                                                     │ clone(CLONE_PARENT)
                                                     ▼
                                      worker: the daemon's child, waiting on its gate
    daemon ◀──────────── worker's pid ───────── fork server
    daemon: watch(pid), then opens the gate ────────────▶ worker runs

- The server forks with ``clone(CLONE_PARENT)`` (see :func:`_sibling_cloner`):
  the worker is the server's sibling, the daemon's own child, exactly as if
  the daemon had forked it: libev reaps it, ``os.kill`` reaches it,
  ``PR_SET_PDEATHSIG`` ties it to the daemon.  Where that call is not known
  (an unlisted architecture) the server double-forks (an intermediate forks
  the worker and exits at once), and the daemon is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): when the
  intermediate exits, the worker is re-parented to the daemon, not to init.
  The server replies only after reaping the intermediate, so by then the
  re-parenting is done.
- The worker waits on a *gate* pipe until the daemon has registered its
  child watcher (an exit before that would be reaped unseen) and only then
  asks to die with the daemon and checks that the daemon is its parent.
- The channel's shared memory is a memfd (see
  :class:`~gdaemon.workers.channel.Channel`), sent with the worker's pipe
  ends over the server's unix socket.

Freshness: the fork server is a copy of the daemon as it was when it was
forked, like the standby (see :mod:`gdaemon.workers.standby`).  Whenever
the standby's epoch changes (reload, reopened logs, a worker installed at
run time) the server is retired too, and the next request forks a new one:
one fork of the daemon per such event, none per worker.  A pool scaled up
is no such event: the server (like a standby told to become one of the new
instances) makes them in its copy as the daemon made them, copies of the
pool's installed worker (:meth:`WorkerManager.make_missing_instance
<gdaemon.workers.manager.WorkerManager.make_missing_instance>`), so scaling
forks nothing in the daemon.

The server itself never runs gevent: it abandons the daemon's hub (see
:func:`gdaemon.forking.abandon_hub`), blocks on its socket with the
original, unpatched calls, and its children start a fresh hub of their own.
It exits when the daemon closes its end, or with the daemon (parent-death
signal).

Elsewhere than Linux (no subreaper, no memfd) the daemon forks its workers
itself, as before.
"""

import functools
import os
import signal
import socket as _stdsocket
import struct
import sys
import time
from typing import Optional

import _socket
import gevent
from gevent import socket as gsocket
from gevent.lock import Semaphore

from ..forking import raw_fork
from ..process import close_fd, closing_at_once
from ..proctitle import set_title
from ..unpatched import original

__all__ = ["ForkServer", "supported", "FORKSERVER_COMM"]

# prctl(2) options (Linux).
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36

_CLONE_PARENT = 0x00008000

#: ``/proc/PID/comm`` of the fork server (at most 15 bytes).
FORKSERVER_COMM = b"gdaemon-forksrv"

# Requests: kind byte + name; replies: pid (> 0) or an error message.
_WORKER, _STANDBY = b"W", b"S"
_REPLY = struct.Struct("=i")
_MAX_REQUEST = 65536

_waitpid = original("os", "waitpid")


@functools.lru_cache(maxsize=None)
def _sibling_cloner():
    """``clone(CLONE_PARENT)`` as a fork: the child is its caller's sibling.

    One fork in the server instead of two: the new process is the daemon's
    child from its first instruction (no intermediate to fork, exit and reap,
    which took 4 ms a worker against 0.6 ms).  ``os.fork`` cannot ask for
    that, so the system call is made through ctypes, wrapped in
    ``PyOS_BeforeFork`` / ``PyOS_AfterFork_Child`` / ``PyOS_AfterFork_Parent``
    exactly as ``os.fork`` wraps ``fork()``, with the GIL held throughout
    (``PyDLL``).  glibc's own ``fork()`` bookkeeping (the cached thread id,
    the robust-mutex list, its at-fork handlers) is skipped: that is safe in
    the fork server, which has a single thread and takes no lock of glibc's
    across the call.  ``None`` where the call is not known (the server then
    double-forks, see :meth:`_Server._fork`).  Made once, in the daemon: each
    fork server inherits it, instead of loading ctypes' functions as it starts.
    """
    import ctypes
    import platform
    # clone(flags, newsp, ...) numbers; s390 takes its arguments in another order.
    numbers = {"x86_64": 56, "aarch64": 220, "ppc64le": 120}
    number = numbers.get(platform.machine())
    if number is None:
        return None
    try:
        syscall = ctypes.PyDLL(None, use_errno=True).syscall
        api = ctypes.pythonapi
        before, child, parent = api.PyOS_BeforeFork, api.PyOS_AfterFork_Child, api.PyOS_AfterFork_Parent
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    flags = ctypes.c_ulong(_CLONE_PARENT | signal.SIGCHLD)
    null = ctypes.c_void_p(0)

    def clone_sibling():  # pragma: no cover - runs in the fork server
        before()
        pid = syscall(ctypes.c_long(number), flags, null, null, null, null)
        if pid == 0:
            child()
            return 0
        parent()
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return pid
    return clone_sibling


class _Refused(OSError):
    """The fork server answered, but could not fork what was asked."""


def supported():
    """True where workers can be forked by a fork server (Linux 3.17+: memfd, subreaper)."""
    return (sys.platform.startswith("linux") and hasattr(os, "memfd_create")
            and hasattr(_stdsocket, "send_fds"))


class ForkServer:
    """The daemon's side of its fork server (see the module docstring).

    :param manager: the :class:`~gdaemon.workers.manager.WorkerManager`.
    :param prctl: libc's ``prctl``, resolved in the daemon.
    """

    #: Seconds a request may take before the server is taken for dead.
    reply_timeout = 10.0
    #: Seconds without a fork server after one died before it served,
    #: doubling up to :attr:`backoff_max` while it keeps doing so.
    backoff_min = 0.1
    backoff_max = 30.0

    def __init__(self, manager, prctl):
        self.manager = manager
        self._prctl = prctl
        self._sock = None
        self._pid = None
        self._epoch = None
        self._lock = Semaphore()
        self._subreaper = False
        self._failures = 0
        self._retry_at = 0.0

    @staticmethod
    def prepare():
        """Load now what every fork server forks with (the ``clone`` call through
        ctypes): a ``-d`` daemon does it before it detaches, where it copies no page."""
        _sibling_cloner()

    @property
    def pid(self):
        """The fork server's pid, ``None`` while there is none."""
        return self._pid

    def spawn(self, channel, kind, name, extra_fds=()):
        """Have the server fork a worker (``kind`` ``"worker"``) or a standby.

        Blocks only the calling greenlet.  The returned child is the
        daemon's own (re-parented) child, still waiting on its gate: call
        :meth:`open_gate` once its exit can no longer be missed.

        :param channel: a shareable :class:`~gdaemon.workers.channel.Channel`.
        :param name: the worker's name (ignored for a standby).
        :param extra_fds: an exec worker's stdout and stderr pipes (write ends).
        :returns: ``(pid, gate)``: the child's pid and the gate's write end.
        :raises OSError: no server could be had, or it could not fork.
        """
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                raise OSError("no fork server for %.1fs more (the last one died before it served)"
                              % (self._retry_at - now))
            epoch = self.manager.standbys.epoch
            fresh = False
            if self._sock is None or self._epoch != epoch:
                self._start(epoch)
                fresh = True
            try:
                return self._ask_gated(channel, kind, name, extra_fds)
            except OSError as exc:
                if fresh or self.manager.stopping:
                    # (Stopping: the server was retired under this request;
                    # no new one now.)
                    if not isinstance(exc, _Refused):
                        self.retire()
                        self._failed(exc)
                    raise
            # The server died, is stuck, or is a copy that lacks this worker
            # (it refused): one new server, one more try.
            self.retire()
            self._start(epoch)
            try:
                return self._ask_gated(channel, kind, name, extra_fds)
            except _Refused:
                raise
            except OSError as exc:
                self.retire()
                self._failed(exc)
                raise

    def _ask_gated(self, channel, kind, name, extra_fds):
        """One request with a new gate: ``(pid, gate)``.  On any failure the gate
        is closed, so a child the server forked for it anyway sees EOF there
        and exits (a gate made before a new server is forked would be copied
        into the server, and the child would wait on it for ever)."""
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        request = (_WORKER if kind == "worker" else _STANDBY) + name.encode("utf-8")
        fds = channel.worker_fds() + [gate_r] + list(extra_fds)
        try:
            pid = self._ask(request, fds)
        except BaseException:
            close_fd(gate_w)
            raise
        finally:
            close_fd(gate_r)
        self._failures = 0
        return pid, gate_w

    @staticmethod
    def open_gate(gate):
        """Let the child run (its exit is watched now)."""
        try:
            os.write(gate, b"g")
        finally:
            close_fd(gate)

    def _ask(self, request, fds):
        sock = self._sock
        assert sock is not None  # spawn() started the server
        with gevent.Timeout(self.reply_timeout, OSError("the fork server did not answer within %gs"
                                                        % self.reply_timeout)):
            _stdsocket.send_fds(sock, [request], fds)
            reply = sock.recv(_MAX_REQUEST)
        if not reply:
            raise OSError("the fork server is gone")
        if len(reply) == _REPLY.size:
            return _REPLY.unpack(reply)[0]
        raise _Refused(reply.decode("utf-8", "replace"))

    def _failed(self, exc):
        """A new server died (or hung) before it served: back off before the next."""
        self._failures += 1
        delay = min(self.backoff_min * 2 ** (self._failures - 1), self.backoff_max)
        self._retry_at = time.monotonic() + delay
        self.manager.logger.warning("the fork server failed before it served (%s): the daemon "
                                    "forks its workers itself for %.1fs", exc, delay)

    def _start(self, epoch):
        """Fork a new server from the daemon as it is now (in the hub: one fork per epoch)."""
        manager = self.manager
        self.retire()
        cloner = _sibling_cloner()
        if cloner is None and not self._subreaper:
            # Double forks: the worker must be re-parented to us, not to init.
            if self._prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError("prctl(PR_SET_CHILD_SUBREAPER) failed")
            self._subreaper = True
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        forking = manager.forking
        try:
            forking.add_fd(ours.fileno(), "the fork server's socket")
            listeners = [w.listener.fileno() for w in (h.worker for h in manager)
                         if getattr(w, "listener", None) is not None]
            parent = os.getpid()
            server = _Server(manager, theirs.fileno(), parent, self._prctl, set(listeners), cloner)
            pid = forking.fork(server.run, "the fork server", keep=[theirs.fileno()] + listeners,
                               fresh_hub=False)
        except BaseException:
            forking.discard_fd(ours.fileno())
            ours.close()
            theirs.close()
            raise
        with closing_at_once():
            theirs.close()
        self._sock = gsocket.socket(fileno=ours.detach(), family=_stdsocket.AF_UNIX,
                                    type=_stdsocket.SOCK_SEQPACKET)
        forking.add_fd(self._sock.fileno(), "the fork server's socket")
        self._pid = pid
        self._epoch = epoch
        watcher = gevent.get_hub().loop.child(pid, False)
        watcher.start(self._exited, watcher)

    def _exited(self, watcher):
        watcher.stop()
        watcher.close()
        if watcher.pid == self._pid:
            code = os.waitstatus_to_exitcode(watcher.rstatus)
            self.manager.logger.warning("the fork server (pid %d) exited (%s): the next spawn "
                                        "starts another", watcher.pid, code)
            self._drop()

    def retire(self):
        """Let the server go (it exits once its socket closes)."""
        self._drop()

    def _drop(self):
        sock, self._sock, self._pid, self._epoch = self._sock, None, None, None
        if sock is not None:
            self.manager.forking.discard_fd(sock.fileno())
            with closing_at_once():
                sock.close()


class _Server:
    """The fork server's own side: everything here runs in the server process."""

    def __init__(self, manager, fd, parent, prctl, listeners, cloner=None):
        #: :func:`_sibling_cloner`'s clone, ``None``: the server double-forks.
        self.cloner = cloner
        self.manager = manager
        self.fd = fd
        self.parent = parent
        self.prctl = prctl
        self.listeners = listeners

    def run(self):  # pragma: no cover - runs in the fork server
        prctl = self.prctl
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self.parent:
            os._exit(0)
        set_title(self.manager.daemon.config.get("description") or "gdaemon", "fork server",
                  comm=FORKSERVER_COMM.decode())
        sock = _socket.socket(fileno=self.fd)
        sock.setblocking(True)
        while True:
            try:
                # (a raw _socket.socket: it has the recvmsg() that recv_fds() uses)
                request, fds, _flags, _addr = _stdsocket.recv_fds(sock, _MAX_REQUEST, 8,  # type: ignore[arg-type]
                                                                  _socket.MSG_CMSG_CLOEXEC)
            except InterruptedError:
                continue
            if not request:
                os._exit(0)  # the daemon closed its end
            try:
                reply = _REPLY.pack(self._fork(request, fds, sock))
            except Exception as exc:
                reply = ("cannot fork: %s: %s" % (type(exc).__name__, exc)).encode("utf-8")
            finally:
                for fd in fds:
                    try:
                        close_fd(fd)
                    except OSError:
                        pass
            sock.send(reply)

    def _fork(self, request, fds, sock):  # pragma: no cover - runs in the fork server
        if len(fds) not in (4, 6):  # 6: an exec worker's, with its output pipes
            raise ValueError("expected 4 or 6 descriptors, got %d" % len(fds))
        kind, name = request[:1], request[1:].decode("utf-8")
        handles = {h.name: h for h in self.manager}
        if kind == _WORKER and name not in handles and not self.manager.make_missing_instance(name):
            raise KeyError("no worker %r in this copy of the daemon" % name)
        if self.cloner is not None:
            pid = self.cloner()
            if pid == 0:
                self._worker(kind, name, fds, sock, None)
            return pid
        pipe_w: Optional[int]  # None once closed here
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        try:
            intermediate = raw_fork()
            if intermediate == 0:
                close_fd(pipe_r)
                self._intermediate(kind, name, fds, sock, pipe_w)
            close_fd(pipe_w)
            pipe_w = None
            _waitpid(intermediate, 0)
            data = os.read(pipe_r, _REPLY.size)
        finally:
            close_fd(pipe_r)
            if pipe_w is not None:
                close_fd(pipe_w)
        if len(data) != _REPLY.size:
            raise OSError("the worker could not be forked")
        return _REPLY.unpack(data)[0]

    def _intermediate(self, kind, name, fds, sock, pipe_w):  # pragma: no cover - forked
        """Fork the worker, tell the server its pid, exit: the worker goes to the daemon."""
        code = 1
        try:
            pid = raw_fork()
            if pid == 0:
                self._worker(kind, name, fds, sock, pipe_w)
            os.write(pipe_w, _REPLY.pack(pid))
            code = 0
        except BaseException:  # noqa: B036 - the fence: never back into the server's loop
            pass
        os._exit(code)

    def _worker(self, kind, name, fds, sock, pipe_w):  # pragma: no cover - the worker
        from ..forking import fresh_default_hub, run_fenced
        what = "worker %r" % name if kind == _WORKER else "the standby"
        run_fenced(what, lambda: self._become(kind, name, fds, sock, pipe_w, fresh_default_hub))

    def _become(self, kind, name, fds, sock, pipe_w, fresh_default_hub):  # pragma: no cover
        from .channel import Channel
        from .child import run_forked
        sock.close()
        cloned = pipe_w is None  # else double-forked: our parent is the intermediate for now
        if pipe_w is not None:
            close_fd(pipe_w)
        memfd, rfd, wfd, gate = fds[:4]
        streams = fds[4:] or None
        if cloned:
            # Die with the daemon (our parent: clone(CLONE_PARENT)) from now
            # on, even while waiting at the gate; gone already: nothing to do.
            self.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != self.parent:
                os._exit(0)
        # Wait until the daemon watches us; EOF: it gave up on us, or died.
        while True:
            try:
                opened = os.read(gate, 1)
                break
            except InterruptedError:
                continue
        close_fd(gate)
        if not opened:
            os._exit(0)
        manager = self.manager
        workers = {h.name: h.worker for h in manager if h.kind == "process"}
        worker = workers[name] if kind == _WORKER else None
        mine = getattr(worker, "listener", None)
        mine = mine.fileno() if mine is not None else None
        if worker is not None:  # a standby keeps them all until it knows which it is
            for fd in self.listeners:
                if fd != mine:
                    close_fd(fd)
        if worker is not None and manager.spawner.comm:
            self.prctl(_PR_SET_NAME, manager.spawner.comm, 0, 0, 0)  # not the server's name
        if streams is not None:
            # Received descriptors take the lowest free numbers, maybe 0..3,
            # which the program's stdio and listener take over at exec: move
            # them out of the way (the channel reports a failed exec).
            memfd, rfd, wfd, *streams = [_lift(fd) for fd in [memfd, rfd, wfd] + streams]
        channel = Channel.attach(memfd, rfd, wfd)
        if streams is None:  # a program needs no hub
            fresh_default_hub()
        spawner = manager.spawner
        run_forked(manager.daemon, channel, self.parent, self.prctl, worker=worker,
                   workers=None if worker is not None else workers, comm=spawner.comm,
                   streams=streams)


def _lift(fd):  # pragma: no cover - runs in a forked child
    """``fd`` moved to a number above 10 (close-on-exec)."""
    import fcntl
    if fd > 10:
        return fd
    lifted = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    close_fd(fd)
    return lifted
