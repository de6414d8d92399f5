"""Prometheus metrics of a service: requests, errors, latency, queue vs compute time, in-flight."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, make_wsgi_app

__all__ = ["ServiceMetrics"]

METRICS_PATH = "/metrics"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ServiceMetrics:
    """The metrics of one server, in a registry of their own (several servers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nightshift_grpc_requests", "RPCs handled, by method and status code", ["method", "code"], registry=r)
        self.errors = Counter("nightshift_grpc_errors", "RPCs that ended with a status other than OK", ["method", "code"], registry=r)
        self.latency = Histogram("nightshift_grpc_latency_seconds", "RPC latency", ["method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("nightshift_grpc_inflight", "RPCs in progress", ["method"], registry=r)
        self.queue_seconds = Histogram("nightshift_queue_seconds", "Time a batch waited for a compute slot", buckets=_LATENCY_BUCKETS, registry=r)
        self.compute_seconds = Histogram("nightshift_compute_seconds", "Model compute time of a batch", buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_seconds = Histogram("nightshift_decode_seconds", "Time to validate and decode a batch's tiles", buckets=_LATENCY_BUCKETS, registry=r)
        self.tiles = Counter("nightshift_tiles", "Tiles processed", registry=r)
        self.model_ready = Gauge("nightshift_model_ready", "1 while the serving model (its name and registry version) is loaded and warmed up",
                                 ["model", "version"], registry=r)
        self._serving: tuple[str, str] | None = None
        self._http = None

    def model_loaded(self, model: str, version: str) -> None:
        """The model now served: its series at 1, no other model's series left over."""
        self.model_ready.clear()
        self._serving = (model, version)
        self.model_ready.labels(model, version).set(1)

    def model_unloading(self) -> None:
        if self._serving is not None:
            self.model_ready.labels(*self._serving).set(0)

    def serve_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 picks a free port), 404 on every other path; return the port."""
        server = make_server(host, port, _only_metrics(make_wsgi_app(self.registry)), _ThreadingWSGIServer,
                             handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        self._http = server
        return int(server.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)


def _only_metrics(app):
    """``app`` at ``/metrics``; 404 elsewhere, so a scraper pointed at the wrong path fails instead of reading metrics."""

    def route(environ, start_response):
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found: the metrics are at {METRICS_PATH}\n".encode()]
        return app(environ, start_response)

    return route


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line each
        pass
