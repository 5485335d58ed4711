"""Operating-system steps of a daemon's life, one function each.

Each step does one thing and turns an ``OSError`` into a
:class:`~gdaemon.errors.ProcessError` that says what it was doing, with the
path or pid in the message (python-daemon's shape).

Fork safety: :func:`detach` forks twice and must run before the gevent hub
has live watchers in use (the daemon calls it before anything gevent-based
starts); the grandchild calls :func:`gevent.reinit` anyway.
"""

import errno
import fcntl
import os
import sys

import gevent

from .errors import AlreadyRunning, ProcessError

__all__ = ["close_fd", "PidFile", "read_pid", "pidfile_owner", "detach", "redirect_stdio", "set_niceness",
           "pid_alive"]


try:
    # gevent >= 25.8.1's monkey-patched os.close defers closing to the next
    # loop iteration; a launcher blocked in a raw read, or a forked child that
    # switches hubs, would wait for that close forever.  Close at once.
    from gevent.monkey import get_original as _get_original
    _raw_close = _get_original("os", "close")
except ImportError:  # pragma: no cover
    _raw_close = os.close


def close_fd(fd):
    """Close descriptor ``fd`` now, whether or not ``os`` is monkey-patched."""
    _raw_close(fd)


def read_pid(path):
    """The pid written in ``path``, or ``None``."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pidfile_owner(path):
    """The pid of the live daemon holding the lock on ``path``, else ``None``.

    The ``fcntl`` lock, not the file's existence, tells a live daemon from a
    stale file: the kernel drops the lock when the daemon dies, however it dies.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot open pid file %s: %s" % (path, exc.strerror)) from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return read_pid(path) or -1
        raise
    finally:
        # Closing our descriptor also drops a lock we may have just taken.
        close_fd(fd)
    return None


class PidFile:
    """The daemon's pid file, locked with ``fcntl.lockf`` for its whole life.

    POSIX record locks belong to the process, so forked workers do not hold
    it: when the daemon dies the lock is free at once, even if a worker
    lingers for a moment.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        """Lock the file and write our pid.

        :raises AlreadyRunning: another live process holds the lock.
        :raises ProcessError: the file cannot be opened or written.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ProcessError(exc.errno, "cannot open pid file %s: %s" % (self.path, exc.strerror)) from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            close_fd(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(read_pid(self.path) or "unknown") from None
            raise ProcessError(exc.errno, "cannot lock pid file %s: %s" % (self.path, exc.strerror)) from exc
        try:
            os.ftruncate(fd, 0)
            os.write(fd, b"%d\n" % os.getpid())
            os.fsync(fd)
        except OSError as exc:
            close_fd(fd)
            raise ProcessError(exc.errno, "cannot write pid file %s: %s" % (self.path, exc.strerror)) from exc
        self.fd = fd
        return self

    def release(self):
        """Remove the file (it is ours while we hold the lock) and unlock. Idempotent."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        close_fd(self.fd)
        self.fd = None

    def close_in_child(self):
        """In a forked worker: drop the descriptor (the lock is not inherited)."""
        if self.fd is not None:
            try:
                close_fd(self.fd)
            except OSError:
                pass
            self.fd = None


def redirect_stdio(target=os.devnull):
    """Point file descriptors 0, 1 and 2 at ``target``."""
    fd = os.open(target, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    if fd > 2:
        close_fd(fd)


def detach(umask):
    """Become a daemon (PEP 3143): fork, ``setsid``, fork again, ``umask``, ``chdir('/')``.

    Returns ``(ready_fd)`` in the daemon process: a pipe to the original
    process, which waits on it and exits with the status the daemon reports
    through :func:`report_ready` (0 once serving, 1 with the reason).  The
    original process never returns from this function.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot fork: %s" % exc.strerror) from exc
    if pid > 0:
        close_fd(write_end)
        _wait_for_daemon(read_end, pid)  # never returns
    close_fd(read_end)
    os.setsid()
    try:
        pid = os.fork()
    except OSError as exc:
        _report(write_end, "cannot fork: %s" % exc.strerror)
        os._exit(1)
    if pid > 0:
        os._exit(0)
    close_inherited_fds(keep=(write_end,))
    gevent.reinit()
    os.umask(umask)
    try:
        os.chdir("/")
    except OSError as exc:
        _report(write_end, "cannot chdir to /: %s" % exc.strerror)
        os._exit(1)
    return write_end


def close_inherited_fds(keep=()):
    """Close descriptors above 2 that we inherited (PEP 3143), except ``keep``.

    Event-loop descriptors (epoll, eventfd, signalfd: ``anon_inode``) are
    left alone: gevent's hub may already own some, and closing them under it
    would break the loop.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (macOS): leave descriptors as they are
        return
    for fd in fds:
        if fd <= 2 or fd in keep:
            continue
        try:
            target = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            continue  # the listing's own descriptor, already closed
        if target.startswith("anon_inode:"):
            continue
        try:
            close_fd(fd)
        except OSError:
            pass


def _report(fd, message):
    try:
        os.write(fd, message.encode("utf-8", "replace")[:4000])
    except OSError:
        pass


def report_ready(fd, error=None):
    """Tell the waiting launcher we are serving (``error=None``) or why we failed."""
    if fd is None:
        return
    _report(fd, "OK" if error is None else "ERR " + error)
    try:
        close_fd(fd)
    except OSError:
        pass


def _wait_for_daemon(fd, child):
    """The launcher's side: wait for the daemon's word, exit 0 or 1 (never returns)."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass
    message = b"".join(chunks).decode("utf-8", "replace")
    if message == "OK":
        os._exit(0)
    reason = message[4:] if message.startswith("ERR ") else "the daemon exited during start-up"
    sys.stderr.write("error: %s\n" % reason)
    sys.stderr.flush()
    os._exit(1)


def set_niceness(value):
    """Run at nice ``value`` (absolute, SPEC 3), not an increment."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current != value:
            os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot set niceness %d: %s" % (value, exc.strerror)) from exc


def fresh_hub_after_fork():
    """In a forked child: run on a brand-new gevent hub and loop from now on.

    After a fork the child holds a copy of every greenlet of the daemon (the
    RPC connections, the watchdog, timers).  Were the child to run the old
    loop, those greenlets would wake up in the worker and act as a second
    daemon.  A new, non-default loop has none of their watchers, so they can
    never run; the caller's greenlet simply goes on with the new hub.
    """
    from gevent import _hub_local

    hub = type(gevent.get_hub())(default=False)
    _hub_local.set_hub(hub)
    _hub_local.set_loop(hub.loop)
    return hub
