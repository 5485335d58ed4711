"""The :class:`Daemon`: a small orchestrator wiring the parts of a daemon together.

Life of a daemon (``run_foreground`` / ``daemonize``)::

    lock pid file -> logging -> niceness -> signal handlers -> daemon.start
    -> bind (or adopt) the RPC socket(s) and pools' ``listen=`` -> drop to ``user``/``group``
    -> setup() -> serve -> start workers
    -> daemon.ready (READY=1) -> every worker LOOPING (-d returns)
    -> ... wait for stop ...
    -> daemon.stop (STOPPING=1) -> stop accepting -> stop workers
    -> close connections, remove the socket file -> release the pid file

Listening sockets passed by systemd (socket activation) or by the daemon
this one replaces (an upgrade) are adopted instead of bound
(:mod:`gdaemon.inherited`); the upgrade itself is :mod:`gdaemon.upgrade`.

The RPC server, the worker manager and the event bus are separate objects;
the daemon only sequences them.

Fork safety: everything the daemon opens that a forked child must not keep
is registered on ``daemon.forking`` (a :class:`~gdaemon.forking.ForkRegistry`)
as it is opened: the readiness pipe, the pid file, the RPC transports, the
systemd notifier, the signal watchers.  Every fork goes through it.

Hub monitoring: the daemon runs gevent's monitoring thread; a greenlet that
blocks the hub for longer than :attr:`Daemon.max_blocking_time` (a greenlet
worker calling an unpatched ``time.sleep``...) is logged by name, with where
it blocked, from that thread, since the hub itself cannot log anything then.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import gevent
from gevent.event import Event

from . import inherited, listeners, process
from .forking import ForkRegistry
from .logfiles import LogFormatter, reopen_file_handlers
from .config import Config, slugify
from .errors import GDaemonError
from .events import EventBus, SignalRouter
from .identity import drop_privileges
from .lazy import collector_paused
from .proctitle import set_title
from .logring import LogRing
from .readiness import StartupWatch
from .rpc.builtin import register_builtins, status_dict
from .rpc.methods import MethodRegistry
from .rpc.protocol import Engine, Subscribers
from .rpc.server import RpcServer
from .systemd import Notifier
from .workers.rpc import register as register_worker_methods

if TYPE_CHECKING:
    import socket

    from .hubmonitor import HubMonitor
    from .rpc.endpoint import Transport
    from .workers.manager import WorkerManager

__all__ = ["Daemon", "ExitCode"]

#: A receiver or any other function, returned as it was given by :meth:`Daemon.on`.
_F = TypeVar("_F", bound=Callable[..., Any])

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class ExitCode:
    """Exit statuses of a daemon process (docs/reference/console.rst)."""

    #: stopped by SIGTERM, SIGINT or ``daemon.stop``.
    OK = 0
    #: could not start, or a non-forever worker died.
    FAILURE = 1


class Daemon:
    """Base class of a gdaemon daemon; subclass it and implement :meth:`setup`.

    :param config: dict of configuration keys (docs/reference/config.rst).
    :param argv: command line for :meth:`init` (default ``sys.argv[1:]``).
    :raises ConfigError: for an unknown key or a value of the wrong type.
    """

    #: Seconds the hub may stay blocked by one greenlet before the daemon
    #: logs it (gevent's monitoring thread); ``None`` turns monitoring off.
    max_blocking_time: Optional[float] = 1.0

    def __init__(self, config: Optional[Mapping[str, Any]] = None,
                 argv: Optional[Sequence[str]] = None) -> None:
        self.config = Config(config).resolve()
        #: What every forked child closes or resets (see :mod:`gdaemon.forking`).
        self.forking = ForkRegistry()
        #: Forked workers forward their log records to :attr:`logring`.
        self.forward_logs = True
        self.argv = argv
        #: Options parsed from the command line by :meth:`init`.
        self.arguments: Dict[str, Any] = {}
        #: ``gdaemon.<slug of the description>``.
        self.logger = logging.getLogger("gdaemon." + slugify(self.config["description"]))
        #: The daemon's event bus (a blinker Namespace).
        self.events = EventBus(sender=self)
        #: The RPC method registry: ``@daemon.rpc.method(...)``.
        self.rpc = MethodRegistry()
        self.subscribers = Subscribers()
        #: Recent log lines of the daemon and its workers (:class:`~gdaemon.logring.LogRing`).
        self.logring = LogRing(self.events)
        self.engine = Engine(self.rpc, token=self.config["token"], injected={"daemon": self})
        register_builtins(self, self.engine, self.subscribers)
        self.events.add_tap(self.subscribers.publish)
        listeners.connect_defaults(self.events)
        # The worker layer is imported when daemon.workers is first used: a
        # daemon without workers starts without it (see the workers property).
        self._workers: Optional[WorkerManager] = None
        self._workers_started = False
        register_worker_methods(self.rpc, lambda: self.workers)
        #: Epoch seconds at which the daemon became ready, else ``None``.
        self.started_at: Optional[float] = None
        self.exitcode = ExitCode.OK
        self.verbose = False
        #: The endpoints serving RPC (the socket, the HTTP endpoint), once started.
        self.transports: List[Transport] = []
        self._stop_event: Optional[Event] = None
        self._stop_requested = False
        self._reloading = False
        self._reload_again = False
        self._router: Optional[SignalRouter] = None
        self._pidfile: Optional[process.PidFile] = None
        self._log_handler: Optional[logging.Handler] = None
        self._hub_monitor: Optional[HubMonitor] = None
        self._notifier = Notifier()
        self._exits_with_run = False
        self._ready_fd = None
        #: How this daemon was started, for the successor of an upgrade.
        self.launch_argv = list(sys.argv)
        self.launch_cwd = os.getcwd()
        self.launch_environ = dict(os.environ)
        #: Upgrades this line of daemons went through (``daemon.status``).
        self.upgrades = 0
        #: The pid of the daemon this one replaced, else ``None``.
        self.replaced_pid: Optional[int] = None
        self._successor = None
        self._upgrading = False
        self._handing_over = False
        self._owns_pidfile = False
        self._startup_watch: Optional[StartupWatch] = None

    # -- to override ----------------------------------------------------------

    def setup(self) -> None:
        """Register RPC methods and receivers; called once, before serving."""
        raise NotImplementedError("subclasses of Daemon implement setup()")

    # -- public API -----------------------------------------------------------

    def init(self, argv: Optional[Sequence[str]] = None) -> None:
        """Parse the command line (docs/reference/console.rst) and act on it; exits the process."""
        with collector_paused():
            from .console import Console
        if argv is None:
            argv = self.argv if self.argv is not None else sys.argv[1:]
        # The process ends with the daemon: signals arriving once it stopped
        # are ignored rather than restored to their deadly defaults.
        self._exits_with_run = True
        sys.exit(Console(self).main(argv))

    def on(self, name: str) -> Callable[[_F], _F]:
        """Decorator: connect the function to event ``name`` (held strongly)."""
        def decorate(fn: _F) -> _F:
            self.events.signal(name).connect(fn, weak=False)
            return fn
        return decorate

    def run_foreground(self) -> int:
        """Run in this process with its stdio; return the exit code."""
        return self._run(ready_fd=None, foreground=True)

    def daemonize(self) -> int:
        """Detach (double fork, setsid, umask, chdir('/'), stdio to /dev/null) and run.

        The calling process waits until the daemon serves, then exits 0 (or
        prints the reason it could not start and exits 1); the daemon
        process returns its exit code from here when it stops.  The launcher
        waits for the end of its pipe, so no other process may hold its
        write end: workers forked before the report close it (it is
        registered on :attr:`forking`).
        """
        self._import_before_detaching()
        ready_fd = process.detach(self.config["umask"])
        self.forking.add_fd(ready_fd, "readiness pipe of the -d launcher")
        process.redirect_stdio()
        return self._run(ready_fd=ready_fd, foreground=False)

    def _import_before_detaching(self):
        """Import now what the daemon would import right after detaching.

        The launcher keeps its memory until the daemon is ready, so an
        import in the daemon copies every page it touches (about 360 for
        ``pprint``, 3 ms); in the launcher it costs a third of that.
        """
        # gevent's hub resolves these settings when it is made (its loop
        # class, and pprint.saferepr for its error reports).
        gevent.config.loop, gevent.config.libev_backend, gevent.config.format_context  # noqa: B018
        if self.max_blocking_time:
            with collector_paused():
                from . import hubmonitor  # noqa: F401
        if self.workers_made:
            self.workers.before_detaching()

    def run_upgrade(self, foreground: bool) -> int:
        """Run as the successor of an upgrade (started by the daemon it replaces).

        Like :meth:`run_foreground` (``foreground``) or a detached daemon: the
        predecessor detached already, so this one only takes a detached
        daemon's umask and working directory.
        """
        from .forking import unblock_child_signals
        from .upgrade import Successor
        # Spawned from the predecessor's hub: let in what a daemon handles.
        unblock_child_signals()
        self._successor = successor = Successor.from_environ()
        self.upgrades = successor.upgrades
        self.replaced_pid = successor.replaces
        if not foreground:
            os.umask(self.config["umask"])
            os.chdir("/")
        self.forking.add_fd(successor.ready_fd, "readiness pipe of the upgrade")
        return self._run(ready_fd=successor.ready_fd, foreground=foreground)

    def upgrade(self) -> bool:
        """Replace this daemon by a new one started from the same command line,
        without refusing a connection; returns once the new one is ready and
        this one hands over (it then stops).

        :raises UpgradeFailed: ``-32010`` with the reason; this daemon serves on.
        """
        from .upgrade import PID1_REFUSAL, Upgrade, UpgradeFailed
        if os.getpid() == 1:
            raise UpgradeFailed(PID1_REFUSAL)
        if self._upgrading or self._handing_over:
            raise UpgradeFailed("an upgrade is in progress already")
        if not self.serving or self._pidfile is None:
            raise UpgradeFailed("the daemon is not serving (starting or stopping)")
        if not self._owns_pidfile:
            raise UpgradeFailed("the previous upgrade is not finished (the replaced daemon is still there)")
        self._upgrading = True
        try:
            pid = Upgrade(self, self.listening_sockets()).run()
        except UpgradeFailed as exc:
            self.logger.error("upgrade failed: %s", exc.message)
            raise
        finally:
            self._upgrading = False
        self.logger.info("upgrade: the new daemon (pid %d) is ready; handing over", pid)
        self._handing_over = True
        self.stop()
        return True

    @property
    def workers(self) -> WorkerManager:
        """The worker manager: ``daemon.workers.install(worker, ...)``.

        Made at first use, so that a daemon that never uses it starts
        without importing the worker layer; made once the daemon serves, it
        starts at once (a worker installed then is spawned then).
        """
        manager = self._workers
        if manager is None:
            with collector_paused():
                from .workers.manager import WorkerManager
            manager = self._workers = WorkerManager(self)
            if self._workers_started:
                manager.start()
        return manager

    @property
    def workers_made(self) -> bool:
        """True once :attr:`workers` was first used (before, there is no worker to
        start, stop, list or signal, and nothing of the worker layer is imported)."""
        return self._workers is not None

    def _worker_pools(self):
        return self._workers.pools() if self._workers is not None else {}

    def listening_sockets(self) -> List[Tuple[str, socket.socket]]:
        """``[(name, socket)]``: every listening socket the daemon holds (``rpc``,
        ``http``, ``pool:NAME``)."""
        from .rpc.server import RpcServer
        found = []
        for transport in self.transports:
            if transport.listener is not None:
                found.append(("rpc" if isinstance(transport, RpcServer) else "http", transport.listener))
        for name, pool in self._worker_pools().items():
            if pool.listener is not None:
                found.append(("pool:" + name, pool.listener))
        return found

    def unowned_socket_names(self) -> List[str]:
        """Names of the unix sockets whose files the daemon leaves in place at
        stop (systemd made them)."""
        from .rpc.server import RpcServer
        names = [("rpc" if isinstance(t, RpcServer) else "http") for t in self.transports
                 if t.address.is_unix and getattr(t, "_inode", None) is None]
        names += ["pool:" + name for name, pool in self._worker_pools().items()
                  if pool.listen is not None and pool.listen.scheme == "unix" and not pool.owns_file]
        return names

    def stop(self, exitcode: int = ExitCode.OK) -> None:
        """Request a graceful stop (from any greenlet or receiver); returns at once."""
        if exitcode:
            self.exitcode = exitcode
        self._stop_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    def reload(self) -> None:
        """Reload like SIGHUP; overlapping requests are coalesced into one more pass."""
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        gevent.spawn(self._reload_passes)

    def reload_workers(self) -> None:
        """What a reload does to the workers: restart them one at a time, in start
        order (``daemon.workers.reload()``).  Override it to do otherwise (the
        ``gdaemon`` command's daemon re-reads its file instead)."""
        if self.workers_made:
            self.workers.reload()

    def reopen_logs(self) -> None:
        """Reopen the log files (after logrotate moved them away), here and in every
        forked worker; a standby process is replaced by one that has the new file."""
        reopen_file_handlers()
        if self.workers_made:
            self.workers.reopen_logs()

    def status(self) -> Dict[str, Any]:
        """The ``daemon.status`` dict."""
        return status_dict(self)

    @property
    def serving(self) -> bool:
        """True from ``daemon.ready`` until a stop is requested (``GET /healthz``)."""
        return self.started_at is not None and not self._stop_requested

    def connection_count(self) -> int:
        """Open RPC connections over every transport."""
        return sum(len(t.connections) for t in self.transports)

    # -- the run --------------------------------------------------------------

    def _run(self, ready_fd, foreground):
        cfg = self.config
        self._stop_event = Event()
        if self._stop_requested:
            self._stop_event.set()
        started = False
        self._ready_fd = ready_fd
        watch = None
        try:
            set_title(cfg["description"], "daemon")
            self._check_security()
            inherited.adopt_environ()
            if self._successor is not None:
                # The predecessor keeps its pid file until it is gone.
                self._pidfile = process.PidFile(cfg["pidfile"]).join()
                self._owns_pidfile = False
            else:
                self._pidfile = process.PidFile(cfg["pidfile"]).acquire()
                self._owns_pidfile = True
            self.forking.add_fd(self._pidfile.fd, "pid file")
            self._setup_logging(foreground)
            process.set_niceness(cfg["niceness"])
            self._router = router = SignalRouter(self.events)
            router.install()
            self.forking.add_closer(router.reset_in_child, "signal watchers")
            self.forking.add_closer(self._notifier.close_in_child, "systemd notifier")
            self.forking.add_closer(self._forget_subscribers, "event subscribers")
            self._monitor_hub()
            self.events.emit("daemon.start")
            self._bind_transports()
            if self.workers_made:
                self.workers.bind_listeners()
            self._drop_privileges()
            self.setup()
            if self.workers_made:
                self.workers.bind_listeners()  # those setup() installed
            inherited.check_all_taken()
            watch = self._startup_watch = StartupWatch(self)
            self._start_transports()
            self._workers_started = True
            if self.workers_made:
                self.workers.start()
            started = True
        except (GDaemonError, OSError) as exc:
            self._start_failed(str(exc), foreground)
        except Exception as exc:
            # A bug in setup() or a worker's install: one line, the traceback with -v.
            self._start_failed("%s: %s" % (type(exc).__name__, exc), foreground, exc_info=self.verbose)
        except BaseException as exc:
            self.logger.exception("cannot start")
            self._report_ready("%s: %s" % (type(exc).__name__, exc))
            self.exitcode = ExitCode.FAILURE
            self._shutdown(started)
            raise
        if started:
            self.started_at = time.time()
            self.logger.info("%s ready on %s (pid %d)", cfg["description"], cfg["sockethandler"], os.getpid())
            if foreground and self._successor is None:
                self._notifier.notify("READY=1")
                self._notifier.start_watchdog()
            self.events.emit("daemon.ready")
            gevent.spawn(self._announce_ready, watch)
            try:
                self._stop_event.wait()
            except KeyboardInterrupt:
                self.logger.info("interrupted")
        self._shutdown(started)
        return self.exitcode

    def _start_failed(self, reason, foreground, exc_info=False):
        self.logger.error("cannot start: %s", reason, exc_info=exc_info)
        if foreground and not isinstance(self._log_handler, logging.StreamHandler):
            sys.stderr.write("error: %s\n" % reason)
        self._report_ready(reason)
        self.exitcode = ExitCode.FAILURE

    def _announce_ready(self, watch):
        """Once every worker installed at start is LOOPING: tell whoever waits
        (the ``-d`` launcher, the daemon this one replaces); a worker that
        failed first makes the start fail when someone waits for it."""
        try:
            error = watch.wait()
        except Exception as exc:  # a bug here must not leave the launcher waiting
            self.logger.exception("cannot tell whether the start completed")
            error = "%s: %s" % (type(exc).__name__, exc)
        if self.workers_made:
            self.workers.started_up()
        if self._ready_fd is None:
            return  # -f: nobody waits; the workers are supervised as usual
        if error is not None:
            self.logger.error("cannot start: %s", error)
            self._report_ready(error)
            self.stop(ExitCode.FAILURE)
            return
        if self._successor is not None:
            # Before the predecessor exits (systemd allows it with NotifyAccess=all).
            self._notifier.notify("MAINPID=%d\nREADY=1" % os.getpid())
            self._notifier.start_watchdog()
        self._report_ready()
        if self._successor is not None:
            gevent.spawn(self._take_over_pidfile)

    def _take_over_pidfile(self):
        """The predecessor hands over: once it is gone, the pid file is ours."""
        while self._pidfile is not None and not self._stop_requested:
            try:
                if self._pidfile.take_over():
                    self._owns_pidfile = True
                    self.logger.info("took over from pid %s", self.replaced_pid)
                    return
            except OSError as exc:
                self.logger.error("cannot take the pid file over: %s", exc)
                return
            gevent.sleep(0.02)

    def _report_ready(self, error=None):
        """Tell whoever waits for this start (once): ready, or why not."""
        ready_fd, self._ready_fd = self._ready_fd, None
        if ready_fd is None:
            return
        self.forking.discard_fd(ready_fd)
        process.report_ready(ready_fd, error)

    def _forget_subscribers(self):
        """In a forked child: events there never reach the daemon's subscribers."""
        self.events.remove_tap(self.subscribers.publish)

    def _monitor_hub(self):
        """Start gevent's monitoring thread; log greenlets that block the hub."""
        if not self.max_blocking_time:
            return
        from .hubmonitor import HubMonitor
        self._hub_monitor = HubMonitor(self.logger, self.max_blocking_time)
        self._hub_monitor.start()

    def _check_security(self):
        cfg = self.config
        if cfg["token"] or cfg["insecure"]:
            return
        endpoints = [("sockethandler", cfg.address), ("websockethandler", cfg.websocket_address)]
        for key, address in endpoints:
            if address is not None and not address.is_loopback:
                raise GDaemonError(
                    "refusing to serve %s=%s on a non-loopback address without a token "
                    "(set 'token', or 'insecure': True)" % (key, address))

    def _drop_privileges(self):
        """With ``user``/``group`` set: hand the files the daemon made to that
        user, then become it (supplementary groups, group, user); from here
        on it cannot become root again."""
        identity = self.config.identity
        assert self._pidfile is not None  # locked before the privileges are dropped
        paths = [self._pidfile.path]
        if isinstance(self._log_handler, logging.FileHandler):
            paths.append(self._log_handler.baseFilename)
        if self.config.address.is_unix:
            paths.append(self.config.address.path)
        if self.workers_made:
            paths += self.workers.listener_paths()
        if drop_privileges(identity, paths):
            self.logger.info("running as %s (uid %d, gid %d)", identity.name, os.getuid(), os.getgid())

    def _bind_transports(self):
        """Open the RPC (and HTTP) listening sockets, before ``setup()``: the
        daemon may drop root right after."""
        cfg = self.config
        ssl_context = None
        if cfg.address.scheme == "tls":
            from .tls import server_context
            ssl_context = server_context(cfg["certfile"], cfg["keyfile"])
        server = RpcServer(cfg, self.engine, self.events, self.subscribers, ssl_context=ssl_context)
        server.bind()
        self.transports.append(server)
        if cfg["websockethandler"]:
            # Imported only when used: the websocket stack costs memory.
            from .rpc.http import HttpEndpoint
            endpoint = HttpEndpoint(self)
            endpoint.bind()
            self.transports.append(endpoint)
        for transport in self.transports:
            self.forking.add_closer(transport.close_in_child, "RPC transport %r" % (transport,))

    def _start_transports(self):
        for transport in self.transports:
            transport.start()

    def _reload_passes(self):
        try:
            while True:
                self._reload_again = False
                if self._stop_requested:
                    return
                self.logger.info("reloading")
                self._notifier.notify("RELOADING=1")
                self.events.emit("daemon.reload")
                self.reopen_logs()
                self.reload_workers()
                self._notifier.notify("READY=1")
                if not self._reload_again:
                    return
        finally:
            self._reloading = False

    def _shutdown(self, started):
        """Undo whatever :meth:`_run` did, in reverse order; never raises."""
        handing_over = self._handing_over
        if started:
            self.logger.info("handing over to the new daemon" if handing_over else "stopping")
            if not handing_over:  # the service goes on, under the new main pid
                self._notifier.notify("STOPPING=1")
            self.events.emit("daemon.stop")
        if self._ready_fd is not None:
            watch = self._startup_watch
            self._report_ready((watch.failure_at_stop() if watch is not None else None)
                               or "stopped during start-up")
        for transport in self.transports:
            transport.close_listener()
        if handing_over or not self._owns_pidfile:
            # The socket files are the new daemon's now; or, in a new daemon
            # that failed before it took over, still the old one's.
            for transport in self.transports:
                transport.keep_socket_file = True
            for pool in self._worker_pools().values():
                pool.owns_file = False
        self._workers_started = False
        try:
            if self.workers_made:
                self.workers.stop(timeout=self.config["shutdowntimeout"])
        except Exception:
            self.logger.exception("error while stopping workers")
        for transport in self.transports:
            try:
                transport.stop()
            except Exception:
                self.logger.exception("error while closing %r", transport)
        self.transports = []
        if self._router is not None:
            self._router.uninstall(ignore=self._exits_with_run)
            self._router = None
        if self._pidfile is not None:
            if self._pidfile.fd is not None:
                self.forking.discard_fd(self._pidfile.fd)
            # Handing over, the file stays for the successor; a successor
            # that never took it over leaves it to its predecessor.
            self._pidfile.release(unlink=self._owns_pidfile and not handing_over)
            self._pidfile = None
        if self._hub_monitor is not None:
            self._hub_monitor.stop()
            self._hub_monitor = None
        self._notifier.close()
        if started:
            self.logger.info("stopped (exit %d)", self.exitcode)
        if self._log_handler is not None:
            self._log_handler.flush()

    def _setup_logging(self, foreground):
        root = logging.getLogger()
        handler: logging.Handler
        if foreground:
            handler = logging.StreamHandler(sys.stderr)
        else:
            handler = logging.FileHandler(self.config["logfile"], mode="a", encoding="utf-8")
        handler.setFormatter(LogFormatter(LOG_FORMAT))  # one record, one line (docs/reference/rpc.rst, What one client can cost)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        self._log_handler = handler
        # The same lines in memory, for daemon.logtail and log.record events.
        self.logring.setFormatter(handler.formatter)
        self.logring.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        self.logring.attach(root)

    def __repr__(self):
        return "<%s %r on %s>" % (type(self).__name__, self.config["description"], self.config["sockethandler"])
