"""TLS contexts for the ``tls://`` socket, the HTTPS endpoint and the client."""

import logging

from .errors import ConfigError

__all__ = ["server_context", "client_context", "BoundedHandshake"]

log = logging.getLogger("gdaemon.tls")


class BoundedHandshake:
    """Mixin for gevent servers: TLS handshakes bounded in time, quiet when they fail.

    gevent's own ``wrap_socket_and_handle`` waits for a handshake forever (a
    client that connects and says nothing holds a greenlet and a descriptor)
    and prints a traceback for every failed one.
    """

    #: Seconds a client has to complete the TLS handshake.
    handshake_timeout = 2.0

    def wrap_socket_and_handle(self, client_socket, address):
        client_socket.settimeout(self.handshake_timeout)
        try:
            ssl_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            log.debug("TLS handshake with %s failed: %s", address, exc)
            client_socket.close()
            return None
        try:
            return self.handle(ssl_socket, address)
        finally:
            ssl_socket.close()


def server_context(certfile, keyfile):
    """A server-side context with modern defaults; ConfigError names a bad file."""
    import ssl  # only TLS users pay for OpenSSL's memory
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("certfile/keyfile: cannot load %s / %s: %s" % (certfile, keyfile, exc)) from exc
    return context


def client_context(cafile=None):
    """A verifying client context; ``cafile`` adds a CA (e.g. a self-signed cert)."""
    import ssl
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
