"""systemd's notify protocol (docs/howto/systemd.rst), without libsystemd.

``NOTIFY_SOCKET`` names a datagram socket (a leading ``@`` means Linux's
abstract namespace); each state is one datagram such as ``READY=1``.
"""

import logging
import os
import socket

import gevent

from .process import close_fd

__all__ = ["Notifier"]

log = logging.getLogger("gdaemon.systemd")


class Notifier:
    """Sends state changes to systemd when ``NOTIFY_SOCKET`` is set; else does nothing."""

    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        usec = environ.get("WATCHDOG_USEC")
        try:
            self.watchdog_interval = int(usec) / 2e6 if usec else None
        except ValueError:
            self.watchdog_interval = None
        if self.watchdog_interval is not None and self.watchdog_interval <= 0:
            self.watchdog_interval = None
        self._sock = None
        self._watchdog = None

    @property
    def enabled(self):
        return self.address is not None

    def notify(self, state):
        """Send ``state`` (e.g. ``"READY=1"``); errors are logged, never raised."""
        address = self.address
        if address is None:  # not enabled
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode(), address)
        except OSError:
            log.warning("cannot notify systemd (%s)", state, exc_info=True)

    def start_watchdog(self):
        """Send ``WATCHDOG=1`` every half of ``WATCHDOG_USEC`` until :meth:`close`."""
        if self.enabled and self.watchdog_interval and self._watchdog is None:
            self._watchdog = gevent.spawn(self._watchdog_loop)

    def _watchdog_loop(self):
        interval = self.watchdog_interval
        assert interval is not None  # started only with an interval
        while True:
            self.notify("WATCHDOG=1")
            gevent.sleep(interval)

    def close_in_child(self):
        """In a forked child: drop the socket without touching the daemon's notifications."""
        if self._sock is not None:
            close_fd(self._sock.detach())
            self._sock = None
        self._watchdog = None
        self.address = None

    def close(self):
        if self._watchdog is not None:
            self._watchdog.kill(block=False)
            self._watchdog = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
