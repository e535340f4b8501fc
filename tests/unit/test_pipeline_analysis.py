"""A stage's analysis gates the promotion out of it (rollout/pipeline.py with the pure
analysis fold of rollout/analysis.py): Successful moves on, Failed refuses naming the query,
value and condition, Inconclusive or a template that cannot run waits; never a blind pass."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apprelease.api.analysis_template import AnalysisTemplateSpec
from apprelease.api.pipeline import ReleasePipelineSpec, ReleasePipelineStatus
from apprelease.rollout.analysis import AnalysisObserved, RawResult, TemplateKey
from apprelease.rollout.pipeline import ANALYSIS, decide, stage_analysis_args
from tests.unit.test_pipeline_decisions import NOW, V1, V2, approval, digest, stages

QUERY = 'sum(errors{namespace="{{args.namespace}}",app=~"{{args.app}}",artifact="{{args.revision}}"})'
TEMPLATE = AnalysisTemplateSpec.model_validate({"metrics": [{
    "name": "errors", "interval": "5s", "count": 1, "successCondition": "result[0] < 1",
    "provider": {"prometheus": {"address": "http://prom:9090", "query": QUERY}},
}]})
KEY = TemplateKey("errors")


def gated(prod_gate: dict[str, Any] | None = None) -> ReleasePipelineSpec:
    """test → pre (auto, no soak) → prod; test's artifact is analysed before it moves on."""
    return ReleasePipelineSpec.model_validate({
        "apps": {"names": ["shop"]},
        "stages": [
            {"name": "test", "namespace": "t", "analysis": {"templates": [{"templateName": "errors"}]}},
            {"name": "pre", "namespace": "p", "gate": prod_gate or {"auto": {"soakSeconds": 0}}},
            {"name": "prod", "namespace": "x", "gate": {"manual": {}}},
        ],
    })


def measured(run: str, *values: float) -> AnalysisObserved:
    results = {(run, "errors", 0): RawResult("2026-12-04T12:00:05Z", values=values, target="q")} if values else {}
    return AnalysisObserved(templates={KEY: TEMPLATE}, results=results)


def step(pipeline: ReleasePipelineSpec, previous: ReleasePipelineStatus | None, found: AnalysisObserved,
         approvals: tuple[Any, ...] = (), seconds: int = 0) -> Any:
    return decide(pipeline, stages(V1, V2, V2), previous or ReleasePipelineStatus(), approvals, {},
                  NOW + timedelta(seconds=seconds), generation=1, pipeline="shop", analysis={"test": found})


def test_args_name_the_stage_its_apps_and_the_artifact() -> None:
    assert stage_analysis_args(["a", "b"], "t", "abc") == {"app": "a|b", "namespace": "t", "revision": "abc"}


def test_the_promotion_waits_for_the_analysis_then_moves_on_when_successful() -> None:
    pipeline = gated()
    first = step(pipeline, None, measured(""))
    assert first.promotions == ()
    assert [(p.stage, p.reason) for p in first.status.pending] == [("pre", "Analyzing")]
    (request,) = first.analysis_requests["test"]
    assert request.target == f'sum(errors{{namespace="t",app=~"shop",artifact="{digest(V1)}"}})'
    run = first.status.stages[0].analysis.run
    assert run.startswith(digest(V1) + "/")
    second = step(pipeline, first.status, measured(run, 0.0), seconds=5)
    assert second.status.stages[0].analysis.phase == "Successful"
    assert [(p.stage, p.digest) for p in second.promotions] == [("pre", digest(V1))]


def test_a_failed_analysis_refuses_with_query_value_and_condition_once() -> None:
    pipeline = gated()
    first = step(pipeline, None, measured(""))
    run = first.status.stages[0].analysis.run
    failed = step(pipeline, first.status, measured(run, 7.0), seconds=5)
    assert failed.promotions == ()
    (pending,) = failed.status.pending
    assert pending.reason == "AnalysisFailed"
    assert "[7]" in pending.message and "result[0] < 1" in pending.message and 'artifact="' in pending.message
    assert [(e.type, e.reason) for e in failed.events] == [("Warning", "AnalysisFailed")]
    assert [(n.kind, n.stage) for n in failed.notifications] == [("AnalysisFailed", "test")]
    record = failed.status.history[-1]
    assert (record.stage, record.decision, record.by) == ("pre", "Refused", ANALYSIS)
    again = step(pipeline, failed.status, measured(run, 7.0), seconds=30)
    assert again.promotions == () and again.events == () and len(again.status.history) == 1


def test_an_inconclusive_analysis_waits_saying_why() -> None:
    template = TEMPLATE.model_copy(update={"metrics": [TEMPLATE.metrics[0].model_copy(
        update={"failure_condition": "result[0] > 5"})]})
    pipeline = gated()
    first = step(pipeline, None, AnalysisObserved(templates={KEY: template}))
    run = first.status.stages[0].analysis.run
    found = AnalysisObserved(templates={KEY: template},
                             results={(run, "errors", 0): RawResult("2026-12-04T12:00:05Z", values=(3.0,))})
    held = step(pipeline, first.status, found, seconds=5)
    assert held.promotions == ()
    (pending,) = held.status.pending
    assert pending.reason == "AnalysisInconclusive" and "neither successCondition nor failureCondition" in pending.message


def test_a_missing_template_waits_naming_it_never_passes() -> None:
    held = step(gated(), None, AnalysisObserved())
    assert held.promotions == ()
    (pending,) = held.status.pending
    assert pending.reason == "AnalysisInconclusive"
    assert "spec.stages[0].analysis.templates[0]: AnalysisTemplate errors not found" in pending.message


def test_an_approval_waits_for_the_analysis_and_is_refused_when_it_failed() -> None:
    pipeline = gated({"manual": {}})
    waiting = approval(artifact=digest(V1), stage="pre", namespace="p")
    first = step(pipeline, None, measured(""), approvals=(waiting,))
    assert first.promotions == () and first.approval_outcomes == {}
    assert [p.reason for p in first.status.pending] == ["Analyzing"]
    run = first.status.stages[0].analysis.run
    failed = step(pipeline, first.status, measured(run, 9.0), approvals=(waiting,), seconds=5)
    outcome, message = failed.approval_outcomes[waiting.key]
    assert outcome == "Refused" and "[9]" in message


def test_the_analysis_starts_anew_on_a_new_artifact_or_when_not_settled() -> None:
    pipeline = gated()
    first = step(pipeline, None, measured(""))
    unsettled = decide(pipeline, stages(V1, V2, V2, healthy=(False, True, True)), first.status, (), {}, NOW,
                       analysis={"test": measured("")})
    assert unsettled.status.stages[0].analysis is None
    assert unsettled.promotions == ()


def test_an_older_artifact_that_passed_the_stage_before_may_be_approved_again() -> None:
    """The hotfix-rollback case: the stage's analysis judges only what it runs now, but an
    artifact the history shows promoted out of that stage already passed its gate then."""
    from apprelease.api.pipeline import PromotionRecord

    pipeline = gated({"manual": {}})
    passed = PromotionRecord(stage="pre", from_stage="test", digest=digest(V1), decision="Promoted", by="alice",
                             approval="p/a0", at="2026-12-04T11:00:00Z", message="")
    on_v1 = decide(pipeline, stages(V1, V1, V1), ReleasePipelineStatus(), (), {}, NOW, generation=1,
                   pipeline="shop", analysis={"test": measured("")}).status
    previous = on_v1.model_copy(update={"history": [passed]})
    rollback = approval(artifact=digest(V1), stage="pre", namespace="p", name="a1")
    found = measured("")
    decision = decide(pipeline, stages(V2, V2, V2), previous, (rollback,), {digest(V1): {"shop": V1}}, NOW,
                      generation=1, pipeline="shop", analysis={"test": found})
    assert [(p.stage, p.digest) for p in decision.promotions] == [("pre", digest(V1))]
    never_passed = approval(artifact=digest(V1), stage="pre", namespace="p", name="a2")
    refused = decide(pipeline, stages(V2, V2, V2), on_v1, (never_passed,),
                     {digest(V1): {"shop": V1}}, NOW, generation=1, pipeline="shop", analysis={"test": found})
    assert refused.promotions == ()
    assert "judges only the artifact it runs now" in refused.approval_outcomes["p/a2"][1]
