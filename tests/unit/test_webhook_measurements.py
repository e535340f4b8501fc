"""A web hook measurement against a real local HTTP server: one measurement is one logical call
of the hook (a retry repeats only a call that got no answer: a transport failure, 5xx, 429,
within the measurement's deadline), and what comes of it is folded by the same Argo Rollouts
rules as Prometheus' (failureLimit, consecutiveErrorLimit: an Error is not a Failure)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from apprelease.analysis import webhook
from apprelease.analysis.errors import MeasurementInconclusive
from apprelease.api.analysis import AnalysisRunStatus
from apprelease.api.analysis_template import Metric
from apprelease.controller.analysis_clients import MetricClients
from apprelease.controller.analysis_runner import AnalysisRunner
from apprelease.domain import Policy
from apprelease.rollout.analysis import AnalysisObserved, ResolvedMetric, advance
from tests.plugins.cluster import NotYet, wait_for

from .scripted_server import Reply, scripted_server

LOOPBACK_ALLOWED = Policy(registry_networks_allowed=("127.0.0.0/8",))
PAYLOAD = {"name": "shop", "namespace": "team-a"}


def call(url: str, timeout: float = 5.0) -> webhook.WebhookResult:
    return asyncio.run(webhook.call(url + "/gate?token=s3cr3t", PAYLOAD, timeout=timeout, policy=LOOPBACK_ALLOWED))


# --- one measurement, one logical call --------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204])
def test_an_answered_call_is_made_once(status: int) -> None:
    with scripted_server(Reply(status, b"go")) as (url, script):
        assert call(url).passed
    assert len(script.calls) == 1


def test_the_templates_headers_reach_the_hook() -> None:
    metric = Metric.model_validate({"name": "gate", "provider": {"web": {
        "url": "http://127.0.0.1:1/gate", "headers": [{"name": "X-Team", "value": "payments"}]}}})
    outcome = advance(None, "run-1", "2026-12-05T00:00:00Z",
                      [ResolvedMetric("gates", metric, "http://127.0.0.1:1/gate", "http://127.0.0.1:1/gate", "metrics[0]")],
                      AnalysisObserved(), datetime(2026, 12, 5, tzinfo=UTC), PAYLOAD)
    headers = dict(outcome.requests[0].headers)
    assert headers == {"X-Team": "payments"}
    with scripted_server(Reply(200, b"go")) as (url, script):
        asyncio.run(webhook.call(url, PAYLOAD, policy=LOOPBACK_ALLOWED, headers=headers))
    assert script.headers[0]["X-Team"] == "payments"
    assert script.headers[0]["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [400, 403, 404, 412])
def test_a_client_error_is_the_hooks_verdict_and_never_retried(status: int) -> None:
    with scripted_server(Reply(status, b"error rate 7% above 1%"), Reply(200, b"go")) as (url, script):
        assert call(url) == webhook.WebhookResult(False, status, "error rate 7% above 1%")
    assert len(script.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_no_answer_yet_is_retried_within_the_measurement(status: int) -> None:
    with scripted_server(Reply(status, b"busy"), Reply(200, b"go")) as (url, script):
        assert call(url).passed
    assert len(script.calls) == 2


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_lasting_server_error_is_no_answer_naming_the_status(status: int) -> None:
    lasting = rf"127.0.0.1:\d+ answered HTTP {status}: overloaded"
    with scripted_server(Reply(status, b"overloaded")) as (url, script), \
            pytest.raises(MeasurementInconclusive, match=lasting) as no:
        call(url)
    assert len(script.calls) == 3
    assert "s3cr3t" not in str(no.value)


def test_retry_after_is_honoured_and_never_waited_past_the_deadline() -> None:
    with scripted_server(Reply(429, b"", {"Retry-After": "1"}), Reply(200, b"go")) as (url, script):
        assert call(url).passed
    assert len(script.calls) == 2 and script.calls[1] - script.calls[0] >= 0.9
    with scripted_server(Reply(429, b"", {"Retry-After": "120"})) as (url, script):
        started = time.monotonic()
        with pytest.raises(MeasurementInconclusive, match=r"answered HTTP 429"):
            call(url, timeout=3)
    assert len(script.calls) == 1 and time.monotonic() - started < 2


def test_a_hook_slower_than_the_deadline_is_called_once() -> None:
    with scripted_server(Reply(200, b"late", delay=2)) as (url, script):
        with pytest.raises(MeasurementInconclusive, match=r"within 0.5 s"):
            call(url, timeout=0.5)
        # No retry reaches the server afterwards (absence of change: watched, not slept on).
        quiet_until = time.monotonic() + 0.3
        while time.monotonic() < quiet_until:
            assert len(script.calls) == 1
            time.sleep(0.02)


# --- the measurements folded by the analysis' rules ------------------------------------------------

KEY = ("team-a", "shop")
RUN = "rev/step-1/2026-01-01T00:00:00Z"
NO_RETRY_ANSWER = [Reply(503, b"down")] * 3  # one measurement that gets no answer (3 tries)


class NoTemplates:
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        raise AssertionError("the test gives the metric itself")


def analyse(url: str, path: str = "/gate", **limits: Any) -> tuple[AnalysisRunStatus, int]:
    """Run one web hook metric to its verdict through the analysis runner, the real clients and
    the planner's fold; measurements are taken at once (their interval is not waited)."""
    url += path
    metric = Metric.model_validate({"name": "gate", "provider": {"web": {"url": url, "timeoutSeconds": 5}}, **limits})
    resolved = [ResolvedMetric("gate-template", metric, url, url, "f", "f", metric.count or 1)]
    runner = AnalysisRunner(NoTemplates(), MetricClients(LOOPBACK_ALLOWED), lambda key: None)
    status = None
    try:
        for _ in range(10):
            found = runner.observe(KEY, "team-a", ())
            outcome = advance(status, RUN, "2026-01-01T00:00:00Z", resolved, found, datetime.now(UTC), PAYLOAD)
            status = outcome.status
            if status.phase != "Running":
                return status, status.metrics[0].count
            (asked,) = outcome.requests
            runner.execute_for(KEY, (replace(asked, due=datetime.now(UTC)),))
            job = (RUN, "gate", asked.seq)
            wait_for(lambda job=job: job in runner.observe(KEY, "team-a", ()).results or NotYet(job),  # type: ignore[misc]
                     15, interval=0.02, message="the measurement")
    finally:
        runner.stop()
    raise AssertionError(f"no verdict: {status}")


def test_one_error_then_a_pass_is_successful() -> None:
    with scripted_server(*NO_RETRY_ANSWER, Reply(200, b"go")) as (url, script):
        status, measured = analyse(url)
    assert status.phase == "Successful" and measured == 2
    first = status.metrics[0].measurements[0]
    assert first.phase == "Error" and "answered HTTP 503: down" in first.message
    assert len(script.calls) == 4  # 3 tries of the first measurement, 1 of the second


def test_a_single_error_never_aborts_when_errors_are_tolerated() -> None:
    with scripted_server(*NO_RETRY_ANSWER, Reply(200, b"go")) as (url, _script):
        status, _measured = analyse(url, consecutiveErrorLimit=1)
    assert status.phase == "Successful"
    assert status.metrics[0].failed == 0 and status.metrics[0].error == 1


def test_one_failure_within_the_failure_limit_then_a_pass_is_successful() -> None:
    with scripted_server(Reply(403, b"gate closed"), Reply(200, b"go")) as (url, script):
        status, _ = analyse(url, failureLimit=1, count=2)
    assert status.phase == "Successful" and len(script.calls) == 2
    failed = status.metrics[0].measurements[0]
    assert failed.phase == "Failed" and "HTTP 403: gate closed" in failed.message


def test_a_failure_beyond_the_failure_limit_fails_naming_the_answer_never_the_token() -> None:
    with scripted_server(Reply(403, b"gate closed")) as (url, script):
        status, _ = analyse(url, path="/gate/s3cr3t?token=s3cr3t")
    assert status.phase == "Failed" and len(script.calls) == 1
    assert "HTTP 403: gate closed" in status.message and f"{url}/..." in status.message
    assert "s3cr3t" not in status.model_dump_json()


def test_errors_beyond_the_consecutive_error_limit_are_inconclusive_not_failed() -> None:
    with scripted_server(*NO_RETRY_ANSWER) as (url, script):
        status, measured = analyse(url, consecutiveErrorLimit=1)
    assert status.phase == "Inconclusive" and measured == 2
    assert status.metrics[0].failed == 0
    assert "2 errors in a row > consecutiveErrorLimit 1" in status.message
    assert len(script.calls) == 6
