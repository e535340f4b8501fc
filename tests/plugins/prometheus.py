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

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from apprelease.analysis.errors import MeasurementInconclusive
from apprelease.analysis.prometheus import QUERY_PATH, QueryResult, parse_answer
from tests.plugins.cluster import NotYet, build_before_tests, wait_for, wants_fixture

if TYPE_CHECKING:
    from apprelease_dev.exporter import Exporter
    from apprelease_dev.prometheus import PrometheusServer

DEFAULT_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.25

# Carries a build failure from collection time to the fixture that reports it.
_build_error_key = pytest.StashKey[Exception]()


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
        from apprelease_dev.exporter import Exporter

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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Prometheus before the first test (see build_before_tests). A failure is reported
    by the prometheus_server fixture."""
    if not wants_fixture(session, "prometheus_server"):
        return
    from apprelease_dev.prometheus import ensure_prometheus

    build_before_tests(session, lambda progress: ensure_prometheus(progress=progress), _build_error_key)


@pytest.fixture(scope="session")
def prometheus_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusForTests]:
    from apprelease_dev.exporter import Exporter
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


