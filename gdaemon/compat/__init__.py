"""Where gdaemon uses what its dependencies do not promise to keep.

gdaemon leans on a few private parts of gevent and gevent-websocket (the
hub's thread-local registry, pywsgi's handler hooks, the servers' accept
hook).  Each dependency's private API is used from one module here, whose
docstring lists what is used and why; each checks at import that the
installed version is one gdaemon was tested with, and that what it uses is
there, and otherwise fails at once with a one-line :class:`ImportError`
naming the version, instead of misbehaving later:

- :mod:`gdaemon.compat.gevent_hub`: dropping a forked child's hub, libev's
  catch-all child watcher;
- :mod:`gdaemon.compat.gevent_server`: the accept hook of gevent's servers;
- :mod:`gdaemon.compat.gevent_socket`: waiting for a socket gevent owns;
- :mod:`gdaemon.compat.pywsgi`: gevent's WSGI server and its request handler;
- :mod:`gdaemon.compat.geventwebsocket`: the websocket upgrade.

The supported ranges are those of ``install_requires`` in ``setup.cfg``;
``.ci/run`` runs the test suite against the lowest of them.
"""

__all__ = ["require", "version_tuple"]


def version_tuple(text):
    """``"22.10.2"`` -> ``(22, 10, 2)``; a pre-release suffix is dropped (``"26.9.0rc1"`` -> ``(26, 9, 0)``)."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def require(distribution, lowest, below, why, installed=None):
    """Check that the installed ``distribution`` is at least ``lowest`` and below ``below``.

    :param distribution: the name pip knows it by (``"gevent"``).
    :param lowest: the oldest version tested, e.g. ``"22.10.2"``.
    :param below: the first version not known to work (the next major), e.g. ``"27"``.
    :param why: what of it gdaemon relies on, for the message.
    :param installed: the version the package itself reports (``gevent.__version__``);
        without it, the installed distribution's metadata is read.  Prefer
        passing it: ``importlib.metadata`` costs every start-up some 20 ms
        and a megabyte (it imports ``email``, ``zipfile``, ``pathlib``).
    :returns: the installed version string.
    :raises ImportError: one line naming the installed version and the supported range.
    """
    if installed is None:
        from importlib import metadata
        try:
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            raise ImportError("gdaemon needs %s>=%s,<%s (%s), which is not installed"
                              % (distribution, lowest, below, why)) from None
    if not version_tuple(lowest) <= version_tuple(installed) < version_tuple(below):
        raise ImportError("gdaemon does not support %s %s: it needs %s>=%s,<%s (%s)"
                          % (distribution, installed, distribution, lowest, below, why))
    return installed


def missing(distribution, version, names):
    """The one-line ImportError for private names a supported version lacks."""
    return ImportError("gdaemon cannot use %s %s: it lacks %s" % (distribution, version, ", ".join(names)))
