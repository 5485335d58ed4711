"""The standard library's own functions, whether or not gevent patched them.

The daemon needs a few calls exactly as the standard library makes them
(a close that closes at once, a fork that is not gevent's
``fork_and_watch``, a thread gevent does not turn into a greenlet).
``gevent.monkey.get_original`` finds them after ``patch_all()``; but a
program that never imported ``gevent.monkey`` patched nothing, and code
that also runs without gevent (the client's unix sockets) must not import
it only to ask.  One helper for both cases, instead of a try/except copy
in each module.
"""

import sys

__all__ = ["original"]


def original(module, name):
    """``module.name`` as the standard library defines it (``original("os", "fork")``).

    Asks ``gevent.monkey`` when it is loaded (it may have patched the name,
    now or later: what this returns stays the original either way); else
    nothing patched it, and the name is looked up as it is.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    __import__(module)
    return getattr(sys.modules[module], name)
