"""Zero-downtime upgrade: a running daemon starts its successor and hands over.

``daemon.upgrade`` (RPC), ``gdaemon-ctl upgrade`` or the console's
``--upgrade``::

    old: frees one byte of its pid file lock, starts its own command line again
         (sys.executable + sys.argv, its first working directory and
         environment) with every listening socket passed as an inherited
         descriptor (GDAEMON_FDS, see gdaemon.inherited) and a pipe
    new: adopts the sockets, locks that byte, runs setup(), starts its workers;
         once every one is LOOPING writes "OK" on the pipe (under systemd it
         first sends MAINPID=<pid> and READY=1)
    old: answers true, stops accepting (socket files stay), finishes the
         requests it serves, spins its workers down, unlocks the pid file
         (not removed) and exits 0
    new: locks the whole pid file and writes its pid

Connections arriving meanwhile wait in the sockets' backlogs, which both
daemons share: none is refused.  If new exits, reports an error, or is not
ready within ``upgradetimeout`` seconds, old kills it, takes its byte back,
logs why on one line and answers ``-32010`` with the reason; it never stopped
serving.

The successor learns it is one from the environment: ``GDAEMON_UPGRADE_FD``
(the pipe), ``GDAEMON_UPGRADE_PID`` (the daemon it replaces) and
``GDAEMON_UPGRADES`` (upgrades so far); all are removed once read.
"""

import errno
import os
import signal
import sys
import time
from typing import Any, Optional

import gevent
import gevent.socket

from . import inherited
from .errors import RpcError
from .process import close_fd

__all__ = ["UpgradeFailed", "Upgrade", "Successor", "upgrading", "request_upgrade", "UPGRADE_FAILED"]

#: The error code of a refused or failed upgrade.
UPGRADE_FAILED = -32010

ENV_READY = "GDAEMON_UPGRADE_FD"
ENV_REPLACES = "GDAEMON_UPGRADE_PID"
ENV_UPGRADES = "GDAEMON_UPGRADES"

#: What an upgrade asked of PID 1 answers.
PID1_REFUSAL = "PID 1 cannot hand over; let the orchestrator roll the pod"

#: Variables of the first environment a successor must not see again.
_NOT_PASSED = {inherited.ENV_FDS, inherited.ENV_KEEP, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", ENV_READY, ENV_REPLACES,
               ENV_UPGRADES}


class UpgradeFailed(RpcError):
    """``-32010``: the daemon could not be replaced (the reason is the message)."""

    code = UPGRADE_FAILED
    default_message = "upgrade failed"


def upgrading(environ=None):
    """True in a daemon started by the one it replaces."""
    return ENV_READY in (os.environ if environ is None else environ)


class Successor:
    """What a new daemon knows of the upgrade that started it."""

    def __init__(self, ready_fd, replaces, upgrades):
        #: The pipe "OK" or "ERR reason" is written to.
        self.ready_fd = ready_fd
        #: The pid of the daemon it replaces.
        self.replaces = replaces
        #: Upgrades this line of daemons went through, this one included.
        self.upgrades = upgrades

    @classmethod
    def from_environ(cls, environ=None):
        environ = os.environ if environ is None else environ
        try:
            ready_fd = int(environ.pop(ENV_READY))
            replaces = int(environ.pop(ENV_REPLACES, "0")) or None
            upgrades = int(environ.pop(ENV_UPGRADES, "1"))
        except (KeyError, ValueError):
            raise UpgradeFailed("bad upgrade environment") from None
        os.set_inheritable(ready_fd, False)
        return cls(ready_fd, replaces, upgrades)


class Upgrade:
    """The old daemon's side of one upgrade.

    :param daemon: the running :class:`~gdaemon.daemon.Daemon`.
    :param sockets: ``[(name, socket)]``: every listening socket it holds.
    """

    #: Seconds between two looks at whether a killed successor is gone.
    poll = 0.02

    def __init__(self, daemon, sockets):
        self.daemon = daemon
        self.sockets = sockets
        self.process: Optional[Any] = None

    def run(self):
        """Start the successor and wait for its word.

        :returns: the successor's pid once it is ready.
        :raises UpgradeFailed: with the reason (the successor is gone then).
        """
        daemon = self.daemon
        timeout = daemon.config["upgradetimeout"]
        read_end, write_end = os.pipe()
        # Workers or a standby forked meanwhile must not hold the pipe open.
        daemon.forking.add_fd(read_end, "upgrade pipe (read end)")
        daemon.forking.add_fd(write_end, "upgrade pipe (write end)")
        env = {key: value for key, value in daemon.launch_environ.items() if key not in _NOT_PASSED}
        env[inherited.ENV_FDS] = inherited.format_fds([(name, sock.fileno()) for name, sock in self.sockets])
        kept = daemon.unowned_socket_names()
        if kept:
            env[inherited.ENV_KEEP] = ",".join(kept)
        env[ENV_READY] = str(write_end)
        env[ENV_REPLACES] = str(os.getpid())
        env[ENV_UPGRADES] = str(daemon.upgrades + 1)
        argv = [sys.executable] + list(daemon.launch_argv)
        pidfile = daemon._pidfile
        pidfile.open_handover()
        try:
            try:
                # Imported here: every daemon would pay 5 ms and its memory for a rare call.
                from gevent import subprocess

                self.process = subprocess.Popen(
                    argv, cwd=daemon.launch_cwd, env=env, close_fds=True,
                    pass_fds=[write_end] + [sock.fileno() for _, sock in self.sockets])
            except OSError as exc:
                raise UpgradeFailed("cannot start %s: %s" % (argv[0], exc.strerror or exc)) from None
            finally:
                daemon.forking.discard_fd(write_end)
                close_fd(write_end)
            word = self._read_word(read_end, timeout)
            if word == "OK":
                return self.process.pid
            self._kill()
            raise UpgradeFailed(word)
        except BaseException:
            self._kill()
            pidfile.cancel_handover()
            raise
        finally:
            daemon.forking.discard_fd(read_end)
            close_fd(read_end)

    def _read_word(self, fd, timeout):
        """``"OK"``, or the reason the successor is not ready."""
        process = self.process
        assert process is not None  # the new daemon whose word is read
        os.set_blocking(fd, False)
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "the new daemon (pid %d) was not ready within %gs (upgradetimeout)" % (
                    process.pid, timeout)
            try:
                gevent.socket.wait_read(fd, timeout=remaining)
            except gevent.socket.timeout:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                raise
            if data:
                chunks.append(data)
                continue
            message = b"".join(chunks).decode("utf-8", "replace")
            if message == "OK":
                return message
            if message.startswith("ERR "):
                return "the new daemon could not start: %s" % message[4:]
            from gevent import subprocess  # already imported by the Popen that started it

            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return "the new daemon (pid %d) closed its pipe without a word" % process.pid
            return "the new daemon (pid %d) exited during start-up (%s)" % (process.pid, _describe(code))

    def _kill(self):
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a child that will not die: nothing more to do
            self.daemon.logger.warning("the new daemon (pid %d) did not die", proc.pid)


def _describe(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


def request_upgrade(config, out=None, err=None):
    """The console's ``--upgrade``: ask the daemon of ``config`` to replace itself.

    Prints the pids and returns 0 once the new daemon owns the pid file, else
    prints the reason and returns 1 (3: no daemon runs).
    """
    from . import process
    from .client import Client
    from .errors import GDaemonError
    out = out or sys.stdout
    err = err or sys.stderr
    description = config["description"]
    owner = process.pidfile_owner(config["pidfile"])
    if not owner:
        err.write("error: %s is not running\n" % description)
        return 3
    allowed = config["upgradetimeout"] + config["shutdowntimeout"] + 10
    try:
        with Client(config["sockethandler"], token=config["token"], timeout=allowed,
                    cafile=config["certfile"] if config.address.scheme == "tls" else None) as client:
            client.call("daemon.upgrade")
    except RpcError as exc:
        message = exc.message
        if exc.code == -32001:
            message = ("the daemon requires a token and this command has %s: start it with the "
                       "daemon's token (gdaemon-echo reads GDAEMON_TOKEN), or use gdaemon-ctl -t TOKEN upgrade"
                       % ("another one" if config["token"] else "none"))
        err.write("error: upgrade failed: %s\n" % message)
        return 1
    except (GDaemonError, OSError) as exc:
        err.write("error: cannot ask %s (pid %s) to upgrade: %s\n" % (description, owner, exc))
        return 1
    from .console import process_alive
    deadline = time.monotonic() + allowed
    while time.monotonic() < deadline:
        now = process.pidfile_owner(config["pidfile"])
        if now and now != owner and not process_alive(owner) and process.read_pid(config["pidfile"]) == now:
            out.write("%s upgraded: pid %d replaced pid %d\n" % (description, now, owner))
            return 0
        time.sleep(0.02)
    err.write("error: %s (pid %s) accepted the upgrade but still owns its pid file after %gs\n"
              % (description, owner, allowed))
    return 1
