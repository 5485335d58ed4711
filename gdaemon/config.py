"""Daemon configuration: the keys of SPEC section 3, their defaults and checks.

:class:`Config` is built from the user's dict once, at ``Daemon(...)`` time;
an unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key.  Relative paths are resolved against ``basepath`` by
:meth:`Config.resolve`, which the daemon calls before daemonizing changes the
working directory.
"""

import os
import re

from .errors import ConfigError
# Addresses are part of the wire, which the client shares; they are
# re-exported here, where the daemon's configuration has always offered them.
from .wire.address import SERVER_SCHEMES, Address, Scheme, is_loopback_ip, parse_address

__all__ = ["Config", "DEFAULTS", "parse_address", "Address", "is_loopback_ip", "slugify"]

_NUMBER = (int, float)
_OPT_STR = (str, type(None))

# key: (default, accepted types, extra check or None)
_SCHEMA = {
    "description": ("gdaemon", (str,), None),
    "sockethandler": ("unix://daemon.sock", (str,), "address"),
    "socketmode": (0o600, (int,), "mode"),
    "socketbuffer": (1024, (int,), "positive"),
    "socketmaxmessage": (1048576, (int,), "positive"),
    "sockettimeout": (2, _NUMBER, "positive"),
    "socketidle": (300, _NUMBER, "positive"),
    "socketmaxconnections": (64, (int,), "positive"),
    "socketmaxbatch": (1000, (int,), "positive"),
    "socketmaxreply": (16777216, (int,), "positive"),
    "socketauthtimeout": (5, _NUMBER, "positive"),
    "websockethandler": (None, _OPT_STR, "address"),
    "websocketorigins": (None, (list, tuple, type(None)), "strings"),
    "token": (None, _OPT_STR, None),
    "insecure": (False, (bool,), None),
    "certfile": (None, _OPT_STR, None),
    "keyfile": (None, _OPT_STR, None),
    "pidfile": ("daemon.pid", (str,), None),
    "logfile": ("daemon.log", (str,), None),
    "niceness": (0, (int,), "niceness"),
    "umask": (0o022, (int,), "mode"),
    "arguments": (None, _OPT_STR, None),
    "shutdowntimeout": (10, _NUMBER, "nonnegative"),
    "restartintensity": (5, (int,), "nonnegative"),
    "restartperiod": (10, _NUMBER, "positive"),
    "workerlimit": (1024, (int,), "nonnegative"),
    "basepath": (None, _OPT_STR, None),
}

#: The default of every configuration key.
DEFAULTS = {key: spec[0] for key, spec in _SCHEMA.items()}


def slugify(text):
    """``"Echo Daemon"`` -> ``"echo-daemon"`` (SPEC 2: the logger's name)."""
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


def _check(key, value):
    try:
        default, types, extra = _SCHEMA[key]
    except KeyError:
        raise ConfigError("unknown configuration key %r" % (key,)) from None
    # Booleans are ints to Python, never to us (SPEC 3).
    if isinstance(value, bool) and bool not in types:
        raise ConfigError("%s: expected %s, got a boolean" % (key, _type_names(types)))
    if not isinstance(value, types):
        raise ConfigError("%s: expected %s, got %s %r"
                          % (key, _type_names(types), type(value).__name__, value))
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
    if extra == "strings":
        if not all(isinstance(item, str) for item in value):
            raise ConfigError("%s: expected a list of strings, got %r" % (key, value))
        value = list(value)
    return value


def _type_names(types):
    names = ["None" if t is type(None) else t.__name__ for t in types]
    return " or ".join(names)
