"""Who a process runs as, and its resource limits: ``user``, ``group``, ``rlimits``.

Two places use it:

- the daemon, started as root with the ``user``/``group`` configuration
  keys, drops to that identity once it has bound its sockets and opened its
  files (see :meth:`gdaemon.daemon.Daemon._drop_privileges`);
- every forked worker installed with ``user=``, ``group=`` or ``rlimits=``
  takes them in the child, right after the fork (or the activation of a
  standby) and before ``spinup()``: :func:`apply_process_settings`, the one
  function any forked child calls.

Everything a name can be wrong about is checked where the option is given
(:func:`resolve_identity`, :func:`parse_rlimits`, :func:`check_switchable`),
so that a typo is a one-line error naming it at ``install()`` or at start,
never a worker that dies at boot.  Only what the kernel alone can refuse
(a limit above what it allows root) is found in the child, where it is a
:class:`~gdaemon.errors.WorkerError` naming the worker and the limit.

Order in the child: resource limits first (root may still raise a hard
limit), then the supplementary groups, the group, the user.  Once the user
is set, real, effective and saved ids are all that user's: there is no way
back to root.  Changing credentials clears the parent-death signal (see
``prctl(2)``), so it is set again afterwards.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import signal
from typing import Callable, Literal, Optional, Union

from .errors import ConfigError, ProcessError, WorkerError

__all__ = ["Identity", "Limit", "ProcessSettings", "resolve_identity", "check_name", "parse_rlimits",
           "check_switchable", "check_limits", "drop_privileges", "apply_process_settings", "RLIMIT_NAMES"]

#: ``{"nofile": resource.RLIMIT_NOFILE, ...}``: every limit this platform has.
RLIMIT_NAMES = {name[len("RLIMIT_"):].lower(): getattr(resource, name)
                for name in dir(resource) if name.startswith("RLIMIT_")}

_INFINITY = resource.RLIM_INFINITY
_PR_SET_PDEATHSIG = 1


class Identity:
    """A resolved user and group: ``uid``, ``gid`` and the supplementary ``groups``.

    :param uid: the user id, or ``None`` to keep the current one (a ``group`` alone).
    :param gid: the group id.
    :param groups: the supplementary groups (the user's, from the group database).
    :param name: how it was given, for messages (``"nobody"``, ``"65534:65534"``).
    """

    __slots__ = ("uid", "gid", "groups", "name", "entry")

    def __init__(self, uid, gid, groups, name, entry=None):
        self.uid = uid
        self.gid = gid
        self.groups = tuple(groups)
        self.name = name
        #: The user's ``pwd`` entry (``None`` for a bare uid or a group alone).
        self.entry = entry

    def is_current(self):
        """True when this process already runs as this identity (nothing to switch)."""
        if self.uid is not None and self.uid != os.geteuid():
            return False
        return self.gid == os.getegid()

    def switch(self):
        """Take this identity: supplementary groups, group, then user.

        A no-op when the process already is it (a non-root daemon naming its
        own user).

        :raises OSError: the kernel refused (the caller is not root).
        """
        if self.is_current() and (self.uid is None or os.getuid() == self.uid):
            return False
        os.setgroups(list(self.groups))
        os.setgid(self.gid)
        if self.uid is not None:
            os.setuid(self.uid)
        return True

    def __repr__(self):
        return "<Identity %s uid=%s gid=%s groups=%s>" % (self.name, self.uid, self.gid,
                                                           list(self.groups))


def resolve_identity(user, group, what="", error=ConfigError):
    """Look ``user`` and ``group`` up; ``None`` when both are ``None``.

    :param user: a user name or a numeric uid (an int, or a string of digits
        that names no user), or ``None``.
    :param group: a group name or numeric gid, or ``None`` (the user's
        primary group).
    :param what: who the identity is for, to start error messages with
        (``"worker 'web'"``); empty for the daemon's own keys.
    :param error: the exception class raised (``ConfigError`` for the
        daemon's keys, ``WorkerError`` for a worker's options).
    :raises error: an unknown name, a value of the wrong type, or a numeric
        uid that has no entry in the user database and no ``group``.
    """
    if user is None and group is None:
        return None
    prefix = what + ": " if what else ""
    entry = None
    uid = None
    if user is not None:
        entry = _lookup(user, pwd.getpwnam, pwd.getpwuid, "user", prefix, error)
        uid = entry.pw_uid if entry is not None else int(user)
    if group is not None:
        found = _lookup(group, grp.getgrnam, grp.getgrgid, "group", prefix, error)
        gid = found.gr_gid if found is not None else int(group)
    elif entry is not None:
        gid = entry.pw_gid
    else:
        raise error("%suser %s has no entry in the user database: give a group too" % (prefix, user))
    if entry is not None:
        groups = os.getgrouplist(entry.pw_name, gid)
    else:
        groups = [gid]
    name = str(user) if user is not None else ":%s" % group
    if user is not None and group is not None:
        name = "%s:%s" % (user, group)
    return Identity(uid, gid, groups, name, entry)


def check_name(kind, value, what="", error=ConfigError):
    """Raise ``error`` unless ``value`` is a known ``kind`` (``"user"`` or ``"group"``)
    name or a numeric id (a ``None`` value passes)."""
    if value is None:
        return
    by_name, by_id = (pwd.getpwnam, pwd.getpwuid) if kind == "user" else (grp.getgrnam, grp.getgrgid)
    _lookup(value, by_name, by_id, kind, what + ": " if what else "", error)


def _lookup(value, by_name, by_id, kind, prefix, error):
    """The database entry of ``value``; ``None`` for a numeric id without an entry."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise error("%s%s must be a name or a numeric id, got %r" % (prefix, kind, value))
    if isinstance(value, int) or value.isdigit():
        number = int(value)
        if isinstance(value, str):
            try:
                return by_name(value)  # a name made of digits wins
            except KeyError:
                pass
        if number < 0:
            raise error("%s%s id must not be negative, got %r" % (prefix, kind, value))
        try:
            return by_id(number)
        except KeyError:
            return None  # a bare id is fine (containers run as uids nobody named)
    if not value:
        raise error("%s%s must not be empty" % (prefix, kind))
    try:
        return by_name(value)
    except KeyError:
        raise error("%sunknown %s %r" % (prefix, kind, value)) from None


def check_switchable(identity, what="", error=ConfigError):
    """Raise ``error`` unless this process can take ``identity``.

    Root can take any; any other process only its own (then nothing
    changes): a ``user`` without root is accepted only when it names the
    current user, a ``group`` only when it is the current group.
    """
    if identity is None or os.geteuid() == 0 or identity.is_current():
        return
    prefix = what + ": " if what else ""
    if identity.uid is not None and identity.uid != os.geteuid():
        raise error("%scannot switch to user %s: the daemon runs as uid %d, not root"
                    % (prefix, identity.name, os.geteuid()))
    raise error("%scannot switch to group %s: the daemon runs as gid %d, not root"
                % (prefix, identity.gid, os.getegid()))


def drop_privileges(identity, paths=()):
    """The daemon's own drop: hand ``paths`` (the files it made) to ``identity``, then take it.

    Called once the daemon has done everything that needs root (bound its
    sockets, opened its log and pid files) and before ``setup()`` and any
    fork.  Modules the daemon may import later from a place only root can
    read (an interpreter under ``/root``) are imported first.

    :returns: True when the process changed identity.
    :raises ConfigError: not root, and ``identity`` is not the current one.
    :raises ProcessError: a ``chown`` or the switch itself failed.
    """
    if identity is None:
        return False
    check_switchable(identity)
    if identity.is_current() and (identity.uid is None or os.getuid() == identity.uid):
        return False
    uid = identity.uid if identity.uid is not None else -1
    for path in paths:
        try:
            os.chown(path, uid, identity.gid)
        except OSError as exc:
            raise ProcessError(exc.errno, "cannot hand %s to %s: %s"
                               % (path, identity.name, exc.strerror)) from None
    _resolve_prctl()
    import platform  # noqa: F401 - the fork server's clone() lookup imports it later
    try:
        return identity.switch()
    except OSError as exc:
        raise ProcessError(exc.errno, "cannot run as %s: %s" % (identity.name, exc.strerror)) from None


class Limit:
    """One resource limit: its ``name`` (``"nofile"``), ``resource`` number, ``soft`` and ``hard``."""

    __slots__ = ("name", "resource", "soft", "hard")

    def __init__(self, name, resource_id, soft, hard):
        self.name, self.resource, self.soft, self.hard = name, resource_id, soft, hard

    def __repr__(self):
        return "<Limit %s=%s>" % (self.name, _pair(self.soft, self.hard))


def parse_rlimits(rlimits, what, error=WorkerError):
    """Check an ``rlimits={"nofile": 4096, "core": (0, 0)}`` option; a tuple of :class:`Limit`.

    A value is an int (soft and hard alike) or a ``(soft, hard)`` pair; -1
    (``resource.RLIM_INFINITY``) or ``"unlimited"`` means no limit.

    :raises error: an unknown name, a value that is not one, soft above
        hard, or (not root) a hard limit above the current one, which the
        kernel would refuse; ``nofile`` above the kernel's ``fs.nr_open``.
    """
    if rlimits is None:
        return ()
    if not isinstance(rlimits, dict):
        raise error("%s: rlimits must be a dict like {\"nofile\": 4096}, got %r" % (what, rlimits))
    limits = []
    for name, value in rlimits.items():
        if not isinstance(name, str) or name.lower() not in RLIMIT_NAMES:
            raise error("%s: unknown rlimit %r (known: %s)"
                        % (what, name, ", ".join(sorted(RLIMIT_NAMES))))
        name = name.lower()
        soft, hard = _soft_hard(value, what, name, error)
        if _above(soft, hard):
            raise error("%s: rlimit %s: soft limit %s is above the hard limit %s"
                        % (what, name, _show(soft), _show(hard)))
        resource_id = RLIMIT_NAMES[name]
        limit = Limit(name, resource_id, soft, hard)
        if os.geteuid() != 0:
            check_limits([limit], what, error)
        elif name == "nofile":
            ceiling = _nr_open()
            if ceiling is not None and _above(hard, ceiling):
                raise error("%s: rlimit nofile: %s is above the kernel's fs.nr_open (%d)"
                            % (what, _show(hard), ceiling))
        limits.append(limit)
    return tuple(limits)


def check_limits(limits, what, error=WorkerError):
    """Raise ``error`` for a hard limit above the current one when this process
    is not root (the kernel would refuse to raise it)."""
    if os.geteuid() == 0:
        return
    for limit in limits:
        current = resource.getrlimit(limit.resource)[1]
        if _above(limit.hard, current):
            raise error("%s: rlimit %s: hard limit %s is above the current %s, which only "
                        "root may raise" % (what, limit.name, _show(limit.hard), _show(current)))


def _soft_hard(value, what, name, error):
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _one(value[0], what, name, error), _one(value[1], what, name, error)
    if isinstance(value, (list, tuple)):
        raise error("%s: rlimit %s: expected an int or a (soft, hard) pair, got %r" % (what, name, value))
    one = _one(value, what, name, error)
    return one, one


def _one(value, what, name, error):
    if isinstance(value, str) and value.lower() in ("unlimited", "infinity"):
        return _INFINITY
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and value != _INFINITY):
        raise error("%s: rlimit %s: expected an integer >= 0 or \"unlimited\", got %r"
                    % (what, name, value))
    return value


def _above(a, b):
    """``a > b`` where ``RLIM_INFINITY`` is above everything."""
    if a == _INFINITY:
        return b != _INFINITY
    return b != _INFINITY and a > b


def _show(value):
    return "unlimited" if value == _INFINITY else str(value)


def _pair(soft, hard):
    return _show(soft) if soft == hard else "(%s, %s)" % (_show(soft), _show(hard))


def _nr_open():
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


class ProcessSettings:
    """What a forked worker's process takes before it runs: limits, then identity.

    ``install()`` makes one per worker (``worker.process_settings``) from its
    ``user``, ``group`` and ``rlimits`` options, checked already.
    """

    __slots__ = ("identity", "limits")

    def __init__(self, identity=None, limits=()):
        self.identity = identity
        self.limits = tuple(limits)
        if identity is not None:
            _resolve_prctl()  # here, so that children need not import ctypes

    def __bool__(self):
        return self.identity is not None or bool(self.limits)

    def __repr__(self):
        return "<ProcessSettings %r %r>" % (self.identity, list(self.limits))


def apply_process_settings(settings, name):  # pragma: no cover - runs in forked children
    """In a forked worker, before ``spinup()``: set its limits, then take its identity.

    Every forked child of a worker calls it (a worker forked by the fork
    server, a standby once activated, an exec worker before ``exec``).  When
    the identity changed, the parent-death signal (cleared by the kernel on
    a change of credentials) is set again, and ``HOME``, ``USER`` and
    ``LOGNAME`` are the user's.

    :param settings: the worker's :class:`ProcessSettings`, or ``None``.
    :param name: the worker's name, for the error.
    :returns: True when the process changed identity.
    :raises WorkerError: the kernel refused a limit or the identity; the
        message names the worker and the limit.
    """
    if not settings:
        return False
    for limit in settings.limits:
        try:
            resource.setrlimit(limit.resource, (limit.soft, limit.hard))
        except (ValueError, OSError) as exc:
            raise WorkerError("worker %r: cannot set rlimit %s to %s: %s"
                              % (name, limit.name, _pair(limit.soft, limit.hard), exc)) from None
    identity = settings.identity
    if identity is None:
        return False
    try:
        switched = identity.switch()
    except OSError as exc:
        raise WorkerError("worker %r: cannot run as %s: %s" % (name, identity.name, exc.strerror)) from None
    if switched:
        _rearm_parent_death_signal()
        if identity.entry is not None:
            # What programs read to know who and where "home" is (ssh, git, pip...).
            os.environ.update(HOME=identity.entry.pw_dir, USER=identity.entry.pw_name,
                              LOGNAME=identity.entry.pw_name)
    return switched


#: libc's ``prctl``; ``None`` until looked up, ``False`` where there is none.
_prctl: Optional[Union[Literal[False], Callable[..., int]]] = None


def _resolve_prctl():
    """libc's ``prctl`` (Linux), or False where there is none."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    return _prctl


def _rearm_parent_death_signal():  # pragma: no cover - runs in forked children
    """``PR_SET_PDEATHSIG`` again: the kernel clears it when credentials change."""
    prctl = _resolve_prctl()
    if prctl:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
