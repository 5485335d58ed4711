"""The methods every daemon serves: ``system.*``, ``daemon.*``, ``events.*`` (docs/reference/rpc.rst, Methods).

Each handler's docstring is what ``system.methodHelp`` returns for it.
(``worker.*`` methods are registered by the worker manager.)
"""

import os
import time
import typing

from ..errors import InvalidParams, MethodNotFound, RpcError, Unauthorized
from ..logring import DEFAULT_LINES, MAX_LINES
from ..version import __version__
from ..wire import codec
from .methods import Param, RpcMethod
from .protocol import ReplyBudget

__all__ = ["register_builtins", "CAPABILITIES"]

#: ``system.getCapabilities`` (``xmlrpc`` is added when the HTTP endpoint is on).
CAPABILITIES = {
    "json-rpc": {"specUrl": "https://www.jsonrpc.org/specification", "specVersion": 2},
    "system.multicall": {"specUrl": "https://mirrors.talideon.com/articles/multicall.html",
                         "specVersion": 1},
    "introspection": {"specUrl": "https://xmlrpc-c.sourceforge.io/introspection.html",
                      "specVersion": 1},
    "events": {"specUrl": "https://github.com/gdaemon/gdaemon#events", "specVersion": 1},
    "auth": {"specUrl": "https://github.com/gdaemon/gdaemon#security", "specVersion": 1},
}
_XMLRPC_CAPABILITY = {"specUrl": "http://xmlrpc.com/spec.md", "specVersion": 1}


def register_builtins(daemon, engine, subscribers):
    """Register the built-in methods of ``daemon`` on its registry.

    With the HTTP endpoint on, ``daemon.metrics`` (``/metrics``, ``/healthz``)
    is created too and the engine's observer counts every call for it.
    Without the endpoint nothing is measured, so the raw socket's hot path
    does not pay for metrics nobody can read.
    """
    registry = daemon.rpc
    engine.max_reply = daemon.config.get("socketmaxreply", engine.max_reply)
    if daemon.config["websockethandler"]:
        from .metrics import Metrics
        daemon.metrics = Metrics(daemon)
        engine.observer = daemon.metrics.rpc.observe

    def method(name, params=(), returns=None):
        def decorate(handler):
            registry.add(RpcMethod(name, handler, handler.__doc__ or "", list(params), returns))
            return handler
        return decorate

    def _lookup(name):
        found = registry.get(name)
        if found is None:
            raise MethodNotFound("method not found: %r" % (name,))
        return found

    @method("system.listMethods", returns=list)
    def list_methods():
        """Return the sorted list of the methods this daemon serves."""
        return registry.names()

    @method("system.methodHelp", [("name", str)], returns=str)
    def method_help(name):
        """Return the description of method NAME."""
        return _lookup(name).description

    @method("system.methodSignature", [("name", str)], returns=list)
    def method_signature(name):
        """Return [[return_type, param_type, ...]] of method NAME (XML-RPC type names)."""
        return [_lookup(name).signature()]

    @method("system.methodInfo", [("name", str)], returns=dict)
    def method_info(name):
        """Return method NAME's signature with parameter names: {"name",
        "description", "returns", "params": [{"name", "type", "nullable",
        "required", "default"}]} (types as in system.methodSignature; "default"
        only for optional parameters)."""
        return _lookup(name).describe()

    @method("system.getCapabilities", returns=dict)
    def get_capabilities():
        """Return the specifications this daemon implements, with their versions."""
        caps = dict(CAPABILITIES)
        if daemon.config["websockethandler"]:
            caps["xmlrpc"] = _XMLRPC_CAPABILITY
        return caps

    @method("system.multicall", [("calls", list)], returns=list)
    def multicall(calls, session):
        """Call several methods in one request: CALLS is a list of
        {"methodName": ..., "params": [...]}; returns a list of [result] or
        {"faultCode": ..., "faultString": ...} for each.  The results take at
        most socketmaxreply bytes: the call whose result would pass it and
        those after it get fault -32003 (and those after it are not run)."""
        # Measured as JSON, the results are encoded twice; but never more
        # than socketmaxreply of them at once, whatever the calls return.
        stand_in = max(len(codec.dumps(_too_large_fault(engine, ran))) for ran in (False, True)) + 1
        budget = ReplyBudget(engine.max_reply - _MULTICALL_ENVELOPE, stand_in * len(calls))
        results = []
        for call in calls:
            if budget.over:
                budget.take(0, stand_in)
                results.append(_too_large_fault(engine, False))
                continue
            try:
                if not isinstance(call, dict) or not isinstance(call.get("methodName"), str):
                    raise InvalidParams("each call needs a string methodName")
                if call["methodName"] == "system.multicall":
                    raise InvalidParams("system.multicall cannot be nested")
                params = call.get("params", [])
                if not isinstance(params, (list, dict)):
                    raise InvalidParams("params of %s must be an array or an object" % call["methodName"])
                result: typing.Any = [engine.call(call["methodName"], params, session)]
            except RpcError as exc:
                result = {"faultCode": exc.code, "faultString": exc.message}
            if not budget.take(len(codec.dumps(result)) + 1, stand_in):
                result = _too_large_fault(engine, True)
            results.append(result)
        return results

    @method("system.auth", [_AnyToken("token", str)], returns=bool)
    def auth(token, session):
        """Authenticate this connection with the daemon's shared TOKEN."""
        if engine.token is None:
            return True
        # Anything but the token, a string or not, is -32001 (docs/reference/rpc.rst, What one client can cost).
        if engine.check_token(token):
            session.authenticated = True
            return True
        session.close_after = True
        raise Unauthorized("invalid token")

    @method("daemon.status", returns=dict)
    def status():
        """Return the daemon's pid, description, version, uptime, start time,
        socket, open connections and workers' status codes."""
        return daemon.status()

    @method("daemon.stop", returns=bool)
    def stop():
        """Stop the daemon gracefully (the reply is sent first)."""
        daemon.stop()
        return True

    @method("daemon.shutdown", returns=bool)
    def shutdown():
        """Alias of daemon.stop."""
        daemon.stop()
        return True

    @method("daemon.reload", returns=bool)
    def reload():
        """Reload like SIGHUP: reopen the log file and restart the workers one at a time."""
        daemon.reload()
        return True

    @method("daemon.upgrade", returns=bool)
    def upgrade():
        """Replace the daemon by a new one started from the same command line,
        without refusing a connection: true once the new daemon is ready and
        this one hands over; error -32010 with the reason when it is not."""
        return daemon.upgrade()

    @method("daemon.logtail", [("lines", int, DEFAULT_LINES), ("worker", typing.Optional[str], None)],
            returns=list)
    def logtail(lines, worker):
        """Return the last LINES log lines (default 100, at most 10000) of the
        daemon and its workers, oldest first, as formatted in the log file;
        with WORKER, only the lines of that worker (or of every instance of
        that pool, and of its program's output). They are kept in memory, so
        this works in -f mode too."""
        if not 0 <= lines <= MAX_LINES:
            raise InvalidParams("invalid param 'lines': expected 0 to %d, got %d" % (MAX_LINES, lines))
        loggers = daemon.workers.worker_loggers(worker) if worker is not None else None
        return daemon.logring.tail(lines, loggers=loggers)

    @method("events.subscribe", [("patterns", list)], returns=bool)
    def subscribe(patterns, session):
        """Push the events whose names match any of the glob PATTERNS
        (e.g. ["worker.*", "posix.*"]) to this connection as "event" notifications.
        A connection holds at most 64 distinct patterns of at most 256 characters."""
        _check_patterns(patterns)
        if session.transport == "http":
            raise RpcError(-32000, "events need a persistent connection (socket or websocket)")
        subscribers.subscribe(session, patterns)
        return True

    @method("events.unsubscribe", [("patterns", typing.Optional[list], None)], returns=bool)
    def unsubscribe(patterns, session):
        """Stop pushing events matching PATTERNS (all events when omitted)."""
        if patterns is not None:
            _check_patterns(patterns)
        subscribers.unsubscribe(session, patterns)
        return True


#: Bytes of a multicall's response around its results (``{"jsonrpc":"2.0",
#: "result":[...],"id":...}``), with room for a long id.
_MULTICALL_ENVELOPE = 1024


class _AnyToken(Param):
    """``system.auth``'s token: declared a string, but a value of any other
    type is a wrong token (``-32001``), not a bad param (docs/reference/rpc.rst, What one client can cost)."""

    __slots__ = ()

    def check(self, value):
        return value


def _too_large_fault(engine, ran):
    """The fault standing in for a multicall result past socketmaxreply."""
    error = engine.too_large_response(None, ran)["error"]
    return {"faultCode": error["code"], "faultString": error["message"]}


def _check_patterns(patterns):
    if not all(isinstance(p, str) for p in patterns):
        raise InvalidParams("invalid param 'patterns': expected a list of strings")


def status_dict(daemon):
    """The ``daemon.status`` result."""
    now = time.time()
    return {
        "pid": os.getpid(),
        "description": daemon.config["description"],
        "version": __version__,
        "uptime": round(now - daemon.started_at, 3) if daemon.started_at else 0.0,
        "started_at": daemon.started_at,
        "sockethandler": daemon.config["sockethandler"],
        "connections": daemon.connection_count(),
        "workers": daemon.workers.status_codes() if daemon.workers_made else {},
        "upgrades": daemon.upgrades,
        "replaced_pid": daemon.replaced_pid,
    }
