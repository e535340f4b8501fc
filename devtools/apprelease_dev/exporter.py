"""A /metrics endpoint whose values the caller sets, for a real Prometheus to scrape: the
analysis tests' exporter (tests/plugins/prometheus.py) and the analysis benchmark's."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import start_http_server


class Exporter:
    """An in-process /metrics endpoint on 127.0.0.1 with the metrics the caller sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Gauge | Counter] = {}
        self._lock = threading.Lock()
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, metric: str, labels: Mapping[str, str] | None = None, value: float = 0.0) -> None:
        """Set the gauge ``metric`` (with these labels) to ``value``."""
        gauge = self._metric(metric, Gauge, labels)
        (gauge.labels(**labels) if labels else gauge).set(value)

    def inc(self, metric: str, labels: Mapping[str, str] | None = None, amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``metric`` (its name must end in _total, as exposed)."""
        if not metric.endswith("_total"):
            raise ValueError(f"counter {metric!r}: a counter's name ends in _total")
        counter = self._metric(metric, Counter, labels)
        (counter.labels(**labels) if labels else counter).inc(amount)

    def remove(self, metric: str, labels: Mapping[str, str]) -> None:
        """Stop exposing one series (the next scrape marks it stale)."""
        with self._lock:
            self._metrics[metric].remove(*(labels[name] for name in sorted(labels)))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _metric(self, name: str, kind: type[Gauge] | type[Counter], labels: Mapping[str, str] | None) -> Any:
        names = tuple(sorted(labels or {}))
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = self._metrics[name] = kind(name, f"set by the caller ({name})", names, registry=self.registry)
            if not isinstance(metric, kind) or tuple(metric._labelnames) != names:
                raise ValueError(f"{name!r} is already a {type(metric).__name__} with labels {metric._labelnames}")
            return metric
