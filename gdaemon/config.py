"""Daemon configuration: its keys, their defaults and checks (docs/reference/config.rst is generated from them).

:class:`Config` is built from the user's dict once, at ``Daemon(...)`` time;
an unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key.  Relative paths are resolved against ``basepath`` by
:meth:`Config.resolve`, which the daemon calls before daemonizing changes the
working directory.
"""

import os
import re
from types import MappingProxyType
from typing import Any, NamedTuple, Optional, Tuple, cast

from .errors import ConfigError
from .identity import check_name, resolve_identity
# Addresses are part of the wire, which the client shares; they are
# re-exported here, where the daemon's configuration has always offered them.
from .wire.address import SERVER_SCHEMES, Address, Scheme, is_loopback_ip, parse_address

__all__ = ["Config", "DEFAULTS", "SCHEMA", "Key", "parse_address", "Address", "is_loopback_ip", "slugify"]

_NUMBER = (int, float)
_OPT_STR = (str, type(None))


class Key(NamedTuple):
    """One configuration key: what the daemon accepts for it and what it means.

    The documentation's configuration reference is generated from these, so
    ``meaning`` is written for users (reStructuredText, one sentence or two).
    """

    #: The value a key takes when the user's dict leaves it out.
    default: Any
    #: The accepted Python types (``bool`` never counts as ``int``).
    types: Tuple[type, ...]
    #: The name of an extra check on the value (``"positive"``, ``"mode"``,
    #: ``"address"``...), or ``None``.
    check: Optional[str]
    #: What the key does, for the configuration reference.
    meaning: str


_SCHEMA = {
    "description": Key(
        "gdaemon", (str,), None,
        "Banner shown by the console and in ``daemon.status``; also names the "
        "daemon's logger (``gdaemon.<slug>``) and its process titles."),
    "sockethandler": Key(
        "unix://daemon.sock", (str,), "address",
        "The RPC socket: ``unix://PATH``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``."),
    "socketmode": Key(
        0o600, (int,), "mode",
        "File mode of the unix socket."),
    "socketbuffer": Key(
        1024, (int,), "positive",
        "Bytes read per ``recv``."),
    "socketmaxmessage": Key(
        1048576, (int,), "positive",
        "Largest request line accepted, in bytes; a longer one gets ``-32003`` "
        "and its connection is closed."),
    "sockettimeout": Key(
        2, _NUMBER, "positive",
        "Seconds allowed to receive the rest of a request once its first byte "
        "arrived (HTTP: its headers)."),
    "socketidle": Key(
        300, _NUMBER, "positive",
        "Seconds an idle connection is kept open (a connection subscribed to "
        "events is never idle)."),
    "socketmaxconnections": Key(
        64, (int,), "positive",
        "Concurrent connections per endpoint; beyond that a connection that has "
        "not authenticated is evicted, else the new one gets one ``-32004`` error "
        "line (HTTP 503) and is closed."),
    "socketmaxbatch": Key(
        1000, (int,), "positive",
        "Most requests in one batch; a longer batch gets one ``-32600`` error "
        "(id ``null``) naming the limit, and nothing of it runs."),
    "socketmaxreply": Key(
        16777216, (int,), "positive",
        "Largest reply in bytes: one response, or all responses of one batch; "
        "calls past it get ``-32003`` naming the limit."),
    "socketauthtimeout": Key(
        5, _NUMBER, "positive",
        "With ``token`` set, seconds a connection may stay open without "
        "authenticating; then it is closed."),
    "websockethandler": Key(
        None, _OPT_STR, "address",
        "``tcp://HOST:PORT`` of the HTTP and websocket endpoint (dashboard, "
        "``/rpc``, ``/RPC2``, ``/metrics``, ``/healthz``); ``None`` disables it."),
    "websocketorigins": Key(
        None, (list, tuple, type(None)), "strings",
        "Allowed ``Origin`` values for websocket upgrades; ``None``: the "
        "endpoint's own ``http://HOST:PORT`` (and ``https://`` with TLS)."),
    "token": Key(
        None, _OPT_STR, None,
        "Shared secret; when set, every connection must authenticate first "
        "(``system.auth``, or ``Authorization: Bearer`` over HTTP)."),
    "insecure": Key(
        False, (bool,), None,
        "Allow a TCP, websocket or pool ``listen=`` endpoint on a non-loopback "
        "address without ``token``."),
    "certfile": Key(
        None, _OPT_STR, None,
        "TLS certificate, required by ``tls://`` and used by the websocket "
        "endpoint when set."),
    "keyfile": Key(
        None, _OPT_STR, None,
        "TLS private key, required by ``tls://`` and used by the websocket "
        "endpoint when set."),
    "pidfile": Key(
        "daemon.pid", (str,), None,
        "Pid file, locked for the daemon's lifetime."),
    "logfile": Key(
        "daemon.log", (str,), None,
        "Log file in daemon mode (``-d``); foreground logs go to stderr."),
    "niceness": Key(
        0, (int,), "niceness",
        "Nice value the daemon runs at (absolute, not an increment)."),
    "umask": Key(
        0o022, (int,), "mode",
        "Umask in daemon mode."),
    "arguments": Key(
        None, _OPT_STR, None,
        "A docopt usage string replacing the default console (it must keep "
        "``-d`` and ``-f``); the parsed options are on ``daemon.arguments``."),
    "shutdowntimeout": Key(
        10, _NUMBER, "nonnegative",
        "Seconds workers get to spin down before SIGKILL."),
    "restartintensity": Key(
        5, (int,), "nonnegative",
        "Restarts of one worker allowed within ``restartperiod`` before each "
        "respawn waits (0.1 s doubling up to 30 s)."),
    "restartperiod": Key(
        10, _NUMBER, "positive",
        "Seconds over which ``restartintensity`` counts restarts; a worker up "
        "longer than that resets its count."),
    "workerlimit": Key(
        1024, (int,), "nonnegative",
        "Most worker instances one daemon runs; ``install()`` or "
        "``worker.scale`` past it is refused before anything is allocated."),
    "user": Key(
        None, (str, int, type(None)), "identity",
        "User (a name or a numeric id) the daemon runs as once it has bound its "
        "sockets and opened its log and pid files, which it hands to that user; "
        "started as root only, unless it names the current user."),
    "group": Key(
        None, (str, int, type(None)), "identity",
        "Group (a name or a numeric id) the daemon runs as with ``user``; "
        "``None``: that user's primary group.  The user's supplementary groups "
        "are set too."),
    "rssinterval": Key(
        1, _NUMBER, "positive",
        "Seconds between two readings of the resident memory of forked workers "
        "installed with ``maxrss``."),
    "upgradetimeout": Key(
        30, _NUMBER, "positive",
        "Seconds a new daemon gets to become ready during an upgrade "
        "(``daemon.upgrade``); past that the running daemon kills it and serves on."),
    "basepath": Key(
        None, _OPT_STR, None,
        "Directory relative paths resolve against; ``None``: the current "
        "directory at start-up (resolved before daemonizing changes directory)."),
}

#: The default of every configuration key.
DEFAULTS = {name: key.default for name, key in _SCHEMA.items()}

#: Every configuration key, as a read-only mapping of name to :class:`Key`.
SCHEMA = MappingProxyType(_SCHEMA)


def slugify(text):
    """``"Echo Daemon"`` -> ``"echo-daemon"`` (docs/reference/api.rst: the logger's name)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower())


class Config(dict):
    """The validated configuration: a dict with attribute access.

    :param values: the user's dict; missing keys take their default.
    :raises ConfigError: for an unknown key or a value of the wrong type.
    """

    def __init__(self, values=None):
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError("config must be a dict, got %s" % type(values).__name__)
        super().__init__(DEFAULTS)
        for key, value in values.items():
            self[key] = _check(key, value)
        if self.address.scheme is Scheme.TLS and not (self["certfile"] and self["keyfile"]):
            raise ConfigError("sockethandler: tls:// needs certfile and keyfile")
        self.identity  # an unknown user or group is an error now, naming it

    @property
    def identity(self):
        """The :class:`~gdaemon.identity.Identity` of ``user``/``group``, or ``None``.

        :raises ConfigError: an unknown user or group.
        """
        return resolve_identity(self["user"], self["group"])

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def resolve(self, basepath=None):
        """Make every relative path absolute against ``basepath``.

        ``basepath`` defaults to the ``basepath`` key, else the current
        directory.  Returns ``self``.
        """
        base = os.path.abspath(basepath or self["basepath"] or os.getcwd())
        self["basepath"] = base
        for key in ("pidfile", "logfile", "certfile", "keyfile"):
            if self[key]:
                self[key] = os.path.join(base, os.path.expanduser(self[key]))
        address = self.address
        if address.is_unix:
            self["sockethandler"] = "unix://" + os.path.join(base, os.path.expanduser(address.path))
        return self

    @property
    def address(self):
        """The parsed :class:`Address` of ``sockethandler``."""
        return parse_address(self["sockethandler"])

    @property
    def websocket_address(self):
        """The parsed :class:`Address` of ``websockethandler``, or ``None``."""
        if self["websockethandler"] is None:
            return None
        return parse_address(self["websockethandler"], "websockethandler", (Scheme.TCP,))


def _check(key: str, value: Any) -> Any:
    try:
        _default, types, extra, _meaning = _SCHEMA[key]
    except KeyError:
        raise ConfigError("unknown configuration key %r" % (key,)) from None
    # Booleans are ints to Python, never to us (docs/reference/config.rst).
    if isinstance(value, bool) and bool not in types:
        raise ConfigError("%s: expected %s, got a boolean" % (key, _type_names(types)))
    if not isinstance(value, types):
        raise ConfigError("%s: expected %s, got %s %r"
                          % (key, _type_names(types), type(value).__name__, value))
    value = cast(Any, value)  # one of the key's types: mypy only knows it is an object
    if value is None:
        return value
    if extra == "positive" and not value > 0:
        raise ConfigError("%s: must be positive, got %r" % (key, value))
    if extra == "nonnegative" and value < 0:
        raise ConfigError("%s: must not be negative, got %r" % (key, value))
    if extra == "mode" and not 0 <= value <= 0o777:
        raise ConfigError("%s: must be a file mode between 0 and 0o777, got %r" % (key, value))
    if extra == "niceness" and not -20 <= value <= 19:
        raise ConfigError("%s: must be between -20 and 19, got %r" % (key, value))
    if extra == "address":
        schemes = (Scheme.TCP,) if key == "websockethandler" else SERVER_SCHEMES
        parse_address(value, key, schemes)
    if extra == "identity":
        check_name(key, value, key)
    if extra == "strings":
        if not all(isinstance(item, str) for item in value):
            raise ConfigError("%s: expected a list of strings, got %r" % (key, value))
        value = list(value)
    return value


def _type_names(types):
    names = ["None" if t is type(None) else t.__name__ for t in types]
    return " or ".join(names)
