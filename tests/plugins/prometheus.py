"""pytest plugin: a real Prometheus server scraping exporters the tests control.

Fixtures:
  prometheus_server (session)  a Prometheus built from its Go module (apprelease_dev.prometheus,
                               cached per version), on 127.0.0.1, scraping `.exporter` every
                               second. A Prometheus that cannot be built or started fails the
                               tests that need it (pytest.fail), it never skips them.

The server (PrometheusForTests):
  .address / .url           "127.0.0.1:PORT" / "http://127.0.0.1:PORT"
  .exporter                 an Exporter: .set(metric, labels, value) for a gauge,
                            .inc(metric, labels, amount) for a counter (its name ends in _total)
  .new_exporter()           another scraped /metrics endpoint (another `instance` label)
  .stop() / .start()        an outage and the recovery of the same server (same port and data);
                            a test that leaves it stopped gets it started again after it
  .query(promql)            the query API's answer now, as the operator reads it (QueryResult)
  .wait_for_value(promql, predicate, timeout)  poll the query API until predicate(values) holds

The server is shared by the session: use metric names (or label values) of your own per test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import start_http_server

from apprelease.analysis.errors import MeasurementInconclusive
from apprelease.analysis.prometheus import QUERY_PATH, QueryResult, parse_answer
from tests.plugins.cluster import NotYet, wait_for

if TYPE_CHECKING:
    from apprelease_dev.prometheus import PrometheusServer

DEFAULT_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.25

# Carries a build failure from collection time to the fixture that reports it.
_build_error_key = pytest.StashKey[Exception]()


class Exporter:
    """An in-process /metrics endpoint on 127.0.0.1 with the metrics the test sets."""

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
        (gauge.labels(**labels) if labels else gauge).set(value)  # type: ignore[union-attr]

    def inc(self, metric: str, labels: Mapping[str, str] | None = None, amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``metric`` (its name must end in _total, as exposed)."""
        if not metric.endswith("_total"):
            raise ValueError(f"counter {metric!r}: a counter's name ends in _total")
        counter = self._metric(metric, Counter, labels)
        (counter.labels(**labels) if labels else counter).inc(amount)  # type: ignore[union-attr]

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
                metric = self._metrics[name] = kind(name, f"set by the test ({name})", names, registry=self.registry)
            if not isinstance(metric, kind) or tuple(metric._labelnames) != names:
                raise ValueError(f"{name!r} is already a {type(metric).__name__} with labels {metric._labelnames}")
            return metric


@dataclass
class PrometheusForTests:
    server: PrometheusServer
    exporter: Exporter
    exporters: list[Exporter] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.running

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def new_exporter(self) -> Exporter:
        """Another /metrics endpoint, scraped from now on (its samples carry its own
        `instance` label)."""
        exporter = Exporter()
        self.exporters.append(exporter)
        self.server.set_targets([e.address for e in self.exporters])
        return exporter

    def query(self, promql: str) -> QueryResult:
        """The instant query's result now, parsed as the operator parses it (MeasurementError,
        MeasurementInconclusive as the operator would get them)."""
        try:
            response = httpx.post(f"{self.url}{QUERY_PATH}", data={"query": promql}, timeout=10)
        except httpx.HTTPError as error:
            raise MeasurementInconclusive(f"{self.address}: {error}") from None
        return parse_answer(response.status_code, response.content, server=self.address)

    def wait_for_value(
        self,
        promql: str,
        predicate: Callable[[tuple[float, ...]], bool],
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> QueryResult:
        """Poll the query API until ``predicate(result.values)`` holds; return that result.
        AssertionError with the last answer on timeout; MeasurementError at once for a bad query."""

        def check() -> QueryResult | NotYet:
            try:
                result = self.query(promql)
            except MeasurementInconclusive as error:
                return NotYet(error.reason)
            return result if predicate(result.values) else NotYet(result)

        return wait_for(check, timeout, POLL_SECONDS, f"{promql!r} on {self.address} to satisfy the predicate")

    def close(self) -> None:
        self.server.stop()
        for exporter in self.exporters:
            exporter.close()


def unique_metric(prefix: str = "test_metric") -> str:
    """A metric name no other test of the session uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _wants_prometheus(session: pytest.Session) -> bool:
    return any("prometheus_server" in getattr(item, "fixturenames", ()) for item in session.items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Prometheus before the first test, so a (slow, cold) build does not count against
    that test's timeout. A failure is reported by the prometheus_server fixture."""
    if not _wants_prometheus(session):
        return
    from apprelease_dev.go_runner import BuildError
    from apprelease_dev.prometheus import ensure_prometheus

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    try:
        ensure_prometheus(progress=progress)
    except BuildError as error:
        session.config.stash[_build_error_key] = error


@pytest.fixture(scope="session")
def prometheus_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusForTests]:
    from apprelease_dev.go_runner import BuildError
    from apprelease_dev.prometheus import PrometheusError, PrometheusServer, ensure_prometheus

    build_error = request.config.stash.get(_build_error_key, None)
    if build_error is not None:
        pytest.fail(f"could not build Prometheus: {build_error}", pytrace=False)
    try:
        binary = ensure_prometheus()
    except BuildError as error:
        pytest.fail(f"could not build Prometheus: {error}", pytrace=False)
    exporter = Exporter()
    server = PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), targets=[exporter.address])
    try:
        server.start()
    except (PrometheusError, OSError) as error:
        exporter.close()
        pytest.fail(f"could not start Prometheus: {error}", pytrace=False)
    prometheus = PrometheusForTests(server, exporter, [exporter])
    try:
        yield prometheus
    finally:
        prometheus.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A test that stopped the shared server (an outage) and ended before starting it again
    leaves it running for the next one."""
    prometheus = getattr(item, "funcargs", {}).get("prometheus_server")
    if isinstance(prometheus, PrometheusForTests) and not prometheus.running:
        prometheus.start()


