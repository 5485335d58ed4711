"""gevent's hub internals, for forked children.

What is used, and why:

- ``gevent._hub_local.get_hub_if_exists``, ``set_hub(None)`` and
  ``set_loop(None)``: a forked worker must start on a fresh default hub and
  loop, never switching into the daemon's hub again (``Hub.destroy()``
  switches into it, and its loop would then run the daemon's pending
  greenlets in the child).  gevent has no public call that forgets the
  thread's hub without switching to it.  Used by
  :func:`gdaemon.forking.abandon_hub`.
- ``loop.child(0, ...)`` on the default loop: libev's catch-all child
  watcher (pid 0 matches any child), which reaps children that nobody else
  watches, so that they never linger as zombies.  Used by
  :class:`gdaemon.events.SignalRouter`.  This is libev's behaviour (the
  default loop implementation on Linux; libuv's loop has no pid 0 watcher,
  and the router installs it only on a loop that says it is the default).

The check at import: gevent within the supported range, and the names above
present; otherwise a one-line :class:`ImportError`.
"""

from gevent import _hub_local

from . import missing
from ._gevent import VERSION

__all__ = ["existing_hub", "forget_hub", "watch_any_child"]

_NEEDED = ("get_hub_if_exists", "set_hub", "set_loop")
_absent = ["gevent._hub_local." + name for name in _NEEDED if not hasattr(_hub_local, name)]
if _absent:
    raise missing("gevent", VERSION, _absent)


def existing_hub():
    """This thread's hub if one was created, else ``None`` (never creates one)."""
    return _hub_local.get_hub_if_exists()


def forget_hub():
    """Make gevent forget this thread's hub and loop, so the next gevent call creates new ones."""
    # None clears them (gevent's own use); its stubs accept only a hub and a loop.
    _hub_local.set_hub(None)  # type: ignore[arg-type]
    _hub_local.set_loop(None)  # type: ignore[arg-type]


def watch_any_child(loop, callback):
    """Start a watcher on ``loop`` for the exit of any child (libev's pid 0), or return ``None``.

    Only the default loop gets children's exits; on another loop nothing is
    started.  The watcher holds no reference to the loop (``ref=False``):
    it never keeps the hub alive.  Stop it with ``watcher.stop()``.
    """
    if not getattr(loop, "default", False):
        return None
    watcher = loop.child(0, False, ref=False)
    watcher.start(callback)
    return watcher
