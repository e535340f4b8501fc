"""The analysis runner: measurements taken when due, off the reconcile path, one lane per
server (a slow server delays only its own), results handed back once, the app woken."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apprelease.api.analysis import AnalysisRef
from apprelease.controller.analysis_runner import AnalysisRunner, Refused, analysis_refs
from apprelease.controller.pipelines import PipelineController, stage_key
from apprelease.k8s.client import ApiError
from apprelease.rollout.analysis import MeasurementRequest, TemplateKey
from apprelease.rollout.observed import Observed

from .sim import make_app

TEMPLATE = {"spec": {"metrics": [{"name": "errors", "successCondition": "result[0] < 1",
                                  "provider": {"prometheus": {"address": "http://prom:9090", "query": "up"}}}]}}
APP = make_app({"strategy": {"canary": {"steps": [
    {"setWeight": 20}, {"analysis": {"templates": [{"templateName": "error-rate"}, {"templateName": "gone"}]}}]}}})


class Templates:
    def __init__(self) -> None:
        self.gets = 0

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        self.gets += 1
        if name == "gone":
            raise ApiError(404, "NotFound", "not found")
        if name == "old":
            return {"spec": {"metrics": [{**TEMPLATE["spec"]["metrics"][0], "count": 0}]}}
        return TEMPLATE


class Measurer:
    def __init__(self) -> None:
        self.release_slow = threading.Event()
        self.calls: list[str] = []

    async def prometheus(self, address: str, query: str, timeout: float) -> tuple[float, ...]:
        self.calls.append(address)
        if "slow" in address:
            while not self.release_slow.is_set():
                await asyncio.sleep(0.01)
        if "down" in address:
            raise ConnectionError("connection refused")
        if "refused" in address:
            raise Refused("169.254.169.254 is a cloud metadata endpoint")
        return (0.5,)

    async def web(self, url: str, payload: Mapping[str, Any], timeout: float,
                  headers: Mapping[str, str]) -> tuple[bool, str]:
        return payload.get("name") == "shop", "HTTP 412"


def request(address: str, seq: int = 0, due: datetime | None = None, **extra: Any) -> MeasurementRequest:
    fields: dict[str, Any] = {"run": "r", "metric": address, "seq": seq, "due": due or datetime.now(UTC),
                              "kind": "prometheus", "address": address, "target": "up", "timeout": 5.0, **extra}
    return MeasurementRequest(**fields)


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def runner() -> tuple[AnalysisRunner, Measurer, list[tuple[str, str]]]:
    woken: list[tuple[str, str]] = []
    measurer = Measurer()
    return AnalysisRunner(Templates(), measurer, woken.append), measurer, woken


def results(run: AnalysisRunner) -> dict[tuple[str, str, int], Any]:
    found = run.state_for(APP, Observed()).analysis
    assert found is not None
    return dict(found.results)


def test_every_analysis_of_the_strategy_is_found() -> None:
    ref = {"templates": [{"templateName": "pre"}]}
    after = {"templates": [{"templateName": "post"}]}
    blue_green = make_app({"strategy": {"blueGreen": {"prePromotionAnalysis": ref, "postPromotionAnalysis": after}}})
    assert [r.templates[0].template_name for r in analysis_refs(blue_green)] == ["pre", "post"]
    background = make_app({"strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": ref}],
                                                   "analysis": {**ref, "startingStep": 1}}}})
    assert len(analysis_refs(background)) == 2


def test_a_template_the_model_refuses_says_why() -> None:
    run, _, _ = runner()
    old = make_app({"strategy": {"canary": {"steps": [
        {"setWeight": 20}, {"analysis": {"templates": [{"templateName": "old"}]}}]}}})
    found = run.state_for(old, Observed()).analysis
    assert found is not None
    assert found.templates[TemplateKey("old")] == "spec.metrics.0.count: Input should be greater than or equal to 1"
    run.stop()


def test_templates_are_read_and_a_missing_one_is_none() -> None:
    run, _, _ = runner()
    found = run.state_for(APP, Observed()).analysis
    assert found is not None
    assert found.templates[TemplateKey("gone")] is None
    assert found.templates[TemplateKey("error-rate")] is not None
    run.stop()


def test_a_measurement_is_taken_once_and_handed_back() -> None:
    run, measurer, woken = runner()
    asked = (request("http://prom:9090"),)
    started = time.monotonic()
    run.execute(APP, asked)
    assert time.monotonic() - started < 0.5  # scheduled, not taken on the reconcile's path
    wait_for(lambda: woken == [("ns", "shop")])
    assert results(run)[("r", "http://prom:9090", 0)].values == (0.5,)
    run.execute(APP, asked)  # asked again before the status has it: not taken twice
    time.sleep(0.05)
    assert measurer.calls == ["http://prom:9090"]
    run.execute(APP, (request("http://prom:9090", seq=1, due=datetime.now(UTC) + timedelta(hours=1)),))
    assert results(run) == {}  # folded into status: dropped here
    assert run.busy(("ns", "shop")) == 1
    run.execute(APP, ())  # the run ended: the pending measurement is cancelled
    assert run.busy(("ns", "shop")) == 0
    run.stop()


def test_a_slow_server_delays_only_its_own_measurements() -> None:
    run, measurer, woken = runner()
    other = APP.model_copy(update={"metadata": {**APP.metadata, "name": "cart"}})
    run.execute(APP, (request("http://slow:9090"),))
    run.execute(other, (request("http://prom:9090"),))
    wait_for(lambda: woken == [("ns", "cart")])
    measurer.release_slow.set()
    wait_for(lambda: len(woken) == 2)
    run.stop()


def test_no_answer_and_a_refused_address_are_errors_never_a_pass() -> None:
    run, _, _ = runner()
    run.execute(APP, (request("http://down:9090"), request("http://refused:9090")))
    wait_for(lambda: len(results(run)) == 2)
    found = results(run)
    assert found[("r", "http://down:9090", 0)].error == "connection refused"
    assert "refused" in (found[("r", "http://refused:9090", 0)].error or "")
    assert run._refusal("http://refused:9090") == "169.254.169.254 is a cloud metadata endpoint"
    run.stop()


def test_a_web_hook_gets_the_payload() -> None:
    run, _, _ = runner()
    run.execute(APP, (request("http://hook:8080/check", kind="web", payload={"name": "shop"}),))
    wait_for(lambda: len(results(run)) == 1)
    assert next(iter(results(run).values())).passed is True
    run.stop()


def test_liveness_fails_once_the_runner_stopped() -> None:
    run, _, _ = runner()
    assert run.health() == []
    run.stop()
    assert run.health() == ["analysis runner not running"]


def test_a_changed_question_is_asked_anew() -> None:
    run, measurer, woken = runner()
    run.execute(APP, (request("http://prom:9090"),))
    wait_for(lambda: len(woken) == 1)
    run.execute(APP, (request("http://prom:9090", target="up == 1"),))
    wait_for(lambda: len(woken) == 2)
    assert measurer.calls == ["http://prom:9090", "http://prom:9090"]
    assert next(iter(results(run).values())).target == "up == 1"
    run.stop()


def test_a_pipeline_stage_is_measured_under_its_own_key_without_waking_an_app() -> None:
    run, _, woken = runner()
    try:
        key = stage_key("pipes", "shop", "test")
        ref = AnalysisRef.model_validate({"templates": [{"templateName": "error-rate"}]})
        assert run.observe(key, "shop-test", [ref]).templates[TemplateKey("error-rate")] is not None
        run.execute_for(key, (request("http://prom:9090"),), wake=False)
        wait_for(lambda: run.observe(key, "shop-test", [ref]).results)
        (result,) = run.observe(key, "shop-test", [ref]).results.values()
        assert result.values == (0.5,)
        assert woken == []  # the pipeline passes by itself while it analyses; no AppRelease is enqueued
    finally:
        run.stop()


class GonePipeline:
    """The apiserver after the pipeline was deleted (its templates are still there)."""

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        raise ApiError(404, "NotFound", f"{kind} {name} not found")


def test_a_deleted_pipeline_leaves_no_measurements_behind() -> None:
    run, _, _ = runner()
    try:
        app_key = ("shop", "shop")
        stages = [stage_key("pipes", "shop", stage) for stage in ("test", "pre")]
        other = stage_key("pipes", "shop2", "test")  # a pipeline whose name starts the same
        for key in [*stages, other]:
            run.execute_for(key, (request("http://prom:9090"),), wake=False)
        run.execute_for(app_key, (request("http://prom:9090", due=datetime.now(UTC) + timedelta(hours=1)),))
        wait_for(lambda: all(run.observe(key, "shop-test", []).results for key in [*stages, other]))
        assert PipelineController(GonePipeline(), run).reconcile("pipes", "shop") is None  # type: ignore[arg-type]
        assert run.keys() == {other, app_key}
    finally:
        run.stop()


def test_a_stage_no_longer_analysed_leaves_no_measurements_behind() -> None:
    run, _, _ = runner()
    try:
        kept, dropped = stage_key("pipes", "shop", "pre"), stage_key("pipes", "shop", "test")
        for key in (kept, dropped):
            run.execute_for(key, (request("http://prom:9090"),), wake=False)
        wait_for(lambda: all(run.observe(key, "shop-test", []).results for key in (kept, dropped)))
        PipelineController(GonePipeline(), run).forget("pipes", "shop", keep_stages=["pre"])  # type: ignore[arg-type]
        assert run.keys() == {kept}
        run.execute_for(kept, ())  # its artifact is no longer current: nothing asked, nothing kept
        assert run.keys() == set()
    finally:
        run.stop()


class LateTemplates:
    def __init__(self) -> None:
        self.created = False

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        if not self.created:
            raise ApiError(404, "NotFound", "not found")
        return TEMPLATE


def test_a_template_created_after_it_was_found_missing_is_read_at_once() -> None:
    templates = LateTemplates()
    run = AnalysisRunner(templates, Measurer(), lambda key: None)
    try:
        ref = AnalysisRef.model_validate({"templates": [{"templateName": "late"}]})
        assert run.observe(("shop", "shop"), "shop", [ref]).templates[TemplateKey("late")] is None
        templates.created = True
        assert run.observe(("shop", "shop"), "shop", [ref]).templates[TemplateKey("late")] is None  # still cached
        run.template_changed("shop", TemplateKey("late"))
        assert run.observe(("shop", "shop"), "shop", [ref]).templates[TemplateKey("late")] is not None
    finally:
        run.stop()
