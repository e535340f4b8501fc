"""The operator's Prometheus client against a real Prometheus: values, an empty result, a bad
query named by Prometheus' own message, an outage that is inconclusive (never a pass), and the
policy that refuses the loopback address unless the platform allows it."""

from __future__ import annotations

import asyncio

import pytest

from apprelease.analysis import prometheus
from apprelease.analysis.errors import AddressNotAllowed, MeasurementError, MeasurementInconclusive
from apprelease.domain import Policy
from tests.plugins.prometheus import PrometheusForTests, unique_metric

pytestmark = pytest.mark.prometheus

LOOPBACK_ALLOWED = Policy(registry_networks_allowed=("127.0.0.0/8",))


def run_query(address: str, promql: str, policy: Policy = LOOPBACK_ALLOWED, timeout: float = 5.0) -> prometheus.QueryResult:
    return asyncio.run(prometheus.query(address, promql, timeout=timeout, policy=policy))


def test_values_with_their_labels(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("latency_p99")
    prometheus_server.exporter.set(metric, {"track": "canary"}, 0.120)
    prometheus_server.wait_for_value(metric, lambda values: values == (0.12,))

    result = run_query(prometheus_server.address, f'{metric}{{track="canary"}}')

    assert result.values == (0.12,)
    assert result.samples[0].label_dict["track"] == "canary"
    assert run_query(prometheus_server.url, f"scalar({metric}) * 100").values == (12.0,)


def test_an_empty_result_has_no_values(prometheus_server: PrometheusForTests) -> None:
    result = run_query(prometheus_server.address, unique_metric("absent"))
    assert result.empty and result.values == () and result.result_type == "vector"


def test_a_query_that_does_not_parse_is_an_error_with_prometheus_message(prometheus_server: PrometheusForTests) -> None:
    with pytest.raises(MeasurementError) as raised:
        run_query(prometheus_server.address, "sum(rate(http_requests_total[5m]) by (code)")
    assert not isinstance(raised.value, MeasurementInconclusive)
    assert raised.value.reason.startswith("Prometheus refuses the query: bad_data: ")
    assert "parse error" in raised.value.reason


def test_a_range_vector_is_an_error_naming_what_to_do(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("ranged")
    prometheus_server.exporter.set(metric, None, 1)
    prometheus_server.wait_for_value(metric, lambda values: values == (1.0,))
    with pytest.raises(MeasurementError, match=r"range vector.*rate\(\)"):
        run_query(prometheus_server.address, f"{metric}[1m]")


def test_a_stopped_prometheus_is_inconclusive_then_answers_again(prometheus_server: PrometheusForTests) -> None:
    metric = unique_metric("through_outage")
    prometheus_server.exporter.set(metric, None, 3)
    prometheus_server.wait_for_value(metric, lambda values: values == (3.0,))

    prometheus_server.stop()
    with pytest.raises(MeasurementInconclusive, match=r"cannot connect") as raised:
        run_query(prometheus_server.address, metric, timeout=2.0)
    assert raised.value.kind == "connection"

    prometheus_server.start()
    assert run_query(prometheus_server.address, metric).values == (3.0,)


def test_the_default_policy_refuses_loopback_and_says_how_to_allow_it(prometheus_server: PrometheusForTests) -> None:
    with pytest.raises(AddressNotAllowed) as raised:
        run_query(prometheus_server.address, "vector(1)", policy=Policy())
    assert raised.value.reason == (
        f"the analysis address {prometheus_server.address} is a loopback address (the operator's own pod); the"
        " operator does not connect there unless the platform allows it (apprelease run --allow-metric-server"
        f" {prometheus_server.address}, or --allow-registry-network CIDR)"
    )
    # A name that resolves to loopback is refused as well: the resolved address is checked.
    port = prometheus_server.address.rsplit(":", 1)[1]
    with pytest.raises(AddressNotAllowed, match=r"localhost:.* is a loopback address"):
        run_query(f"localhost:{port}", "vector(1)", policy=Policy())


def test_naming_the_server_exactly_allows_it(prometheus_server: PrometheusForTests) -> None:
    allowed = Policy(metric_servers=(prometheus_server.address,))
    assert run_query(prometheus_server.address, "vector(1)", policy=allowed).values == (1.0,)
    # A pattern restricts which servers may be asked, but does not open a refused address.
    pattern = Policy(metric_servers=("127.0.0.*:*",))
    with pytest.raises(AddressNotAllowed, match=r"loopback"):
        run_query(prometheus_server.address, "vector(1)", policy=pattern)
    with pytest.raises(AddressNotAllowed, match=r"not allowed by the operator's policy"):
        run_query(prometheus_server.address, "vector(1)", policy=Policy(metric_servers=("prometheus.monitoring:9090",)))
