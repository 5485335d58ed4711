"""Unix stream sockets by path: connect, bind, and "is anybody there?".

``sun_path`` holds at most :data:`UNIX_PATH_MAX` bytes.  On Linux a longer
path is still reached through its directory: the directory is opened
(``O_PATH``) and the socket bound or connected as
``/proc/self/fd/<dirfd>/<basename>``, then the directory descriptor is
closed.  Elsewhere a longer path fails with the operating system's error.

Fork safety: the directory descriptor is closed at once, not at the next
turn of the gevent loop (what a monkey-patched ``os.close`` does), so a
worker forked right after a bind cannot inherit it.
"""

import errno
import os
import socket

from ..errors import ProcessError
from ..unpatched import original

__all__ = ["UNIX_PATH_MAX", "connect_unix", "bind_unix", "unix_socket_is_live"]

#: Longest unix socket path ``bind()``/``connect()`` take as they are (``sun_path`` is 108 bytes).
UNIX_PATH_MAX = 107


def _close_now(fd):
    """``os.close`` as it was before any monkey-patching (gevent's defers the close).

    Looked up at each call: the client imports this module without gevent,
    and a program may patch after importing it.
    """
    original("os", "close")(fd)


def _at_path(sock_method, path):
    """Call ``sock.bind`` or ``sock.connect`` on ``path``, even one too long for sun_path."""
    if len(os.fsencode(path)) <= UNIX_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        return sock_method(path)
    dirname, basename = os.path.split(path)
    flags = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)
    dirfd = os.open(dirname or ".", flags)
    try:
        return sock_method("/proc/self/fd/%d/%s" % (dirfd, basename))
    finally:
        _close_now(dirfd)


def connect_unix(path, timeout=None):
    """Connect a stream socket to the unix socket ``path``.

    The socket comes from :mod:`socket` as it is when called: cooperative
    under ``gevent.monkey.patch_all()``, blocking without it.

    :param path: file system path of the socket.
    :param timeout: seconds allowed to connect (and later reads); ``None`` blocks.
    :returns: the connected :class:`socket.socket`.
    :raises OSError: when the socket cannot be reached.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        _at_path(sock.connect, path)
    except BaseException:
        sock.close()
        raise
    return sock


def unix_socket_is_live(path):
    """True when something accepts connections on the unix socket ``path``."""
    try:
        connect_unix(path, timeout=1.0).close()
        return True
    except OSError:
        return False


def bind_unix(path, mode=0o600):
    """A unix stream socket bound to ``path`` with permissions ``mode`` (not listening yet).

    A file already at ``path`` is never removed here: a live socket is
    another daemon's, and a stale one is removed by the console's ``-s``.

    :raises ProcessError: with the address in the message (``address in use: ...``).
    """
    address = "unix://%s" % path
    if os.path.lexists(path):
        if unix_socket_is_live(path):
            raise ProcessError(errno.EADDRINUSE, "address in use: %s (another process serves it)" % address)
        raise ProcessError(errno.EADDRINUSE, "address in use: %s is a stale socket file "
                           "(start with -s to remove it)" % address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind under a umask that already gives the final mode, so the socket
    # is never reachable with looser permissions, even for an instant.
    old_umask = os.umask(0o777 & ~mode)
    try:
        _at_path(sock.bind, path)
    except OSError as exc:
        sock.close()
        raise ProcessError(exc.errno, "cannot bind %s: %s" % (address, exc.strerror)) from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return sock
