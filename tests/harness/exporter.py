"""A metrics exporter whose values the tests set, for the real Prometheus to scrape.

In the test process, call `gauge()`, `counter()` and `histogram()` and change the values.
Another process (the demo) steers it over HTTP: POST /control with JSON
{"kind": "gauge"|"counter"|"histogram", "name": ..., "labels": {...}, "value": v}
(gauge: set; counter: inc by value; histogram: observe value)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Exporter:
    def __init__(self, port: int = 0) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, object] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = generate_latest(exporter.registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/control":
                    self.send_error(404)
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                    exporter.apply(json.loads(self.rfile.read(length)))
                except (ValueError, KeyError, TypeError) as exc:
                    self.send_error(400, str(exc))
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.target = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Exporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _metric(self, cls: type, name: str, labels: tuple[str, ...], **kwargs: object):
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = cls(name, f"test metric {name}", labels, registry=self.registry,
                             **kwargs)
                self._metrics[name] = metric
            if not isinstance(metric, cls):
                raise TypeError(f"{name} is a {type(metric).__name__}, not a {cls.__name__}")
            return metric

    def gauge(self, name: str, labels: dict[str, str] | None = None) -> Gauge:
        labels = labels or {}
        metric = self._metric(Gauge, name, tuple(sorted(labels)))
        return metric.labels(**labels) if labels else metric

    def counter(self, name: str, labels: dict[str, str] | None = None) -> Counter:
        labels = labels or {}
        metric = self._metric(Counter, name, tuple(sorted(labels)))
        return metric.labels(**labels) if labels else metric

    def histogram(self, name: str, labels: dict[str, str] | None = None) -> Histogram:
        labels = labels or {}
        metric = self._metric(Histogram, name, tuple(sorted(labels)), buckets=BUCKETS)
        return metric.labels(**labels) if labels else metric

    def apply(self, command: dict) -> None:
        kind, name = command["kind"], command["name"]
        labels, value = command.get("labels") or {}, float(command["value"])
        if kind == "gauge":
            self.gauge(name, labels).set(value)
        elif kind == "counter":
            self.counter(name, labels).inc(value)
        elif kind == "histogram":
            self.histogram(name, labels).observe(value)
        else:
            raise ValueError(f"unknown kind {kind!r}: use gauge, counter or histogram")
