"""The canary's analysis step in the planner: waits while measuring, moves on when it passes,
aborts when it fails, pauses when inconclusive, and names what stops it."""

from __future__ import annotations

from dataclasses import replace

from apprelease.api.analysis_template import AnalysisTemplateSpec
from apprelease.rollout import requests
from apprelease.rollout.analysis import AnalysisObserved, RawResult, TemplateKey
from apprelease.rollout.timefmt import format_time

from .sim import Sim, make_app

TEMPLATE = AnalysisTemplateSpec.model_validate({"metrics": [{
    "name": "errors", "interval": "10s", "count": 2, "successCondition": "result[0] < 0.01",
    "provider": {"prometheus": {"address": "http://prom:9090",
                                "query": 'errors{hash="{{args.canary-hash}}"}'}},
}]})
STEPS = {"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "error-rate"}]}},
                              {"setWeight": 50}]}}


def started(strategy: dict[str, object], template: AnalysisTemplateSpec = TEMPLATE) -> Sim:
    """The app at revision 1, then given revision 2 and settled (the template available)."""
    sim = Sim(make_app({"strategy": strategy}))
    sim.analysis = AnalysisObserved(templates={TemplateKey("error-rate"): template})
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    return sim


def canary_at_analysis() -> Sim:
    return started(STEPS)


def answer(sim: Sim, value: float | None, error: str | None = None) -> None:
    """What the runner does: take the due measurement, hand its result back."""
    assert sim.last is not None
    (request,) = sim.last.measurements
    sim.now = max(sim.now, request.due)
    result = RawResult(format_time(sim.now), values=None if value is None else (value,), error=error)
    results = {**sim.analysis.results, (request.run, request.metric, request.seq): result}
    sim.analysis = replace(sim.analysis, results=results)


def test_the_step_waits_for_its_measurements_then_moves_on() -> None:
    sim = canary_at_analysis()
    assert sim.status.current_step_index == 1
    (request,) = sim.last.measurements
    assert request.target == f'errors{{hash="{sim.status.canary_revision_hash}"}}'
    assert request.seq == 0 and request.due == sim.now
    assert "analysis running (errors 0/2)" in sim.status.message
    answer(sim, 0.001)
    sim.tick()
    assert sim.status.current_step_index == 1
    assert sim.last.measurements[0].seq == 1 and sim.last.requeue_after == 10
    assert sim.status.analysis is not None and sim.status.analysis.step.metrics[0].measurements[0].value == "[0.001]"
    answer(sim, 0.002)
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2
    assert "AnalysisSuccessful" in sim.reasons()


def test_nothing_new_measured_changes_nothing() -> None:
    sim = canary_at_analysis()
    answer(sim, 0.001)
    sim.tick()
    before = sim.status
    sim.tick(3)
    assert sim.status == before and not sim.last.events


def test_a_failed_analysis_aborts_with_the_query_the_value_and_the_condition() -> None:
    sim = canary_at_analysis()
    answer(sim, 0.5)
    sim.settle()
    assert sim.status.aborted and sim.status.abort_reason == "AnalysisFailed"
    message = sim.status.abort_message or ""
    assert "errors{hash=" in message and "[0.5]" in message and "result[0] < 0.01" in message
    assert sim.canary_replicas() == 0
    assert sim.status.analysis is not None and sim.status.analysis.step.phase == "Failed"
    assert any(reason == "Aborted" and "[0.5]" in text for reason, text in sim.events)


def test_an_unreachable_server_pauses_the_rollout_and_promote_resumes_it() -> None:
    sim = canary_at_analysis()
    for _ in range(5):  # consecutiveErrorLimit 4: the fifth error in a row decides
        answer(sim, None, error="connection refused")
        sim.tick()
    assert sim.status.phase == "Paused"
    paused = sim.status.condition("Paused")
    assert paused is not None and paused.reason == "AnalysisInconclusive"
    assert "connection refused" in sim.status.message and "apprelease promote shop" in sim.status.message
    assert not sim.status.aborted and not sim.last.measurements
    assert sum(reason == "AnalysisInconclusive" for reason, _ in sim.events) == 1
    sim.tick(60)
    assert sim.status.phase == "Paused"
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2


def test_a_missing_template_is_a_verdict_naming_it() -> None:
    sim = canary_at_analysis()
    sim.analysis = AnalysisObserved()
    sim.tick()
    assert sim.status.failure is not None and sim.status.failure.reason == "AnalysisInvalid"
    assert "spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate error-rate not found" in (
        sim.status.failure.message)
    assert sim.status.phase == "Stalled" or sim.status.condition("Stalled") is not None
    assert not sim.last.measurements


def test_a_refused_address_is_a_policy_violation_naming_the_field() -> None:
    sim = canary_at_analysis()
    sim.analysis = replace(sim.analysis, refused={"http://prom:9090": "is not allowed by --allow-metric-server"})
    sim.tick()
    assert sim.status.failure is not None and sim.status.failure.reason == "PolicyViolation"
    assert "spec.metrics[0].provider.prometheus.address" in sim.status.failure.message


def test_a_retry_after_a_failed_analysis_runs_it_anew() -> None:
    sim = canary_at_analysis()
    answer(sim, 0.5)
    sim.settle()
    sim.annotate(requests.RETRY, "1")
    sim.settle()
    assert sim.status.current_step_index == 1
    assert sim.status.analysis is not None and sim.status.analysis.step.phase == "Running"
    assert sim.last.measurements[0].seq == 0


def test_a_query_the_server_cannot_run_is_a_verdict_naming_the_query() -> None:
    sim = canary_at_analysis()
    (request,) = sim.last.measurements
    result = RawResult(format_time(sim.now), error="bad_data: parse error at char 7", invalid=True, target=request.target)
    sim.analysis = replace(sim.analysis, results={(request.run, request.metric, request.seq): result})
    sim.tick()
    assert sim.status.failure is not None and sim.status.failure.reason == "AnalysisInvalid"
    assert "AnalysisTemplate error-rate spec.metrics[0].provider.prometheus.query: bad_data" in sim.status.failure.message
    assert sim.last.requeue_after == 15  # looked at again: a fixed template runs
    assert not sim.status.aborted


BACKGROUND = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}],
                         "analysis": {"templates": [{"templateName": "error-rate"}], "startingStep": 1}}}
ENDLESS = AnalysisTemplateSpec.model_validate({"metrics": [{
    **TEMPLATE.metrics[0].to_wire(), "count": None, "consecutiveErrorLimit": 0}]})


def background_canary() -> Sim:
    return started(BACKGROUND, ENDLESS)


def test_background_analysis_runs_from_its_starting_step_beside_the_steps() -> None:
    sim = Sim(make_app({"strategy": BACKGROUND}))
    sim.analysis = AnalysisObserved(templates={TemplateKey("error-rate"): ENDLESS})
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.tick()
    assert sim.status.current_step_index == 0 and not sim.last.measurements  # startingStep 1
    sim.settle()
    assert sim.status.current_step_index == 1 and sim.status.phase == "Paused"  # the pause step holds
    assert sim.status.analysis is not None and sim.status.analysis.background is not None
    for value in (0.001, 0.002, 0.003):
        answer(sim, value)
        sim.tick()
    background = sim.status.analysis.background
    assert background.phase == "Running" and background.metrics[0].count == 3  # no count: until the end
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2
    assert sim.status.analysis is None


def test_a_finished_background_analysis_says_so_once() -> None:
    sim = started(BACKGROUND)  # count 2
    for value in (0.001, 0.002):
        answer(sim, value)
        sim.tick()
    assert sim.status.analysis.background.phase == "Successful"
    sim.tick(5)
    sim.tick(5)
    assert sum(reason == "AnalysisSuccessful" for reason, _ in sim.events) == 1
    assert sim.status.phase == "Paused" and not sim.last.events


def test_a_failing_background_analysis_aborts_at_any_step() -> None:
    sim = background_canary()
    answer(sim, 0.5)
    sim.settle()
    assert sim.status.aborted and sim.status.abort_reason == "AnalysisFailed"
    assert "background analysis at step 2/3 failed" in (sim.status.abort_message or "")


def test_an_inconclusive_background_analysis_pauses_and_a_promote_starts_it_anew() -> None:
    sim = background_canary()
    answer(sim, None, error="connection refused")
    sim.tick()
    assert sim.status.phase == "Paused" and "background analysis inconclusive" in sim.status.message
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick()
    background = sim.status.analysis.background
    assert background.phase == "Running" and background.metrics[0].count == 0
    assert sim.status.current_step_index == 2


def blue_green(gate: str = "prePromotionAnalysis", **strategy: object) -> Sim:
    """A blue-green app whose ``gate`` runs the template, given a new revision."""
    return started({"blueGreen": {gate: {"templates": [{"templateName": "error-rate"}]}, **strategy}})


def test_blue_green_switches_only_after_its_pre_promotion_analysis_passes() -> None:
    sim = blue_green(autoPromotionSeconds=0)
    assert sim.status.phase == "Progressing" and "prePromotionAnalysis running" in sim.status.message
    assert sim.status.blue_green is not None and not sim.status.blue_green.switched_at
    answer(sim, 0.001)
    sim.tick()
    answer(sim, 0.001)
    sim.settle()
    assert (sim.status.blue_green is not None and sim.status.blue_green.switched_at) or sim.status.stable_revision == 2
    assert "AnalysisSuccessful" in sim.reasons() and "AutoPromoted" in sim.reasons()


def test_blue_green_pre_promotion_analysis_failing_aborts_and_inconclusive_pauses() -> None:
    sim = blue_green(autoPromotionSeconds=0)
    answer(sim, 0.5)
    sim.settle()
    assert sim.status.aborted and sim.status.abort_reason == "AnalysisFailed"
    assert "[0.5]" in (sim.status.abort_message or "")
    sim = blue_green()
    for _ in range(5):
        answer(sim, None, error="connection refused")
        sim.tick()
    paused = sim.status.condition("Paused")
    assert sim.status.phase == "Paused" and paused is not None and paused.reason == "AnalysisInconclusive"


def test_a_template_created_later_clears_the_verdict_and_the_analysis_runs() -> None:
    sim = canary_at_analysis()
    templates = sim.analysis
    sim.analysis = AnalysisObserved()
    sim.tick()
    assert sim.status.failure is not None
    sim.analysis = templates
    sim.tick(15)
    assert sim.status.failure is None and sim.status.phase == "Progressing"
    assert len(sim.last.measurements) == 1


def switched() -> Sim:
    return blue_green("postPromotionAnalysis", autoPromotionSeconds=0, scaleDownDelaySeconds=0)


def test_blue_green_keeps_the_old_pods_until_the_post_promotion_analysis_passes() -> None:
    sim = switched()
    assert sim.status.blue_green is not None and sim.status.blue_green.switched_at
    assert "postPromotionAnalysis running" in sim.status.message and sim.status.stable_revision == 1
    answer(sim, 0.001)
    sim.tick()
    answer(sim, 0.001)
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2


def test_a_failed_post_promotion_analysis_switches_traffic_back() -> None:
    sim = switched()
    answer(sim, 0.5)
    sim.settle()
    assert sim.status.aborted and sim.status.abort_reason == "AnalysisFailed"
    assert "traffic back on revision 1" in (sim.status.abort_message or "")
    assert sim.status.stable_revision == 1 and sim.last is not None and sim.last.desired is not None
