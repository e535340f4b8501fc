"""Per-app metrics: one series set per AppRelease, a series replaced when a label value
changes (no stale phase left at 1), everything removed when the app goes; and the JSON log
lines of a reconcile carrying the app's namespace, name and revision."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from apprelease.api.status import AppReleaseStatus, FailureStatus
from apprelease.controller.app_metrics import AppMetrics
from apprelease.controller.logs import JsonFormatter, install_record_factory, reconciling

KEY = ("team-a", "shop")


def samples(registry: CollectorRegistry, prefix: str = "apprelease_app") -> dict[str, float]:
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.startswith(prefix) or sample.name.startswith("apprelease_canary_step"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def status(**fields: Any) -> AppReleaseStatus:
    return AppReleaseStatus.model_validate({"phase": "Progressing", "strategy": "canary", **fields})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_an_app_has_info_weights_and_step(registry: CollectorRegistry) -> None:
    metrics = AppMetrics(registry)
    metrics.observe(KEY, status(setWeight=20, actualWeight=25, canaryRevision=2,
                                rollout={"canary": {"phase": "Stepping", "step": 1, "stepStartTime": "2026-12-04T10:00:00Z"}}))
    assert samples(registry) == {
        "apprelease_app_info{name=shop,namespace=team-a,phase=Progressing,strategy=canary}": 1,
        "apprelease_app_set_weight{name=shop,namespace=team-a}": 20,
        "apprelease_app_weight{name=shop,namespace=team-a}": 25,
        "apprelease_canary_step{name=shop,namespace=team-a}": 1,
    }


def test_a_phase_change_replaces_the_info_series(registry: CollectorRegistry) -> None:
    metrics = AppMetrics(registry)
    metrics.observe(KEY, status(setWeight=20, actualWeight=25))
    metrics.observe(KEY, status(phase="Healthy"))
    assert samples(registry) == {
        "apprelease_app_info{name=shop,namespace=team-a,phase=Healthy,strategy=canary}": 1,
    }


def test_failure_reason_is_a_series_while_it_lasts(registry: CollectorRegistry) -> None:
    metrics = AppMetrics(registry)
    failure = {"reason": "RegistryUnavailable", "since": "2026-11-23T10:00:00Z", "stalledAt": "2026-11-23T10:05:00Z"}
    metrics.observe(KEY, status(failure=failure))
    assert samples(registry)["apprelease_app_failure{name=shop,namespace=team-a,reason=RegistryUnavailable}"] == 1
    metrics.observe(KEY, status(failure={**failure, "reason": "ChildRejected"}))
    failures = {k for k in samples(registry) if k.startswith("apprelease_app_failure")}
    assert failures == {"apprelease_app_failure{name=shop,namespace=team-a,reason=ChildRejected}"}
    metrics.observe(KEY, status())
    assert not {k for k in samples(registry) if k.startswith("apprelease_app_failure")}


def test_every_series_of_an_app_goes_with_it(registry: CollectorRegistry) -> None:
    metrics = AppMetrics(registry)
    other = ("team-b", "web")
    failure = FailureStatus(reason="ChildRejected", since="t", stalled_at="t")
    metrics.observe(KEY, status(setWeight=20, actualWeight=25, canaryRevision=2,
                                rollout={"canary": {"phase": "Stepping", "step": 1, "stepStartTime": "2026-12-04T10:00:00Z"}})
                    .model_copy(update={"failure": failure}))
    metrics.observe(other, status(phase="Healthy", strategy="rolling"))
    metrics.forget(KEY)
    assert samples(registry) == {
        "apprelease_app_info{name=web,namespace=team-b,phase=Healthy,strategy=rolling}": 1,
    }
    metrics.forget(KEY)  # twice: nothing left to remove, no error


def test_a_status_without_phase_shows_unknown(registry: CollectorRegistry) -> None:
    metrics = AppMetrics(registry)
    metrics.observe(KEY, AppReleaseStatus())
    assert samples(registry) == {"apprelease_app_info{name=shop,namespace=team-a,phase=Unknown,strategy=rolling}": 1}


# JSON logs ------------------------------------------------------------------------------


def test_reconcile_log_lines_carry_namespace_name_and_revision() -> None:
    install_record_factory()
    logger = logging.getLogger("apprelease.test-json")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        with reconciling(KEY, revision=3) as context:
            logger.warning("applied %d objects", 2)
            context.revision = 4  # the plan moved on to a new revision
            logger.warning("promoted")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert {k: lines[0][k] for k in ("message", "namespace", "name", "revision", "level", "logger")} == {
        "message": "applied 2 objects", "namespace": "team-a", "name": "shop", "revision": 3,
        "level": "WARNING", "logger": "apprelease.test-json"}
    assert lines[1]["revision"] == 4
    assert "namespace" not in lines[2] and lines[2]["message"] == "outside"


def test_json_log_lines_carry_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("apprelease.x", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc_info"]


# Nacos calls ------------------------------------------------------------------------------


def _nacos_sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_nacos_requests_are_timed_and_failures_counted_per_server() -> None:
    import httpx

    from apprelease.registry.base import RegistryUnavailable
    from apprelease.registry.nacos import NacosRegistry, NacosSettings

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.example":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/v1/console/server/state"):
            return httpx.Response(200, json={"version": "2.3.2"})
        if request.url.path.endswith("/v1/ns/catalog/instances"):
            return httpx.Response(200, json={"count": 1, "list": [row]})
        return httpx.Response(503, json={"message": "no leader"})

    good, down = "up.example:8848", "down.example:8848"
    row = {"ip": "10.0.0.1", "port": 8080, "healthy": True, "enabled": True, "weight": 1.0,
           "ephemeral": True, "clusterName": "DEFAULT", "metadata": {}}
    before = {
        "ok": _nacos_sample("apprelease_nacos_request_duration_seconds_count", server=good, method="GET"),
        "refused": _nacos_sample("apprelease_nacos_request_errors_total", server=down, error="connection"),
        "5xx": _nacos_sample("apprelease_nacos_request_errors_total", server=good, error="http_5xx"),
    }
    settings = NacosSettings(server_addr=f"{down},{good}", service_name="shop", connect_attempts=1)
    with NacosRegistry(settings, transport=httpx.MockTransport(answer)) as nacos:
        assert len(nacos.list_instances()) == 1
        with pytest.raises(RegistryUnavailable):
            nacos.set_enabled("10.0.0.1", 8080, False)
    assert _nacos_sample("apprelease_nacos_request_duration_seconds_count", server=good, method="GET") >= before["ok"] + 2
    assert _nacos_sample("apprelease_nacos_request_errors_total", server=down, error="connection") >= before["refused"] + 1
    assert _nacos_sample("apprelease_nacos_request_errors_total", server=good, error="http_5xx") >= before["5xx"] + 1
