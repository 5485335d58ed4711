"""Operating the daemon from outside: ``GET /metrics`` and ``GET /healthz`` (docs/howto/metrics.rst).

``/metrics`` is the Prometheus text exposition format, version 0.0.4
(``text/plain; version=0.0.4``), rendered by ``prometheus_client`` from a
custom collector that reads the daemon's live state at scrape time: nothing
is updated on the hot path except :class:`RpcStats`, a few integer
additions per RPC call fed by the engine's observer hook
(:attr:`gdaemon.rpc.protocol.Engine.observer`).

``/healthz`` answers ``200 ok`` while the daemon serves and ``503`` once it
is stopping (or still starting), for load balancers and container probes.

Both follow the endpoint's authentication: with ``token`` set they need
``Authorization: Bearer TOKEN`` (the endpoint checks it, 401 otherwise).

Cost: ``prometheus_client`` is imported at the first scrape only, so a
daemon nobody scrapes (and ``gdaemon-echo`` without ``--http``) never loads
it.  This module itself is small and imported with the HTTP endpoint.

Metrics (``worker`` labels are instance names, ``method`` labels are
registered method names only, so label sets stay bounded):

==========================================  =========  ==================================
name                                        type       meaning
==========================================  =========  ==================================
``gdaemon_info{version,description}``       gauge      always 1
``gdaemon_uptime_seconds``                  gauge      since ``daemon.ready``
``gdaemon_start_time_seconds``              gauge      epoch of ``daemon.ready``
``gdaemon_up``                              gauge      1 while serving (``/healthz``)
``gdaemon_rpc_connections``                 gauge      open RPC connections, every transport
``gdaemon_event_subscribers``               gauge      connections subscribed to events
``gdaemon_rpc_requests_total{method}``      counter    calls of each method
``gdaemon_rpc_errors_total{method}``        counter    calls that answered an error
``gdaemon_rpc_request_duration_seconds``    histogram  per method
``gdaemon_workers``                         gauge      installed workers (instances)
``gdaemon_worker_status{worker}``           gauge      status code (0 SPINUP ... 5 STOPPED)
``gdaemon_worker_restarts_total{worker}``   counter
``gdaemon_worker_loops_total{worker}``      counter
``gdaemon_worker_rss_bytes{worker}``        gauge      resident memory of the worker's process
``gdaemon_worker_cpu_seconds_total{worker}`` counter   CPU time of the worker's process
``gdaemon_worker_recycles_total{worker,reason}`` counter  recycles (``maxrss``, ``maxloops``, ``maxage``)
``gdaemon_log_records_total{level}``        counter    records seen by the log ring
``process_*``                               various    the daemon process (prometheus_client)
==========================================  =========  ==================================
"""

import bisect
import time
from typing import Any, Callable, Optional

from ..version import __version__

__all__ = ["RpcStats", "Metrics", "CONTENT_TYPE", "BUCKETS"]

#: Content type of ``/metrics`` (docs/howto/metrics.rst).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds, in seconds, of the RPC latency histogram's buckets.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0)


class _MethodStats:
    __slots__ = ("count", "errors", "total", "buckets")

    def __init__(self):
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)   # the last one is +Inf


class RpcStats:
    """Counts and latency buckets per RPC method; :meth:`observe` is the engine's observer.

    Pure bookkeeping: no I/O, no lock (the daemon is one thread of greenlets).
    """

    def __init__(self):
        self.methods = {}

    def observe(self, method, seconds, ok=True):
        """Record one call of ``method`` that took ``seconds``."""
        stats = self.methods.get(method)
        if stats is None:
            stats = self.methods[method] = _MethodStats()
        stats.count += 1
        stats.total += seconds
        stats.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        if not ok:
            stats.errors += 1

    def total(self):
        """Calls of every method so far."""
        return sum(s.count for s in self.methods.values())


class Metrics:
    """Renders ``/metrics`` and ``/healthz`` for one daemon.

    :param daemon: the :class:`~gdaemon.daemon.Daemon`; its ``workers``,
        ``logring``, connections and status are read at each scrape.
    """

    def __init__(self, daemon):
        self.daemon = daemon
        #: Calls per method, fed by the engine's observer.
        self.rpc = RpcStats()
        self._registry: Optional[Any] = None
        self._generate: Optional[Callable[[Any], bytes]] = None

    # -- HTTP -----------------------------------------------------------------

    def serve(self, endpoint, environ, start_response, path):
        """Answer ``GET /metrics`` or ``GET /healthz`` on the HTTP ``endpoint``."""
        from ..errors import Unauthorized
        from .routes import respond as _respond
        from .routes import token_from as _token_from
        from .websocket import error_message

        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"", "text/plain", [("Allow", "GET, HEAD")])
        engine = endpoint.engine
        if engine.token is not None:
            given = _token_from(environ.get("HTTP_AUTHORIZATION", ""))
            if given is None or not engine.check_token(given):
                return _respond(start_response, "401 Unauthorized", error_message(Unauthorized(
                    "authentication required: send 'Authorization: Bearer TOKEN'" if given is None
                    else "invalid token")), "application/json",
                    [("WWW-Authenticate", 'Bearer realm="gdaemon"')])
        if path == "/healthz":
            status, body, kind = self.health() + ("text/plain; charset=utf-8",)
        else:
            status, body, kind = "200 OK", self.render(), CONTENT_TYPE
        return _respond(start_response, status, b"" if method == "HEAD" else body, kind, length=len(body))

    # -- /healthz -------------------------------------------------------------

    def health(self):
        """``(status line, body)`` of ``GET /healthz``."""
        daemon = self.daemon
        if daemon.serving:
            return "200 OK", b"ok\n"
        if daemon.started_at is None:
            return "503 Service Unavailable", b"starting\n"
        return "503 Service Unavailable", b"stopping\n"

    # -- /metrics -------------------------------------------------------------

    def render(self):
        """The exposition text (bytes) of the daemon's state now."""
        if self._registry is None or self._generate is None:
            self._load()
        assert self._generate is not None  # _load() set both
        return self._generate(self._registry)

    def _load(self):
        # Imported here, at the first scrape: see the module docstring.
        from prometheus_client import CollectorRegistry, ProcessCollector
        from prometheus_client.exposition import generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.daemon, self.rpc))
        ProcessCollector(registry=registry)
        self._registry, self._generate = registry, generate_latest


class _Collector:
    """The prometheus_client custom collector: everything read at scrape time."""

    def __init__(self, daemon, rpc):
        self.daemon = daemon
        #: The :class:`RpcStats` of the daemon's calls.
        self.rpc = rpc

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        daemon = self.daemon
        now = time.time()
        info = GaugeMetricFamily("gdaemon_info", "The daemon's version and description (always 1).",
                                 labels=["version", "description"])
        info.add_metric([__version__, daemon.config["description"]], 1)
        yield info
        started = daemon.started_at
        yield GaugeMetricFamily("gdaemon_uptime_seconds", "Seconds since the daemon became ready.",
                                value=now - started if started else 0.0)
        yield GaugeMetricFamily("gdaemon_start_time_seconds", "Epoch seconds at which the daemon became ready.",
                                value=started or 0.0)
        yield GaugeMetricFamily("gdaemon_up", "1 while the daemon serves, 0 while starting or stopping.",
                                value=1 if daemon.serving else 0)
        yield GaugeMetricFamily("gdaemon_rpc_connections", "Open RPC connections over every transport.",
                                value=daemon.connection_count())
        yield GaugeMetricFamily("gdaemon_event_subscribers", "Connections subscribed to events.",
                                value=len(daemon.subscribers))
        yield from self._rpc()
        yield from self._workers()
        levels = CounterMetricFamily("gdaemon_log_records", "Log records of the daemon and its workers, by level.",
                                     labels=["level"])
        for level, count in sorted(daemon.logring.counts.items()):
            levels.add_metric([level], count)
        yield levels

    def _rpc(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        methods = sorted(self.rpc.methods.items())
        requests = CounterMetricFamily("gdaemon_rpc_requests", "RPC calls, by method.", labels=["method"])
        errors = CounterMetricFamily("gdaemon_rpc_errors", "RPC calls that answered an error, by method.",
                                     labels=["method"])
        latency = HistogramMetricFamily("gdaemon_rpc_request_duration_seconds",
                                        "Time spent handling RPC calls, by method.", labels=["method"])
        bounds = [repr(b) for b in BUCKETS] + ["+Inf"]
        for name, s in methods:
            requests.add_metric([name], s.count)
            errors.add_metric([name], s.errors)
            cumulative, running = [], 0
            for bound, count in zip(bounds, s.buckets):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([name], cumulative, s.total)
        yield requests
        yield errors
        yield latency

    def _workers(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name, text):
            return GaugeMetricFamily(name, text, labels=["worker"])

        def counter(name, text):
            return CounterMetricFamily(name, text, labels=["worker"])

        status = gauge("gdaemon_worker_status",
                       "Worker status code: 0 SPINUP, 1 LOOPING, 2 PAUSED, 3 SPINDOWN, 4 RESTARTING, 5 STOPPED.")
        restarts = counter("gdaemon_worker_restarts", "Times the worker was respawned.")
        loops = counter("gdaemon_worker_loops", "loop() runs of the worker.")
        rss = gauge("gdaemon_worker_rss_bytes", "Resident memory of the worker's process, in bytes.")
        cpu = counter("gdaemon_worker_cpu_seconds", "CPU time used by the worker's process, in seconds.")
        recycles = CounterMetricFamily("gdaemon_worker_recycles", "Times the worker was recycled, "
                                       "by reason (maxrss, maxloops, maxage).",
                                       labels=["worker", "reason"])
        count = 0
        for handle in (self.daemon.workers if self.daemon.workers_made else ()):
            info = handle.info()
            labels = [str(info.get("name"))]
            count += 1
            status.add_metric(labels, info.get("status", 0))
            restarts.add_metric(labels, info.get("restarts") or 0)
            loops.add_metric(labels, info.get("loops") or 0)
            if info.get("rss") is not None:
                rss.add_metric(labels, info["rss"])
            if info.get("cpu") is not None:
                cpu.add_metric(labels, info["cpu"])
            for reason, times in sorted(handle.recycle_counts.items()):
                recycles.add_metric(labels + [reason], times)
        yield GaugeMetricFamily("gdaemon_workers", "Installed workers (pool instances count one each).",
                                value=count)
        yield from (status, restarts, loops, rss, cpu, recycles)
