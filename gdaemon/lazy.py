"""Names of a package imported at their first use (PEP 562).

``gdaemon`` and ``gdaemon.workers`` export their API this way: ``gdaemon-ctl``
imports ``gdaemon`` without the daemon or gevent, and a daemon without
workers never imports the worker layer.  Nothing here imports ``typing``.
"""

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package, table, namespace):
    """``(__getattr__, __dir__)`` for the module ``package`` whose globals are
    ``namespace``: a name of ``table`` (name -> module, absolute or relative
    to ``package``) is imported at its first lookup, then kept in
    ``namespace`` so that later lookups are plain global reads."""

    def __getattr__(name):
        module = table.get(name)
        if module is None:
            raise AttributeError("module %r has no attribute %r" % (package, name))
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
