"""Starting instances: forked processes (with their channels) and greenlets.

The :class:`Spawner` is the worker manager's hands for everything that makes
or ends a child process: it prepares the daemon for forking, forks a child
with a new channel through the daemon's :class:`~gdaemon.forking.ForkRegistry`,
binds a process or greenlet to a :class:`~gdaemon.workers.handle.WorkerHandle`,
and keeps the table of unreaped children that every kill consults.

Per forked worker the daemon keeps two libev watchers and no greenlet: a
child watcher (libev reaps the process and calls back at once, no polling)
and an io watcher on the channel's doorbell for the messages the worker
writes.  A greenlet worker is its own greenlet plus a link callback.

Fork safety: the daemon freezes the garbage collector's view of its heap
before the first fork (``gc.freeze()``), so that its collections do not
dirty the pages it shares with its workers (copy-on-write).  What a child
does is in :mod:`gdaemon.workers.child`.
"""

import gc
import os
import signal
import sys
from typing import Optional

import gevent

from ..process import closing_at_once
from .channel import Channel
from .child import run_forked
from .exec import Program, is_exec
from .forkserver import ForkServer, supported as forkserver_supported
from .local import LocalLink, LocalStatus
from .runtime import WorkerRuntime
from .worker import WorkerStatus

__all__ = ["Spawner"]


class Spawner:
    """Forks, binds and signals the children of one manager.

    :param manager: the :class:`~gdaemon.workers.manager.WorkerManager`
        (its ``daemon``, ``forking``, ``logger``, ``watchdog``,
        ``channel_capacity`` and message callbacks are used).
    """

    def __init__(self, manager):
        self.manager = manager
        #: pid -> [handle, generation] of every unreaped child; [None, 0] for the standby.
        self.children = {}
        #: The :class:`~gdaemon.workers.forkserver.ForkServer` that forks
        #: children, or ``None`` where the daemon forks them itself.
        self.forkserver = None
        self._prctl = None
        self._prctl_resolved = False
        #: The daemon's short process name (``/proc/self/comm``), which its
        #: workers keep (Linux; read when the first child is forked).
        self.comm: Optional[bytes] = None
        self._prepared = False

    # -- forking ----------------------------------------------------------------

    def prepare(self):
        """In the daemon, before the first fork: freeze the heap for copy-on-write
        and resolve ``prctl`` (so children need not import ctypes)."""
        if self._prepared:
            return
        self._prepared = True
        # Only the youngest generation: what setup() left behind last.  A
        # full collection walks every object the imports made (7-20 ms on
        # the path to the first worker) and finds nothing to free: modules,
        # classes and functions are not garbage; the middle generation took
        # 2.5 ms on a slow day and found nothing either.
        gc.collect(0)
        gc.freeze()
        self.resolve_prctl()
        if sys.platform.startswith("linux"):
            try:
                with open("/proc/self/comm", "rb") as f:
                    self.comm = f.read().strip()[:15]
            except OSError:
                self.comm = None
        if self._prctl is not None and self.manager.use_forkserver and forkserver_supported():
            self.forkserver = ForkServer(self.manager, self._prctl)

    def resolve_prctl(self):
        """Import ctypes and find ``prctl()`` (Linux), once.

        A daemon with workers does it before it detaches (:meth:`WorkerManager.before_detaching
        <gdaemon.workers.manager.WorkerManager.before_detaching>`): while the
        ``-d`` launcher waits, the daemon copies every page an import touches
        (ctypes: 2-3 ms on the way to the first worker).
        """
        if self._prctl_resolved:
            return
        self._prctl_resolved = True
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                self.manager.logger.warning("prctl() unavailable: workers rely on getppid() "
                                            "checks only", exc_info=True)
            if self._prctl is not None and self.manager.use_forkserver and forkserver_supported():
                ForkServer.prepare()

    def stop_forkserver(self):
        """The daemon stops: let the fork server go."""
        if self.forkserver is not None:
            self.forkserver.retire()

    def fork_child(self, what, keep=(), worker=None, workers=None, streams=None):
        """A new child with a new channel: ``(channel, daemon end, pid, gate)`` in the daemon.

        The child runs :func:`~gdaemon.workers.child.run_forked` for
        ``worker`` (or, a standby, for whichever of ``workers`` it is told)
        and never returns.  Where a :class:`~gdaemon.workers.forkserver.ForkServer`
        can be used, it forks the child (this greenlet waits, the hub does
        not); the child's exit is watched (:meth:`watch`, with ``worker``'s
        handle) before it is let run (``gate``: see :meth:`started`).
        Elsewhere the daemon forks it here, and ``gate`` is ``None``.
        The channel's descriptors are registered on the fork registry first,
        so every later child closes them; the child keeps its own, and
        ``keep`` (its pool's listener).  With ``streams`` (an exec worker's
        stdout and stderr pipes) the child execs the worker's program.
        """
        self.prepare()
        if self.forkserver is not None:
            try:
                return self._fork_by_server(what, worker, workers, streams)
            except OSError:
                pass  # no fork server just now (it says why, once): fork here
        forking = self.manager.forking
        channel = Channel(self.manager.channel_capacity)
        try:
            self._reset_status(channel)
            for fd in channel.fds():
                forking.add_fd(fd, "channel of " + what)
            parent = os.getpid()
            prctl, comm, daemon = self._prctl, self.comm, self.manager.daemon
            pid = forking.fork(lambda: run_forked(daemon, channel, parent, prctl, comm=comm,
                                                  worker=worker, workers=workers, streams=streams),
                               what, keep=channel.fds() + list(keep) + list(streams or ()),
                               fresh_hub=streams is None)  # a program needs no hub
        except BaseException:
            self.close_channel(channel)
            raise
        self._take_daemon_end(channel, what)
        return channel, channel.daemon_end(), pid, None

    def _fork_by_server(self, what, worker, workers, streams=None):
        assert self.forkserver is not None  # the caller checked
        channel = Channel(self.manager.channel_capacity, shareable=True)
        try:
            self._reset_status(channel)
            for fd in channel.fds() + [channel.mapping_fd]:  # a fork server started now
                if fd is not None:                               # must not inherit them
                    self.manager.forking.add_fd(fd, "channel of " + what)
            pid, gate = self.forkserver.spawn(channel, "worker" if worker is not None else "standby",
                                              worker.name if worker is not None else "",
                                              extra_fds=streams or ())
        except BaseException:
            self.close_channel(channel)
            raise
        self._take_daemon_end(channel, what)
        return channel, channel.daemon_end(), pid, gate

    @staticmethod
    def _reset_status(channel):
        status = channel.status
        status.state = WorkerStatus.SPINUP
        status.loops = 0
        status.beat()

    def _take_daemon_end(self, channel, what):
        """Close the child's ends here; register the daemon's (later children close them)."""
        forking = self.manager.forking
        before = set(channel.fds())
        with closing_at_once():
            channel.daemon_end()  # closes the child's pipe ends (and the memfd) here
        for fd in before - set(channel.fds()):
            forking.discard_fd(fd)
        for fd in channel.fds():
            forking.add_fd(fd, "channel of " + what)

    def close_channel(self, channel):
        """Close a channel the daemon holds (no watcher on it any more)."""
        for fd in channel.fds() + [channel.mapping_fd]:
            if fd is not None:
                self.manager.forking.discard_fd(fd)
        with closing_at_once():
            channel.close()

    # -- instances --------------------------------------------------------------

    def spawn_process(self, handle):
        """Fork a new instance of ``handle`` (the standby is tried first by the caller)."""
        listener = handle.worker.listener
        keep = (listener.fileno(),) if listener is not None else ()
        generation = handle.generation
        if is_exec(handle.worker):
            self._spawn_program(handle, keep, generation)
            return
        channel, end, pid, gate = self.fork_child("worker %r" % handle.name, keep=keep,
                                                  worker=handle.worker)
        self.started(pid, gate, handle, generation)
        self.bind(handle, pid, channel, end)

    def _spawn_program(self, handle, keep, generation):
        """Fork an instance of an exec worker: its child execs the program, whose
        output goes to pipes the daemon reads (:mod:`gdaemon.workers.output`)."""
        manager = self.manager
        what = "worker %r" % handle.name
        program = Program(handle.worker, generation)
        streams = manager.output.open(program, manager.output_logger(handle.name), what)
        try:
            channel, end, pid, gate = self.fork_child(what, keep=keep, worker=handle.worker,
                                                      streams=streams)
        finally:
            manager.output.release(streams)
        program.pid = pid
        handle.program = program
        self.started(pid, gate, handle, generation)
        self.bind(handle, pid, channel, end)

    def fork_standby(self, workers, keep):
        """Fork a standby for ``workers``: ``(pid, channel, daemon end)``, watched already."""
        channel, end, pid, gate = self.fork_child("the standby", keep=keep, workers=workers)
        self.started(pid, gate, None, 0)
        return pid, channel, end

    def started(self, pid, gate, handle, generation):
        """Watch a new child's exit; then open its ``gate`` (a child of the fork
        server waits on it, so that no exit of it goes unseen)."""
        self.watch(pid, handle, generation)
        if gate is not None:
            assert self.forkserver is not None  # a gate comes from the fork server
            self.forkserver.open_gate(gate)

    def spawn_greenlet(self, handle):
        """Start a new instance of a greenlet worker."""
        manager = self.manager
        generation = handle.generation
        status = LocalStatus()
        link = LocalLink(lambda data: manager.on_message_bytes(handle, generation, data),
                         manager.channel_capacity)
        runtime = WorkerRuntime(handle.worker, link, status, cooperative=True)
        greenlet = gevent.spawn(runtime.run)
        greenlet.name = "greenlet worker %r" % handle.name  # in logs, e.g. a blocked hub
        greenlet.link(lambda g: manager.watchdog.greenlet_exited(handle, generation, g))
        handle.attach_greenlet(greenlet, status, link)

    def bind(self, handle, pid, channel, end):
        """Make (pid, channel) the current instance of ``handle``."""
        io = gevent.get_hub().loop.io(end.fileno(), 1)
        io.start(self.manager.on_readable, handle, handle.generation)
        handle.attach_process(pid, channel, end, io)

    def watch(self, pid, handle, generation):
        """Have libev reap ``pid`` and tell the watchdog; remember whose it is."""
        self.children[pid] = [handle, generation]
        watcher = gevent.get_hub().loop.child(pid, False)
        watcher.start(self.manager.watchdog.child_exited, watcher)

    def forget(self, pid):
        """``pid`` was reaped: its ``[handle, generation]`` (``None`` if not ours).

        A program's leftovers (its process group) are killed right here, at
        the reaping, before its id could be anybody else's.
        """
        owner = self.children.pop(pid, None)
        program = owner[0].program if owner is not None and owner[0] is not None else None
        if program is not None and program.pid == pid:
            program.ended()
        return owner

    # -- signalling ---------------------------------------------------------------

    def signal_child(self, pid, handle, signum):
        """Send ``signum`` to ``pid`` only while it is our unreaped child; True if sent.

        Between libev reaping a child and the watchdog handling its exit, the
        pid may already belong to another process: never signal it then.
        """
        owner = self.children.get(pid)
        if owner is None or owner[0] is not handle:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False  # a zombie being reaped
        return True

    def kill(self, handle):
        """SIGKILL the current instance (greenlet: kill it); the exit is reaped as usual."""
        if not handle.alive:
            return
        if handle.greenlet is not None:
            handle.greenlet.kill(block=False)
            return
        program = handle.program
        if program is not None and program.pid == handle.pid and handle.pid in self.children:
            program.signal(signal.SIGKILL)  # the program's whole process group
            return
        self.signal_child(handle.pid, handle, signal.SIGKILL)

    def owns_live_instance(self, handle):
        """True while ``handle``'s current instance runs (a process not reaped yet)."""
        if not handle.alive:
            return False
        if handle.greenlet is not None:
            return not handle.greenlet.dead
        owner = self.children.get(handle.pid)
        return owner is not None and owner[0] is handle and owner[1] == handle.generation
