"""The default receivers of the daemon's POSIX signal events (docs/reference/events.rst, default listeners).

They are ordinary blinker receivers, connected by :func:`connect_defaults`;
disconnect one to change the daemon's behaviour, e.g.::

    daemon.events.signal("posix.sigterm").disconnect(gdaemon.listeners.stop_daemon)
"""

__all__ = ["stop_daemon", "reload_daemon", "reopen_logs", "reap_children", "DEFAULT_LISTENERS",
           "connect_defaults"]


def stop_daemon(daemon, **kw):
    """``posix.sigterm``, ``posix.sigint``: stop gracefully."""
    daemon.stop()


def reload_daemon(daemon, **kw):
    """``posix.sighup``: reopen the log file and restart the workers one at a time."""
    daemon.reload()


def reopen_logs(daemon, **kw):
    """``posix.sigusr1``: reopen the log file (after logrotate moved it)."""
    daemon.reopen_logs()


def reap_children(daemon, **kw):
    """``posix.sigchld``: reap exited children and wake the watchdog."""
    if daemon.workers_made:  # else no child of the daemon is a worker
        daemon.workers.wake()


#: event name -> default receivers.
DEFAULT_LISTENERS = {
    "posix.sigterm": (stop_daemon,),
    "posix.sigint": (stop_daemon,),
    "posix.sighup": (reload_daemon,),
    "posix.sigusr1": (reopen_logs,),
    "posix.sigchld": (reap_children,),
}


def connect_defaults(events):
    """Connect the default receivers on ``events`` (strongly: they are module functions)."""
    for name, receivers in DEFAULT_LISTENERS.items():
        for receiver in receivers:
            events.signal(name).connect(receiver, weak=False)
