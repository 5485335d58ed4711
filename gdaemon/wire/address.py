"""Endpoint addresses: ``unix://PATH``, ``tcp://HOST:PORT``, ``tls://HOST:PORT``, ``ws[s]://HOST:PORT/PATH``.

The daemon parses its ``sockethandler`` and ``websockethandler`` here (the
first three schemes), the client its target (all five).  Parsing does no I/O;
:meth:`Address.resolve` and :attr:`Address.is_loopback` look the host up.
A malformed address raises :class:`~gdaemon.errors.ConfigError` naming the
configuration key (or ``address`` for a client), never a bare ``ValueError``.
"""

import enum
import socket

from ..errors import ConfigError

__all__ = ["Address", "Scheme", "parse_address", "is_loopback_ip", "SERVER_SCHEMES", "CLIENT_SCHEMES"]


class Scheme(str, enum.Enum):
    """How an endpoint is reached.

    Members compare equal to their lower-case names (``Scheme.UNIX == "unix"``)
    and print as them, so an address still formats as ``unix://PATH``.
    """

    UNIX = "unix"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def is_tls(self):
        """True when the stream is encrypted (``tls``, ``wss``)."""
        return self in (Scheme.TLS, Scheme.WSS)

    @property
    def is_websocket(self):
        """True for the websocket endpoint of docs/reference/http.rst (``ws``, ``wss``)."""
        return self in (Scheme.WS, Scheme.WSS)

    def __str__(self):
        return self.value


#: What a daemon serves on (``sockethandler``).
SERVER_SCHEMES = (Scheme.UNIX, Scheme.TCP, Scheme.TLS)
#: What a client connects to.
CLIENT_SCHEMES = tuple(Scheme)


class Address:
    """A parsed endpoint address.

    :ivar scheme: a :class:`Scheme`.
    :ivar path: the socket file (unix), the request path (websocket), else ``None``.
    :ivar host: the host name or IP address text (not unix).
    :ivar port: the port number (not unix).
    """

    __slots__ = ("scheme", "path", "host", "port")

    def __init__(self, scheme, path=None, host=None, port=None):
        self.scheme, self.path, self.host, self.port = Scheme(scheme), path, host, port

    @property
    def is_unix(self):
        return self.scheme is Scheme.UNIX

    @property
    def is_loopback(self):
        """True for unix sockets and TCP hosts that resolve to loopback addresses only.

        Decided on the resolved IP addresses (:meth:`resolve`), never on the
        spelling: ``127.attacker.example`` is whatever its DNS says, and a
        host that does not resolve is not loopback.  Every address the name
        resolves to must be loopback, since the listener binds one of them.
        """
        if self.is_unix:
            return True
        try:
            addresses = self.resolve()
        except OSError:
            return False
        return bool(addresses) and all(is_loopback_ip(ip) for ip in addresses)

    def resolve(self):
        """The IP addresses (:mod:`ipaddress` objects) a TCP host stands for.

        A literal address is parsed without any lookup; a name goes through
        :func:`socket.getaddrinfo` (``/etc/hosts``, then DNS).

        :raises OSError: (``socket.gaierror``) when the name does not resolve.
        """
        if self.is_unix:
            return []
        import ipaddress  # TCP addresses only: 1-2 ms of start-up a unix socket need not pay
        host = self.host or ""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        infos = socket.getaddrinfo(host, self.port, 0, socket.SOCK_STREAM)
        found = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone
                if ip not in found:
                    found.append(ip)
        return found

    def __str__(self):
        if self.is_unix:
            return "unix://%s" % self.path
        host = "[%s]" % self.host if ":" in self.host else self.host
        text = "%s://%s:%d" % (self.scheme, host, self.port)
        return text + self.path if self.scheme.is_websocket else text

    __repr__ = __str__


def is_loopback_ip(ip):
    """True for a loopback :mod:`ipaddress` address, IPv4-mapped ones included."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def parse_address(text, key="sockethandler", schemes=SERVER_SCHEMES):
    """Parse an endpoint string into an :class:`Address`.

    :param key: the configuration key (or ``address``) error messages name.
    :param schemes: the schemes accepted here (names or :class:`Scheme` members).
    :raises ConfigError: malformed, or a scheme not in ``schemes``.
    """
    if not isinstance(text, str) or "://" not in text:
        raise ConfigError("%s: expected SCHEME://ADDRESS, got %r" % (key, text))
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme not in schemes:
        raise ConfigError("%s: scheme must be one of %s, got %r"
                          % (key, ", ".join(map(str, schemes)), scheme))
    scheme = Scheme(scheme)
    if scheme is Scheme.UNIX:
        if not rest:
            raise ConfigError("%s: empty unix socket path" % key)
        return Address(scheme, path=rest)
    from urllib.parse import urlsplit  # not for a unix socket (see resolve)
    parts = urlsplit("//" + rest)
    try:
        port = parts.port
        if port is None and scheme.is_websocket:
            port = 443 if scheme is Scheme.WSS else 80
    except ValueError:  # spelled, but not a port number
        port = None
    if scheme.is_websocket:
        if not parts.hostname or port is None:
            raise ConfigError("%s: expected %s://HOST:PORT/PATH, got %r" % (key, scheme, text))
        path = (parts.path or "/rpc") + ("?" + parts.query if parts.query else "")
        return Address(scheme, path=path, host=parts.hostname, port=port)
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError("%s: expected %s://HOST:PORT, got %r" % (key, scheme, text))
    return Address(scheme, host=parts.hostname, port=port)

