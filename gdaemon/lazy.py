"""Cheap imports: names imported at their first use, imports without the collector.

``gdaemon`` and ``gdaemon.workers`` export their API at first use (PEP 562):
``gdaemon-ctl`` imports ``gdaemon`` without the daemon or gevent, and a
daemon without workers never imports the worker layer.  Those imports, and
the console scripts' own, run with the cyclic garbage collector paused
(:class:`collector_paused`).  Nothing here imports ``typing``.
"""

import gc
import importlib

__all__ = ["lazy_exports", "collector_paused"]


class collector_paused:
    """``with collector_paused():`` runs its body, an import, without the
    cyclic garbage collector, and counts the objects it made as old ones.

    An import makes tens of thousands of objects that live as long as the
    program (modules, classes, functions) and almost no garbage: importing
    the daemon side (gevent, orjson, blinker, logging and gdaemon) ran the
    collector 33 times, for 8-12 ms of a ``-d`` start-up of about 120 ms,
    and it freed about 800 objects.  At the end the young objects join the
    oldest generation at once (``gc.freeze()`` then ``gc.unfreeze()``, which
    moves lists without scanning them): otherwise the first allocation
    afterwards would scan them all in one young collection (7-15 ms).  Full
    collections still see them, as they would have after they survived two
    younger ones.  A nested use leaves the work to the outer one; a program
    that froze objects itself keeps them frozen (the collector is only
    resumed then).
    """

    __slots__ = ("resumes",)

    def __enter__(self):
        self.resumes = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc_info):
        if self.resumes:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
        return False


def lazy_exports(package, table, namespace):
    """``(__getattr__, __dir__)`` for the module ``package`` whose globals are
    ``namespace``: a name of ``table`` (name -> module, absolute or relative
    to ``package``) is imported at its first lookup, then kept in
    ``namespace`` so that later lookups are plain global reads."""

    def __getattr__(name):
        module = table.get(name)
        if module is None:
            raise AttributeError("module %r has no attribute %r" % (package, name))
        with collector_paused():
            value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
