"""Operating-system steps of a daemon's life, one function each.

Each step does one thing and turns an ``OSError`` into a
:class:`~gdaemon.errors.ProcessError` that says what it was doing, with the
path or pid in the message (python-daemon's shape).

Fork safety: :func:`detach` forks twice and must run before the gevent hub
has live watchers in use (the daemon calls it before anything gevent-based
starts); the grandchild calls :func:`gevent.reinit` anyway.
"""

import contextlib
import errno
import fcntl
import os
import struct
import sys
from typing import Optional

import gevent

from .errors import AlreadyRunning, ProcessError
from .unpatched import original

__all__ = ["close_fd", "closing_at_once", "PidFile", "read_pid", "pidfile_owner", "detach", "redirect_stdio", "set_niceness",
           "pid_alive", "resource_usage"]


# gevent >= 25.8.1's monkey-patched os.close defers closing to the next
# loop iteration; a launcher blocked in a raw read, or a forked child that
# switches hubs, would wait for that close forever.  Close at once.
_raw_close = original("os", "close")
# The launcher reaps the intermediate of the double fork with the plain
# call: monkey-patched, waitpid waits for a child watcher in the hub,
# which now and then never fired, and ``-d`` never returned.
_raw_waitpid = original("os", "waitpid")


def close_fd(fd):
    """Close descriptor ``fd`` now, whether or not ``os`` is monkey-patched."""
    _raw_close(fd)


@contextlib.contextmanager
def closing_at_once():
    """Make ``os.close`` close at once inside the block.

    Since 25.8.1 gevent's monkey-patched ``os.close`` defers closing a pipe
    or socket to the next iteration of the hub's loop.  Around a fork that is
    wrong twice over: in the daemon, a channel end closed just after one fork
    is still open when the next worker is forked in the same iteration (the
    new child inherits its sibling's pipe); in a child, a close issued before
    the child switches to a fresh hub is queued on the old loop, which never
    runs again (the descriptor leaks for the worker's whole life).  Nothing
    in the block may yield, and the descriptors closed there have no active
    watcher, so closing at once is safe.
    """
    patched = os.close
    if patched is _raw_close:
        yield
        return
    os.close = _raw_close
    try:
        yield
    finally:
        os.close = patched


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
    stale file: the kernel drops the lock when the daemon dies, however it
    dies.  The lock is only *tested* (``F_GETLK``), never taken: a probe
    (``--status``, ``--stop``) racing a starting daemon can never make it fail
    with "already running".  Returns ``-1`` when the file is locked but its
    owner cannot be told.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot open pid file %s: %s" % (path, exc.strerror)) from exc
    try:
        locked, owner = _test_lock(fd, path)
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot probe pid file %s: %s" % (path, exc.strerror)) from exc
    finally:
        close_fd(fd)
    if not locked:
        return None
    return owner or read_pid(path) or -1


# struct flock on Linux: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid.
_FLOCK = "hhqqi4x"


def _test_lock(fd, path):
    """``(locked, owner pid or 0)`` for a write lock on the whole of ``fd``."""
    if sys.platform.startswith("linux"):
        request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        reply = fcntl.fcntl(fd, fcntl.F_GETLK, request)
        l_type, _, _, _, l_pid = struct.unpack(_FLOCK, reply)
        # In another pid namespace the kernel reports pid 0: fall back on the file.
        return l_type != fcntl.F_UNLCK, max(l_pid, 0)
    # Elsewhere struct flock differs: take the lock for a moment on a
    # read-write descriptor (closing it drops the lock at once).
    probe = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.lockf(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True, 0
        raise
    finally:
        close_fd(probe)
    return False, 0


class PidFile:
    """The daemon's pid file, locked with ``fcntl.lockf`` for its whole life.

    POSIX record locks belong to the process, so forked workers do not hold
    it: when the daemon dies the lock is free at once, even if a worker
    lingers for a moment.

    Two starters racing a stopping daemon can never both own it: the owner
    unlinks the file *before* it unlocks, and :meth:`acquire`, once it holds
    a lock, checks that the locked inode is still the file at the path
    (otherwise it locked a file being removed, and starts again).
    """

    #: Attempts of :meth:`acquire` when the file is replaced under it.
    attempts = 50

    def __init__(self, path):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self):
        """Lock the file and write our pid.

        :raises AlreadyRunning: another live process holds the lock.
        :raises ProcessError: the file cannot be opened or written.
        """
        for _ in range(self.attempts):
            fd = self._open_and_lock()
            if fd is not None:
                break
        else:
            raise ProcessError(errno.EAGAIN, "cannot lock pid file %s: it keeps being replaced"
                               % self.path)
        try:
            os.ftruncate(fd, 0)
            # No fsync: readers see the page cache at once, and after a
            # crash of the machine the pid is meaningless anyway (the lock,
            # not the content, says who runs).  It cost 3 ms of every start.
            os.write(fd, b"%d\n" % os.getpid())
        except OSError as exc:
            close_fd(fd)
            raise ProcessError(exc.errno, "cannot write pid file %s: %s" % (self.path, exc.strerror)) from exc
        self.fd = fd
        return self

    def _open_and_lock(self):
        """A locked descriptor of the file now at the path; ``None``: it was replaced, retry."""
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
            mine = os.fstat(fd)
            there = os.stat(self.path)
        except FileNotFoundError:
            there = None
        if there is None or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            close_fd(fd)  # we locked a file its owner just removed
            return None
        return fd

    def release(self, unlink=True):
        """Remove the file (it is ours while we hold the lock), then unlock. Idempotent.

        :param unlink: ``False`` when a successor takes the file over (an upgrade).
        """
        if self.fd is None:
            return
        if unlink:
            try:
                os.unlink(self.path)
            except (FileNotFoundError, PermissionError):
                # PermissionError: a daemon that dropped root to a user who may
                # not write the directory.  Unlocked, the file is stale: the
                # next start takes it over.
                pass
        close_fd(self.fd)
        self.fd = None

    # -- handing the file over to a successor (an upgrade) ------------------
    #
    # Locks are byte ranges.  The owner frees byte 1 (HANDOVER_BYTE) and keeps
    # the rest; the successor locks that byte at start, so from then on both
    # hold part of the file, and it is never unlocked: a probe finds a live
    # daemon at every moment, and a third starter is refused.  When the owner
    # exits its locks go; the successor then locks the whole file and writes
    # its pid.

    #: The byte the owner frees for its successor.
    HANDOVER_BYTE = 1

    def _held_fd(self) -> int:
        """The descriptor of the pid file, open since :meth:`acquire` or :meth:`join`."""
        assert self.fd is not None, "the pid file is not open"
        return self.fd

    def open_handover(self):
        """Owner: free :attr:`HANDOVER_BYTE` for a successor."""
        fcntl.lockf(self._held_fd(), fcntl.LOCK_UN, 1, self.HANDOVER_BYTE)

    def cancel_handover(self):
        """Owner: the successor failed; take :attr:`HANDOVER_BYTE` back."""
        try:
            fcntl.lockf(self._held_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.HANDOVER_BYTE)
        except OSError:
            pass  # a dying successor still holds it: the owner still has the rest

    def join(self):
        """Successor: lock :attr:`HANDOVER_BYTE` of the owner's file.

        :raises AlreadyRunning: the byte is locked (no handover is open).
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ProcessError(exc.errno, "cannot open pid file %s: %s" % (self.path, exc.strerror)) from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.HANDOVER_BYTE)
        except OSError as exc:
            close_fd(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(read_pid(self.path) or "unknown") from None
            raise ProcessError(exc.errno, "cannot lock pid file %s: %s" % (self.path, exc.strerror)) from exc
        self.fd = fd
        return self

    def take_over(self):
        """Successor: lock the whole file once the owner is gone and write our pid.

        :returns: ``False`` while the owner still holds its part (try again later).
        """
        fd = self._held_fd()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % os.getpid(), 0)  # no fsync: see acquire()
        except OSError as exc:
            raise ProcessError(exc.errno, "cannot write pid file %s: %s" % (self.path, exc.strerror)) from exc
        return True


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
        _raw_waitpid(child, 0)
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
    """Run at nice ``value`` (absolute, docs/reference/config.rst), not an increment."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current != value:
            os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot set niceness %d: %s" % (value, exc.strerror)) from exc


def resource_usage(pid):
    """``(rss bytes, cpu seconds)`` of process ``pid`` from ``/proc``; ``(None, None)`` if unknown."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None, None
    try:
        # Fields after "(comm) ": state is [0]; utime [11], stime [12], rss [21] (pages).
        cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        rss = int(fields[21]) * _PAGE_SIZE
    except (IndexError, ValueError):
        return None, None
    return rss, round(cpu, 2)


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover
    _CLOCK_TICKS, _PAGE_SIZE = 100, 4096
