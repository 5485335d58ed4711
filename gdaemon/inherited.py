"""Listening sockets a daemon inherits instead of binding them.

Two parents hand a daemon its sockets already bound and listening:

- **its predecessor, during an upgrade**: ``GDAEMON_FDS`` lists them as
  comma-separated ``name=fd`` pairs, e.g. ``rpc=3,http=4,pool:web=5``;
- **systemd (socket activation)**: when ``LISTEN_PID`` is this process's pid,
  ``LISTEN_FDS`` sockets start at descriptor 3, optionally named by the
  colon-separated ``LISTEN_FDNAMES``.  ``pool:NAME`` spans two of its fields
  (``rpc:pool:web``); a name that is none of ``rpc``, ``http`` or
  ``pool:NAME`` (systemd's default is the socket unit's name) counts as no
  name.

Every place that binds a listening socket asks :func:`take` first, with the
endpoint's name (``rpc``, ``http``, ``pool:NAME``) and address: a socket of
that name, or else an unnamed one whose ``getsockname()`` is that address, is
used as it is.  An adopted unix socket is never unlinked nor bound again.
:func:`check_all_taken` then makes a socket nobody took a one-line start-up
error naming its address.  The environment variables are removed as soon as
they are read, so that no child (a worker, an exec'd program) sees them.
"""

import os
import socket
from typing import List

from .errors import ProcessError

__all__ = ["ENV_FDS", "Inherited", "adopt_environ", "take", "check_all_taken", "current",
           "describe_socket", "format_fds"]

#: The variable an upgrading daemon describes its sockets in.
ENV_FDS = "GDAEMON_FDS"
#: Names (comma-separated) of those whose unix socket file is not the
#: daemon's to remove (systemd made it).
ENV_KEEP = "GDAEMON_FDS_KEEP"
_SYSTEMD_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: The first descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


def format_fds(pairs):
    """``[("rpc", 3), ("pool:web", 5)]`` -> ``"rpc=3,pool:web=5"`` (the value of ``GDAEMON_FDS``)."""
    return ",".join("%s=%d" % (name, fd) for name, fd in pairs)


def _known_name(name):
    return name in ("rpc", "http") or (name.startswith("pool:") and len(name) > 5)


def _systemd_names(value, count):
    """``LISTEN_FDNAMES`` split into ``count`` names (``pool:NAME`` rejoined)."""
    fields = value.split(":") if value else []
    names: List[str] = []
    i = 0
    while i < len(fields):
        if fields[i] == "pool" and i + 1 < len(fields) and len(fields) - i > count - len(names):
            names.append("pool:" + fields[i + 1])
            i += 2
        else:
            names.append(fields[i])
            i += 1
    names += [""] * (count - len(names))
    return names[:count]


class Inherited:
    """One inherited listening socket.

    :param origin: ``"upgrade"`` (the predecessor's) or ``"systemd"``.
    """

    def __init__(self, fd, name, origin, owns_file=None):
        self.fd = fd
        self.name = name if _known_name(name) else None
        self.origin = origin
        #: Whether the daemon removes the unix socket file when it stops: not
        #: systemd's; the predecessor's only when that one made it.
        self.owns_file = origin == "upgrade" if owns_file is None else owns_file
        self.sock = None

    def socket(self, factory=None):
        """A socket object owning the descriptor (made once, by ``factory``, default
        :class:`socket.socket`; not inheritable)."""
        if self.sock is None:
            self.sock = (factory or socket.socket)(fileno=self.fd)
            self.sock.set_inheritable(False)
        return self.sock

    def __repr__(self):
        return "<Inherited %s fd %d from %s>" % (self.name or "(unnamed)", self.fd, self.origin)


class InheritedSockets:
    """The sockets this process inherited, until each is taken by an endpoint."""

    def __init__(self, sockets=()):
        self.pending = list(sockets)
        #: ``{name: Inherited}`` of those taken (the upgrade passes them on).
        self.taken = {}

    @classmethod
    def from_environ(cls, environ=None):
        """Read (and remove) ``GDAEMON_FDS`` and systemd's ``LISTEN_*`` from ``environ``.

        :raises ProcessError: a variable that cannot be parsed (named in the message).
        """
        environ = os.environ if environ is None else environ
        found = []
        fds = environ.pop(ENV_FDS, None)
        keep = set((environ.pop(ENV_KEEP, None) or "").split(","))
        if fds:
            for pair in fds.replace(" ", ",").split(","):
                if not pair:
                    continue
                name, eq, fd = pair.rpartition("=")
                try:
                    found.append(Inherited(int(fd), name, "upgrade", owns_file=name not in keep))
                except ValueError:
                    raise ProcessError(0, "bad %s=%r: expected name=fd pairs" % (ENV_FDS, fds)) from None
        pid, count, names = (environ.pop(var, None) for var in _SYSTEMD_VARS)
        if pid and count and pid.strip() == str(os.getpid()):
            try:
                count = int(count)
            except ValueError:
                raise ProcessError(0, "bad LISTEN_FDS=%r: expected a number" % count) from None
            for index, name in enumerate(_systemd_names(names or "", count)):
                found.append(Inherited(LISTEN_FDS_START + index, name, "systemd"))
        return cls(found)

    def take(self, name, address):
        """The listening socket for endpoint ``name`` at ``address``, or ``None`` (bind it).

        :param address: a :class:`~gdaemon.wire.address.Address`.
        """
        match = next((s for s in self.pending if s.name == name), None)
        if match is None:
            match = next((s for s in self.pending if s.name is None and _same_address(s, address)), None)
        if match is None:
            return None
        self.pending.remove(match)
        self.taken[name] = match
        return match

    def check_all_taken(self):
        """:raises ProcessError: a socket nobody took (its address named); it is closed."""
        if not self.pending:
            return
        leftovers, self.pending = self.pending, []
        descriptions = []
        for item in leftovers:
            descriptions.append("%s (fd %d%s)" % (describe_socket(item), item.fd,
                                                  ", named %s" % item.name if item.name else ""))
            try:
                item.socket().close()
            except OSError:
                pass
        raise ProcessError(0, "inherited socket%s matching no endpoint: %s" % (
            "s" if len(descriptions) > 1 else "", ", ".join(descriptions)))


def describe_socket(item):
    """The address of an inherited socket as ``unix://PATH`` or ``tcp://HOST:PORT``."""
    try:
        sock = item.socket()
        local = sock.getsockname()
    except OSError as exc:
        return "fd %d (%s)" % (item.fd, exc.strerror)
    if isinstance(local, (bytes, str)):
        local = os.fsdecode(local) if local else "(unnamed)"
        return "unix://" + local
    host = local[0]
    return "tcp://%s:%d" % ("[%s]" % host if ":" in host else host, local[1])


def _same_address(item, address):
    try:
        local = item.socket().getsockname()
    except OSError:
        return False
    if address.is_unix:
        if not isinstance(local, (bytes, str)):
            return False
        local = os.fsdecode(local)
        return bool(local) and os.path.abspath(local) == os.path.abspath(address.path)
    if isinstance(local, (bytes, str)) or local[1] != address.port:
        return False
    try:
        infos = socket.getaddrinfo(address.host, address.port, 0, socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return any(info[4][0] == local[0] for info in infos)


#: This process's inherited sockets (none until :func:`adopt_environ`).
current = InheritedSockets()


def adopt_environ(environ=None):
    """Read this process's inherited sockets from the environment (once, at start)."""
    global current
    current = InheritedSockets.from_environ(environ)
    return current


def take(name, address):
    """:meth:`InheritedSockets.take` on this process's sockets."""
    return current.take(name, address)


def check_all_taken():
    """:meth:`InheritedSockets.check_all_taken` on this process's sockets."""
    current.check_all_taken()
