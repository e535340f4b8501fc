"""The test Prometheus is real: what an exporter exposes comes back from PromQL, a counter's
rate() is computed from scrapes, and a stopped server is an outage that a start ends."""

from __future__ import annotations

import math

import pytest

from apprelease.analysis.errors import MeasurementError
from tests.plugins.prometheus import PrometheusForTests, unique_metric

pytestmark = pytest.mark.prometheus


def test_an_exporter_value_is_the_query_result(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("canary_error_ratio")
    prometheus_server.exporter.set(metric, {"app": "shop", "track": "canary"}, 0.25)
    prometheus_server.exporter.set(metric, {"app": "shop", "track": "stable"}, 0.01)

    result = prometheus_server.wait_for_value(
        f'{metric}{{app="shop"}}', lambda values: sorted(values) == [0.01, 0.25]
    )

    assert result.result_type == "vector"
    by_track = {sample.label_dict["track"]: sample.value for sample in result.samples}
    assert by_track == {"canary": 0.25, "stable": 0.01}
    assert all(sample.label_dict["job"] == "exporter" for sample in result.samples)
    # A value the test changes is read at the next scrape (every second).
    prometheus_server.exporter.set(metric, {"app": "shop", "track": "canary"}, 0.5)
    prometheus_server.wait_for_value(f'{metric}{{track="canary"}}', lambda values: values == (0.5,))


def test_scalar_and_empty_results(prometheus_server: PrometheusForTests) -> None:
    scalar = prometheus_server.query("scalar(vector(3)) * 2")
    assert (scalar.result_type, scalar.values) == ("scalar", (6.0,))
    empty = prometheus_server.query(f"{unique_metric('never_exposed')}")
    assert (empty.result_type, empty.values, empty.empty) == ("vector", (), True)


def test_rate_over_a_counter_the_test_increments(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("http_requests") + "_total"
    prometheus_server.exporter.inc(metric, {"code": "500"}, 0)

    def rising(values: tuple[float, ...]) -> bool:
        prometheus_server.exporter.inc(metric, {"code": "500"}, 10)  # about 10 per poll
        return bool(values) and values[0] > 0

    result = prometheus_server.wait_for_value(f"sum(rate({metric}[5s]))", rising, timeout=60)
    assert result.values[0] > 0 and not math.isinf(result.values[0])


def test_a_bad_query_is_refused_with_prometheus_message(prometheus_server: PrometheusForTests) -> None:
    with pytest.raises(MeasurementError, match=r"bad_data: .*parse error"):
        prometheus_server.query("sum(rate(x[5m])")


def test_stop_is_an_outage_and_start_recovers_on_the_same_port(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("before_outage")
    prometheus_server.exporter.set(metric, None, 7)
    prometheus_server.wait_for_value(metric, lambda values: values == (7.0,))
    address = prometheus_server.address

    prometheus_server.stop()
    assert not prometheus_server.running
    from apprelease.analysis.errors import MeasurementInconclusive

    with pytest.raises(MeasurementInconclusive):
        prometheus_server.query(metric)

    prometheus_server.exporter.set(metric, None, 8)
    prometheus_server.start()
    assert prometheus_server.address == address
    # Scraping resumes; the data from before the outage is still there (same data directory).
    prometheus_server.wait_for_value(metric, lambda values: values == (8.0,))
    history = prometheus_server.query(f"max_over_time({metric}[10m])")
    assert history.values == (8.0,)
    before = prometheus_server.query(f"min_over_time({metric}[10m])")
    assert before.values == (7.0,)


def test_a_second_exporter_is_scraped_as_another_instance(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("per_instance")
    second = prometheus_server.new_exporter()
    prometheus_server.exporter.set(metric, None, 1)
    second.set(metric, None, 2)

    result = prometheus_server.wait_for_value(f"sum({metric})", lambda values: values == (3.0,))
    assert result.values == (3.0,)
    instances = prometheus_server.query(metric)
    assert {s.label_dict["instance"] for s in instances.samples} == {
        prometheus_server.exporter.address, second.address
    }
