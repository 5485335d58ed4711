"""TLS contexts for the ``tls://`` socket, the HTTPS endpoint and the client."""

from .errors import ConfigError

__all__ = ["server_context", "client_context"]

# The servers' bounded TLS handshakes are in gdaemon.rpc.endpoint (BoundedServer),
# with the admission they report their progress to.


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
