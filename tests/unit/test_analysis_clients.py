"""The analysis providers' clients (Prometheus, web hooks) against fake HTTP servers: how each
answer is read, what is retried, that one deadline bounds it all, and where the policy stops
a connection. The real Prometheus is in tests/analysis/."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from apprelease.analysis import prometheus, webhook
from apprelease.analysis.errors import AddressNotAllowed, MeasurementError, MeasurementInconclusive
from apprelease.domain import Policy

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
OPEN = Policy()  # the default policy: public addresses only
RESOLVED = {"prometheus.monitoring": ["10.20.0.7"], "metadata.evil": ["169.254.169.254"], "gate.ci": ["10.9.9.9"]}


def resolver(host: str, port: int) -> list[str]:
    return RESOLVED[host]


def run(handler: Handler, call: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await call(client)

    return asyncio.run(main())


def query(handler: Handler, promql: str = "up", address: str = "prometheus.monitoring:9090", *,
          timeout: float = 5.0, policy: Policy = OPEN) -> prometheus.QueryResult:
    return run(handler, lambda client: prometheus.query(address, promql, timeout=timeout, policy=policy,
                                                        http=client, resolver=resolver))


def answer(status: int, body: Any) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if not isinstance(body, bytes) else httpx.Response(status, content=body)

    return handle


def vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1700000000.1, v]} for m, v in series]}}


def errors(provider: str, server: str, kind: str) -> float:
    return REGISTRY.get_sample_value("apprelease_analysis_request_errors_total",
                                     {"provider": provider, "server": server, "error": kind}) or 0.0


# --- Prometheus: reading the answer ---------------------------------------------------------------


def test_a_vector_keeps_prometheus_order_and_each_series_labels() -> None:
    result = query(answer(200, vector(({"track": "stable"}, "0.01"), ({"track": "canary"}, "0.5"))))
    assert result.result_type == "vector"
    assert result.values == (0.01, 0.5)
    assert [s.label_dict for s in result.samples] == [{"track": "stable"}, {"track": "canary"}]


def test_a_scalar_is_one_value_and_special_values_are_floats() -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "2.5"]}}
    assert query(answer(200, scalar)).values == (2.5,)
    special = query(answer(200, vector(({}, "NaN"), ({}, "+Inf"), ({}, "-Inf"))))
    assert math.isnan(special.values[0]) and special.values[1:] == (math.inf, -math.inf)


def test_an_empty_vector_has_no_values_and_warnings_are_kept() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": []}, "warnings": ["PromQL info: ..."]}
    result = query(answer(200, body))
    assert result.empty and result.values == () and result.warnings == ("PromQL info: ...",)


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, {"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"},
     "Prometheus refuses the query: bad_data: invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"),
    (422, {"status": "error", "errorType": "execution", "error": "found duplicate series for the match group"},
     "Prometheus refuses the query: execution: found duplicate series for the match group"),
    (404, b"404 page not found",
     "prometheus.monitoring:9090 answered HTTP 404 on /api/v1/query (404 page not found): is the analysis address a Prometheus query API?"),
    (302, b"", "prometheus.monitoring:9090 answered HTTP 302 on /api/v1/query ((empty body)): is the analysis address a Prometheus query API?"),
    (200, {"status": "success", "data": {"resultType": "matrix", "result": []}},
     "the query returns a range vector (one list of values per series, e.g. `metric[5m]`); an analysis needs one value per series: wrap it in rate(), avg_over_time(), ..."),
    (200, {"status": "success", "data": {"resultType": "string", "result": [1, "x"]}},
     "the query returns a string, not a number (a scalar or an instant vector)"),
])
def test_a_wrong_question_is_an_error_with_the_reason(status: int, body: Any, message: str) -> None:
    with pytest.raises(MeasurementError) as raised:
        query(answer(status, body))
    assert raised.value.reason == message


@pytest.mark.parametrize(("status", "body", "reason"), [
    (503, {"status": "error", "errorType": "unavailable", "error": "too many queries"},
     "Prometheus at prometheus.monitoring:9090 answered HTTP 503: unavailable: too many queries"),
    (500, b"<html>oops</html>", "Prometheus at prometheus.monitoring:9090 answered HTTP 500: <html>oops</html>"),
    (200, b"<html>captive portal</html>",
     "Prometheus at prometheus.monitoring:9090 answered 200 without a query result: <html>captive portal</html>"),
    (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
     "Prometheus at prometheus.monitoring:9090 answered a vector result that does not read ('value')"),
])
def test_no_usable_answer_is_inconclusive(status: int, body: Any, reason: str) -> None:
    with pytest.raises(MeasurementInconclusive) as raised:
        query(answer(status, body))
    assert raised.value.reason == reason


def test_the_query_is_posted_to_the_checked_address_with_the_server_name_as_host() -> None:
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector(({}, "1")))

    query(handle, 'sum(rate(http_requests_total{code=~"5.."}[1m]))', "http://prometheus.monitoring:9090/prom/")
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://10.20.0.7:9090/prom/api/v1/query")
    assert request.headers["Host"] == "prometheus.monitoring:9090"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["query"] == 'sum(rate(http_requests_total{code=~"5.."}[1m]))'
    assert form["timeout"] == "5000ms"


@pytest.mark.parametrize(("address", "message"), [
    ("", "the analysis address is empty"),
    ("ftp://prometheus:21", "the analysis address 'ftp://prometheus:21' is not an http:// or https:// URL with a host"),
    ("http://user:secret@prometheus:9090", "the analysis address must not carry credentials in the URL"),
    ("prometheus:notaport", "the analysis address 'http://prometheus:notaport' is not a valid URL"),
])
def test_an_address_that_is_not_a_url_is_an_error(address: str, message: str) -> None:
    with pytest.raises(MeasurementError) as raised:
        query(answer(200, vector()), address=address)
    assert raised.value.reason.startswith(message)
    assert "secret" not in raised.value.reason


# --- Prometheus: retries and the deadline -------------------------------------------------------------


def test_a_transient_503_is_retried_within_the_deadline() -> None:
    calls = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="overloaded") if calls == 1 else httpx.Response(200, json=vector(({}, "4")))

    assert query(handle).values == (4.0,)
    assert calls == 2


def test_a_refused_connection_is_retried_then_inconclusive_and_counted() -> None:
    calls = 0
    before = errors("prometheus", "prometheus.monitoring:9090", "connection")

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(MeasurementInconclusive) as raised:
        query(handle)
    assert calls == 3
    assert raised.value.reason == "prometheus.monitoring:9090: cannot connect (ConnectError: [Errno 111] Connection refused)"
    assert raised.value.kind == "connection"
    assert errors("prometheus", "prometheus.monitoring:9090", "connection") == before + 1


def test_one_deadline_bounds_a_server_that_never_finishes() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=vector())

    started = time.monotonic()
    with pytest.raises(MeasurementInconclusive, match=r"no complete answer from prometheus.monitoring:9090 within 0.5 s"):
        query(handle, timeout=0.5)
    assert time.monotonic() - started < 2


# --- the policy ---------------------------------------------------------------------------------------


def test_a_name_resolving_to_a_metadata_address_is_refused_before_any_request() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    before = errors("prometheus", "metadata.evil:80", "refused_address")
    with pytest.raises(AddressNotAllowed) as raised:
        query(handle, address="metadata.evil")
    assert raised.value.reason == (
        "the analysis address metadata.evil:80 resolves to 169.254.169.254, a link-local address (where cloud metadata"
        " endpoints answer); the operator"
        " does not connect there unless the platform allows it (apprelease run --allow-metric-server"
        " metadata.evil:80, or --allow-registry-network CIDR)"
    )
    assert errors("prometheus", "metadata.evil:80", "refused_address") == before + 1


def test_the_apiserver_is_refused_whatever_is_allowed() -> None:
    policy = Policy(apiserver_endpoints=("10.20.0.7:9090",), registry_networks_allowed=("0.0.0.0/0",),
                    metric_servers=("prometheus.monitoring:9090",))
    with pytest.raises(AddressNotAllowed, match=r"resolves to 10.20.0.7, the Kubernetes apiserver's address; the operator never sends"):
        query(answer(200, vector()), policy=policy)


def test_metric_server_patterns_limit_which_servers_are_asked() -> None:
    policy = Policy(metric_servers=("*.monitoring:9090",))
    assert query(answer(200, vector(({}, "1"))), policy=policy).values == (1.0,)
    with pytest.raises(AddressNotAllowed, match=r"gate.ci:80 is not allowed by the operator's policy \(apprelease run --allow-metric-server\)"):
        query(answer(200, vector()), address="gate.ci", policy=policy)


def test_the_policy_method_matches_the_registry_rules() -> None:
    assert Policy().metric_address_refusal("p", 9090, "127.0.0.1") is not None
    assert Policy(metric_servers=("p:9090",)).metric_address_refusal("p", 9090, "127.0.0.1") is None
    assert Policy(nacos_servers=("p:9090",)).metric_address_refusal("p", 9090, "127.0.0.1") is not None
    assert Policy(registry_networks_allowed=("127.0.0.0/8",)).metric_address_refusal("p", 9090, "127.0.0.1") is None
    assert Policy().metric_address_refusal("p", 9090, "10.1.2.3") is None


# --- web hooks ------------------------------------------------------------------------------------------


def call(handler: Handler, url: str = "http://gate.ci/check?token=s3cr3t", payload: dict[str, Any] | None = None,
         timeout: float = 5.0, policy: Policy = OPEN) -> webhook.WebhookResult:
    return run(handler, lambda client: webhook.call(url, payload or {"name": "shop"}, timeout=timeout,
                                                    policy=policy, http=client, resolver=resolver))


def test_a_2xx_answer_passes_and_the_context_is_posted_as_json() -> None:
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, text="ok")

    payload = webhook.context_payload(name="shop", namespace="team-a", phase="Progressing", revision=4,
                                      canary_hash="abc12", stable_hash="def34", metadata={"step": "2"})
    assert call(handle, payload=payload) == webhook.WebhookResult(True, 202, "ok")
    (request,) = seen
    assert str(request.url) == "http://10.9.9.9/check?token=s3cr3t"
    assert request.headers["Content-Type"] == "application/json" and request.headers["Host"] == "gate.ci"
    assert json.loads(request.content) == {
        "name": "shop", "namespace": "team-a", "phase": "Progressing", "checksum": "abc12", "revision": "4",
        "canaryHash": "abc12", "stableHash": "def34", "metadata": {"step": "2"},
    }


def test_another_status_fails_with_an_excerpt_of_the_answer() -> None:
    result = call(answer(412, b"error rate 7%\nabove 1%\x00" + b"x" * 500))
    assert not result.passed and result.status == 412
    assert result.body_excerpt.startswith("error rate 7% above 1%xxx") and len(result.body_excerpt) == 203


def test_a_lasting_503_is_retried_then_no_answer() -> None:
    calls = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="down")

    with pytest.raises(MeasurementInconclusive, match=r"gate.ci:80 answered HTTP 503: down"):
        call(handle)
    assert calls == 3


def test_an_unreachable_or_slow_hook_is_inconclusive_and_the_token_is_never_shown() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    with pytest.raises(MeasurementInconclusive) as refused:
        call(refuse)
    with pytest.raises(MeasurementInconclusive, match=r"no complete answer from gate.ci:80 within 0.3 s"):
        call(hang, timeout=0.3)
    # The URL may carry a token: an error's text names the server instead, so the token never
    # reaches a status, an Event or a log.
    assert refused.value.reason == "gate.ci:80: cannot connect (ConnectError: cannot reach gate.ci:80)"


def test_a_hook_on_a_refused_address_is_an_error() -> None:
    with pytest.raises(AddressNotAllowed, match=r"the web hook address metadata.evil:80 resolves to 169.254.169.254"):
        call(answer(200, b""), url="http://metadata.evil/hook")


def test_one_client_per_event_loop_made_on_first_use() -> None:
    """Making an httpx client costs tens of milliseconds (its TLS context): measurements on
    one loop share one, with its kept-alive connections."""
    from apprelease.analysis.transport import shared_client

    async def two() -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        return shared_client(), shared_client()

    first, again = asyncio.run(two())
    assert first is again and not first.follow_redirects
    other, _ = asyncio.run(two())
    assert other is not first


def test_apprelease_run_takes_the_metric_servers_into_its_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from apprelease.cli.main import cli
    from apprelease.controller import run as run_module

    started: list[Any] = []
    monkeypatch.setattr(run_module, "run_operator", lambda options, **kwargs: started.append(options))
    result = CliRunner().invoke(cli, ["run", "--no-leader-elect", "--allow-metric-server", "prometheus.monitoring:9090",
                                      "--allow-metric-server", "*.hooks.svc:8080"])
    assert result.exit_code == 0, result.output
    (options,) = started
    assert options.policy.metric_servers == ("prometheus.monitoring:9090", "*.hooks.svc:8080")
    assert options.policy.metric_server_allowed("gate.hooks.svc:8080")
    assert not options.policy.metric_server_allowed("prometheus.other:9090")


def test_every_address_a_name_resolves_to_is_checked_and_a_name_that_does_not_resolve_is_inconclusive() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    def rebinding(host: str, port: int) -> list[str]:
        if host == "nowhere.invalid":
            raise OSError("Name or service not known")
        return ["10.20.0.7", "127.0.0.1"]  # one public, one the operator's own pod

    async def ask(client: httpx.AsyncClient, address: str) -> prometheus.QueryResult:
        return await prometheus.query(address, "up", timeout=2, policy=OPEN, http=client, resolver=rebinding)

    with pytest.raises(AddressNotAllowed, match=r"prometheus.monitoring:9090 resolves to 127\.0\.0\.1, a loopback"):
        run(handle, lambda client: ask(client, "prometheus.monitoring:9090"))
    with pytest.raises(MeasurementInconclusive) as raised:
        run(handle, lambda client: ask(client, "nowhere.invalid:9090"))
    assert (raised.value.reason, raised.value.kind) == ("nowhere.invalid:9090: cannot resolve nowhere.invalid", "connection")
