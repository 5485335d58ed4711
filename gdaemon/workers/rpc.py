"""The ``worker.*`` RPC methods (docs/reference/rpc.rst, Methods), registered by
every :class:`~gdaemon.daemon.Daemon` when it is made; they act on
``daemon.workers``, made at their first call if nothing made it before.

Each handler's docstring is what ``system.methodHelp`` returns for it.
Errors: ``-32002`` unknown worker, ``-32005`` worker unavailable (not
running, channel full now, no answer in time: retrying later may help),
``-32602`` for a payload or params that can never be delivered (larger than
the channel's largest message, which the message names, or nested too
deeply), and for ``worker.call`` whatever the worker's method raised
(``-32601`` when it has no such exposed method).
"""

import typing

from ..errors import ChannelClosed, ChannelFull, InvalidParams, WorkerUnavailable
from ..rpc.methods import RpcMethod
from ..signalnames import signal_number

__all__ = ["register"]

_OptionalName = ("name", typing.Optional[str], None)


def register(registry, workers):
    """Register the ``worker.*`` methods on ``registry``; ``workers()`` returns the
    :class:`~gdaemon.workers.manager.WorkerManager` they act on (called at each
    call: the daemon makes its manager at first use)."""

    def method(name, params=(), returns=None):
        def decorate(handler):
            registry.add(RpcMethod(name, handler, handler.__doc__ or "", list(params), returns))
            return handler
        return decorate

    def send(handle, command, payload=None):
        try:
            return handle.send(command, payload)
        except ValueError as exc:
            # Will never fit, or cannot be encoded: retrying cannot help (-32602),
            # unlike a full channel (-32005).
            raise InvalidParams("invalid param 'payload': %s" % (exc,)) from None
        except (ChannelFull, ChannelClosed) as exc:
            raise WorkerUnavailable(str(exc)) from None

    def command_all(name, command):
        """Send ``command`` to the named worker, or to every running one."""
        if name is not None:
            send(workers().get(name), command)
            return True
        from .exec import is_exec
        manager = workers()
        for handle in manager:
            if not handle.alive or is_exec(handle.worker):
                continue  # a program takes signals, not commands
            try:
                handle.send(command)
            except (ChannelFull, ChannelClosed) as exc:
                # Best effort for "all": the others still get it.
                manager.logger.warning("worker.%s: worker %r skipped: %s", command, handle.name, exc)
        return True

    @method("worker.list", returns=list)
    def list_workers():
        """Return the names of the installed workers."""
        return workers().names()

    @method("worker.status", [_OptionalName], returns=typing.Any)
    def status(name):
        """Return the status code of worker NAME (0 SPINUP, 1 LOOPING, 2 PAUSED,
        3 SPINDOWN, 4 RESTARTING, 5 STOPPED), or {name: code} of all workers."""
        if name is None:
            return workers().status_codes()
        return int(workers().get(name).status)

    @method("worker.info", [_OptionalName], returns=typing.Any)
    def info(name):
        """Return the details of worker NAME (name, kind, pid, status, status_name,
        looptime, forever, restarts, loops, started_at, last_exit, rss, cpu,
        recycles, recycle_reason), or a list of them for all workers."""
        if name is None:
            return [handle.info() for handle in workers()]
        return workers().get(name).info()

    @method("worker.pause", [_OptionalName], returns=bool)
    def pause(name):
        """Pause worker NAME (every running worker when omitted): its loop stops
        running until worker.resume (a respawned instance starts LOOPING)."""
        return command_all(name, "pause")

    @method("worker.resume", [_OptionalName], returns=bool)
    def resume(name):
        """Resume worker NAME (every running worker when omitted)."""
        return command_all(name, "resume")

    @method("worker.restart", [("name", str)], returns=bool)
    def restart(name):
        """Restart worker NAME gracefully (spindown, then a new instance); returns
        true once the new instance is LOOPING. A pool's instances are restarted
        one at a time, each once the previous is LOOPING again."""
        manager = workers()
        for handle in manager.targets(name):
            manager.restart(handle)
        return True

    @method("worker.send", [("name", str), ("command", str), ("payload", typing.Any, None)],
            returns=int)
    def send_command(name, command, payload):
        """Send COMMAND with an optional PAYLOAD to worker NAME, where it arrives as
        the event daemon.worker.COMMAND; returns the bytes written. The encoded
        message must fit the worker's channel (262,140 bytes by default): a larger
        one is -32602, a full channel -32005."""
        if not command:
            raise InvalidParams("invalid param 'command': expected a non-empty string")
        return send(workers().get(name), command, payload)

    @method("worker.pools", returns=dict)
    def pools():
        """Return {pool: [instance names in index order]} of every installed worker
        (a worker installed with one instance is a pool of one)."""
        return {name: pool.names() for name, pool in workers().pools().items()}

    @method("worker.scale", [("name", str), ("instances", int)], returns=list)
    def scale(name, instances):
        """Give pool NAME that many INSTANCES (new ones start, surplus ones spin down
        gracefully, highest index first); returns the pool's instance names in index
        order once it has that size."""
        if instances < 0:
            raise InvalidParams("invalid param 'instances': expected an integer >= 0, got %d"
                                % instances)
        return workers().scale(name, instances)

    @method("worker.call", [("name", str), ("method", str), ("params", typing.Any, None)],
            returns=typing.Any)
    def call(name, method, params):
        """Call METHOD, an @exposed method of worker NAME, with PARAMS (an array or
        an object); returns what it returned."""
        if params is not None and not isinstance(params, (list, dict)):
            raise InvalidParams("invalid param 'params': expected an array or an object")
        return workers().get(name).call(method, params)

    @method("worker.signal", [("name", str), ("signal", typing.Any)], returns=bool)
    def signal_worker(name, signal):
        """Send SIGNAL (a name like "HUP" or "SIGHUP", or a number) to worker NAME,
        or to every instance of pool NAME: an exec worker's whole process group, a
        forked worker's process; a greenlet worker gets the posix.* event."""
        workers().targets(name)  # an unknown worker is -32002 whatever the signal
        try:
            signum = signal_number(signal)
        except ValueError as exc:
            raise InvalidParams("invalid param 'signal': %s" % (exc,)) from None
        return workers().signal_worker(name, signum)

    @method("worker.stop", [("name", str)], returns=bool)
    def stop_worker(name):
        """Stop worker NAME (every instance of pool NAME) gracefully, SIGKILL after
        shutdowntimeout; returns true once it is STOPPED. It stays stopped (a
        forever worker is not respawned) until worker.start."""
        return workers().stop_worker(name)

    @method("worker.start", [("name", str)], returns=bool)
    def start_worker(name):
        """Start worker NAME (every instance of pool NAME) if it is stopped;
        returns true once it is LOOPING again."""
        return workers().start_worker(name)
