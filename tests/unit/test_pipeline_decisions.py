"""ReleasePipeline decisions (rollout/pipeline.py) with plain values: what each stage runs,
when a gate promotes, what waits, what an approval does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from apprelease.api.crd import other_crds, pipeline_crd_yaml, pipeline_crds
from apprelease.api.pipeline import (
    MAX_HISTORY,
    PromotionRecord,
    ReleasePipelineSpec,
    ReleasePipelineStatus,
)
from apprelease.rollout.pipeline import (
    ARTIFACT_KEY,
    GATE,
    AppObservation,
    ApprovalView,
    Artifact,
    Promotion,
    apply_body,
    approval_body,
    artifact_store_data,
    artifact_store_name,
    decide,
    decision_refused,
    leftover_files,
    observe_app,
    promotion_done,
    release_digest,
    stored_artifacts,
)
from tests.support import ROOT

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
V1 = Artifact("shop:v1", {"app.yml": "a: 1\n"})
V2 = Artifact("shop:v2", {"app.yml": "a: 2\n"})
V3 = Artifact("shop:v3", {})


def spec(prod_gate: dict[str, Any] | None = None, soak: int = 60) -> ReleasePipelineSpec:
    return ReleasePipelineSpec.model_validate({
        "apps": {"names": ["shop"]},
        "stages": [
            {"name": "test", "namespace": "t"},
            {"name": "pre", "namespace": "p", "gate": {"auto": {"soakSeconds": soak}}},
            {"name": "prod", "namespace": "x", "gate": prod_gate or {"manual": {}}},
        ],
    })


def seen(artifact: Artifact | None, healthy: bool = True, name: str = "shop") -> AppObservation:
    return AppObservation(name, artifact, revision=1, healthy=healthy, message="" if healthy else "Progressing")


def stages(test: Artifact | None, pre: Artifact | None, prod: Artifact | None,
           healthy: tuple[bool, bool, bool] = (True, True, True)) -> list[list[AppObservation]]:
    return [[seen(a, h)] for a, h in zip((test, pre, prod), healthy, strict=True)]


def digest(artifact: Artifact) -> str:
    return release_digest({"shop": artifact})


def run(pipeline: ReleasePipelineSpec, observed: list[list[AppObservation]], previous: ReleasePipelineStatus | None
        = None, approvals: tuple[ApprovalView, ...] = (), stored: dict[str, Any] | None = None,
        now: datetime = NOW) -> Any:
    return decide(pipeline, observed, previous or ReleasePipelineStatus(), approvals, stored or {}, now,
                  generation=1, pipeline="shop")


def approval(decision: str = "Approve", artifact: str = "", stage: str = "prod", namespace: str = "x",
             name: str = "a1", handled: bool = False, created: str = "2026-12-04T12:00:00Z") -> ApprovalView:
    return ApprovalView(namespace=namespace, name=name, stage=stage, artifact=artifact, decision=decision,  # type: ignore[arg-type]
                        approver="alice", created=created, handled=handled)


# The API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stages_", "message"), [
    ([{"name": "test", "namespace": "t"}], "at least 2 stages"),
    ([{"name": "a", "namespace": "t"}, {"name": "a", "namespace": "p", "gate": {"manual": {}}}], "names must be unique"),
    ([{"name": "a", "namespace": "t"}, {"name": "b", "namespace": "t", "gate": {"manual": {}}}],
     "namespaces must be unique"),
    ([{"name": "a", "namespace": "t", "gate": {"manual": {}}}, {"name": "b", "namespace": "p", "gate": {"manual": {}}}],
     "first stage has no gate"),
    ([{"name": "a", "namespace": "t"}, {"name": "b", "namespace": "p"}], "every stage after the first has a gate"),
    ([{"name": "a", "namespace": "t"}, {"name": "b", "namespace": "p", "gate": {}}], "exactly one of auto, manual"),
    ([{"name": "a", "namespace": "t"}, {"name": "b", "namespace": "p", "gate": {"auto": {}, "manual": {}}}],
     "exactly one of auto, manual"),
])
def test_pipeline_spec_rules(stages_: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReleasePipelineSpec.model_validate({"apps": {"names": ["shop"]}, "stages": stages_})


@pytest.mark.parametrize("apps", [{}, {"names": ["a"], "selector": {"matchLabels": {"a": "b"}}}])
def test_apps_are_names_or_a_selector(apps: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of names, selector"):
        ReleasePipelineSpec.model_validate({"apps": apps, "stages": spec().model_dump(by_alias=True)["stages"]})


def test_the_crds_carry_the_same_rules_as_cel() -> None:
    crd = pipeline_crds()["apprelease.io_releasepipelines.yaml"]
    stages_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["stages"]
    messages = {r["message"] for r in stages_schema["x-kubernetes-validations"]}
    assert {"a pipeline has at least 2 stages", "stage names must be unique", "stage namespaces must be unique",
            "every stage after the first has a gate"} <= messages
    assert any("first stage has no gate" in m for m in messages)


@pytest.mark.parametrize("file_name", sorted(other_crds()))
def test_committed_pipeline_crds_are_current(file_name: str) -> None:
    for where in (ROOT / "crds", ROOT / "deploy" / "helm" / "apprelease" / "files"):
        assert (where / file_name).read_text() == pipeline_crd_yaml(file_name), "run `make crds`"


# What a stage runs -------------------------------------------------------------------------------


def app_body(generation: int = 2, observed: int = 2, phase: str = "Healthy", stable: int | None = 3,
             current: int = 3, registration: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": generation},
            "spec": {"image": "shop:v1", "replicas": 9, "config": {"files": {"app.yml": "a: 1\n"}, "env": {"X": "1"}}},
            "status": {"observedGeneration": observed, "phase": phase, "message": "m", "currentRevision": current,
                       "stableRevision": stable, **({"registration": registration} if registration else {})}}


@pytest.mark.parametrize(("body", "healthy", "message"), [
    (None, False, "no AppRelease"),
    (app_body(observed=1), False, "does not describe the current spec"),
    (app_body(phase="Progressing"), False, "phase Progressing"),
    (app_body(stable=2), False, "stable runs revision 2, not 3"),
    (app_body(registration={"provider": "nacos", "summary": "1/2",
                            "revisions": [{"revision": 3, "expected": 2, "healthy": 1}]}), False, "Nacos (1/2)"),
    (app_body(registration={"provider": "nacos", "revisions": []}), False, "Nacos"),
    (app_body(registration={"provider": "nacos", "revisions": [{"revision": 3, "expected": 2, "healthy": 2}]}),
     True, ""),
    (app_body(registration={"provider": "kubernetes"}), True, ""),
    (app_body(), True, ""),
])
def test_observe_app(body: dict[str, Any] | None, healthy: bool, message: str) -> None:
    observation = observe_app("shop", body)
    assert observation.healthy is healthy
    assert message in observation.message
    if body is not None:
        assert observation.artifact == V1  # only image and files: replicas, env are the environment


def test_artifact_digest_covers_image_and_files_only() -> None:
    assert V1.digest != Artifact("shop:v1", {"app.yml": "a: 2\n"}).digest != Artifact("shop:v2", V1.files).digest
    assert V3.config_hash == "" and V1.config_hash
    assert Artifact.from_wire(V1.to_wire()) == V1
    assert release_digest({"a": V1, "b": V2}) != release_digest({"a": V2, "b": V1})


def test_first_pass_records_every_stage_and_what_passed() -> None:
    decision = run(spec(), stages(V1, V1, V1))
    assert [s.digest for s in decision.status.stages] == [digest(V1)] * 3
    assert all(s.healthy_since == "2026-12-04T12:00:00Z" for s in decision.status.stages)
    assert [p.digest for p in decision.status.stages[0].passed] == [digest(V1)]
    assert decision.to_store == {digest(V1): {"shop": V1}}
    assert decision.status.pending == [] and decision.promotions == ()
    assert "test=" in decision.status.message and decision.status.observed_generation == 1


def test_healthy_since_is_kept_while_healthy_and_reset_on_a_new_artifact() -> None:
    first = run(spec(), stages(V1, V1, V1)).status
    later = run(spec(), stages(V1, V1, V1), first, now=NOW + timedelta(minutes=5)).status
    assert later.stages[0].healthy_since == first.stages[0].healthy_since
    assert later.stages[0].apps[0].healthy_since == first.stages[0].apps[0].healthy_since
    changed = run(spec(), stages(V2, V1, V1), later, now=NOW + timedelta(minutes=6)).status
    assert changed.stages[0].healthy_since == "2026-12-04T12:06:00Z"
    unhealthy = run(spec(), stages(V2, V1, V1, (False, True, True)), later).status
    assert unhealthy.stages[0].healthy_since is None and unhealthy.stages[0].apps[0].message == "Progressing"


def test_incomplete_stage_has_no_artifact() -> None:
    decision = run(spec(), stages(V1, None, V1))
    assert decision.status.stages[1].digest == ""
    assert decision.status.stages[1].apps[0].message == "" and decision.status.stages[1].healthy_since is None


# Auto gate -------------------------------------------------------------------------------------------


def test_auto_gate_soaks_then_promotes_by_itself() -> None:
    previous = run(spec(), stages(V2, V1, V1)).status
    soaking = run(spec(), stages(V2, V1, V1), previous, now=NOW + timedelta(seconds=30))
    assert [(p.stage, p.reason) for p in soaking.status.pending] == [("pre", "Soaking")]
    assert "until 2026-12-04T12:01:00Z" in soaking.status.pending[0].message
    assert soaking.promotions == ()
    due = run(spec(), stages(V2, V1, V1), soaking.status, now=NOW + timedelta(seconds=60))
    (promotion,) = due.promotions
    assert (promotion.stage, promotion.namespace, promotion.from_stage, promotion.by) == ("pre", "p", "test", GATE)
    assert promotion.artifacts == {"shop": V2} and promotion.digest == digest(V2)


def test_soak_zero_promotes_at_once_and_unhealthy_source_never() -> None:
    assert run(spec(soak=0), stages(V2, V1, V1)).promotions
    assert run(spec(soak=0), stages(V2, V1, V1, (False, True, True))).promotions == ()


def test_no_promotion_when_the_target_has_it_or_had_it_from_us() -> None:
    assert run(spec(soak=0), stages(V2, V2, V1)).promotions == ()
    previous = run(spec(soak=0), stages(V2, V1, V1)).status
    promoted = promotion_done(previous, run(spec(soak=0), stages(V2, V1, V1)).promotions[0], None, NOW).status
    # Someone changed pre since: the pipeline does not fight them.
    assert run(spec(soak=0), stages(V2, V3, V1), promoted).promotions == ()


def test_auto_gate_with_a_missing_target_app_waits_naming_it() -> None:
    decision = run(spec(soak=0), [[seen(V2)], [seen(None, healthy=False)], [seen(V1)]])
    assert decision.promotions == ()
    (pending,) = decision.status.pending
    assert pending.reason == "PromotionFailed" and "no AppRelease shop in namespace p" in pending.message


def test_failed_auto_promotion_is_retried_after_a_while() -> None:
    first = run(spec(soak=0), stages(V2, V1, V1))
    failed = promotion_done(first.status, first.promotions[0], "shop: denied", NOW).status
    assert [(p.stage, p.reason) for p in failed.pending] == [("pre", "PromotionFailed")]
    soon = run(spec(soak=0), stages(V2, V1, V1), failed, now=NOW + timedelta(seconds=5))
    assert soon.promotions == () and soon.status.pending[0].reason == "PromotionFailed"
    later = run(spec(soak=0), stages(V2, V1, V1), failed, now=NOW + timedelta(seconds=31))
    assert later.promotions


def test_auto_gate_into_prod_with_several_stages() -> None:
    decision = run(spec({"auto": {"soakSeconds": 0}}, soak=0), stages(V2, V2, V1))
    assert [p.stage for p in decision.promotions] == ["prod"]


# Manual gate and approvals ------------------------------------------------------------------------


def test_manual_gate_waits_with_one_event() -> None:
    first = run(spec(), stages(V2, V2, V1))
    (pending,) = first.status.pending
    assert (pending.stage, pending.reason, pending.digest) == ("prod", "WaitingForApproval", digest(V2))
    assert "apprelease approve shop prod" in pending.message
    assert [e.reason for e in first.events] == ["WaitingForApproval"]
    assert [n.kind for n in first.notifications] == ["WaitingForApproval"]
    again = run(spec(), stages(V2, V2, V1), first.status, now=NOW + timedelta(minutes=1))
    assert again.events == () and again.status.pending[0].since == pending.since


def test_approval_promotes_that_artifact_as_the_approver() -> None:
    decision = run(spec(), stages(V2, V2, V1), approvals=(approval(artifact=digest(V2)),))
    (promotion,) = decision.promotions
    assert (promotion.stage, promotion.by, promotion.approval, promotion.artifacts) == (
        "prod", "alice", "x/a1", {"shop": V2})
    assert [e.message for e in decision.events if e.reason == "Approved"] == [
        f"Approved by alice: artifact {digest(V2)} to stage prod"]
    assert not [p for p in decision.status.pending if p.stage == "prod" and p.reason == "WaitingForApproval"]


@pytest.mark.parametrize(("view", "message"), [
    (approval(namespace="t"), "must be created in its namespace x, not t"),
    (approval(stage="qa"), "pipeline has no stage qa"),
    (approval(stage="test", namespace="t"), "is the first stage"),
    (approval(artifact="0123456789"), "artifact 0123456789 never passed stage pre"),
])
def test_approvals_refused_name_why(view: ApprovalView, message: str) -> None:
    if not view.artifact:
        view = ApprovalView(**{**view.__dict__, "artifact": digest(V2)})
    decision = run(spec(), stages(V2, V2, V1), approvals=(view,))
    assert decision.promotions == ()
    (record,) = decision.status.history
    assert record.decision == "Refused" and message in record.message and record.by == "alice"
    assert decision.approval_outcomes[view.key][0] == "Refused"
    assert [e.reason for e in decision.events if e.type == "Warning"] == ["ApprovalRefused"]


def test_older_artifact_is_promoted_from_the_store() -> None:
    history = run(spec(), stages(V1, V1, V1)).status
    now_on_v2 = run(spec(), stages(V2, V2, V2), history).status
    older = approval(artifact=digest(V1))
    decision = run(spec(), stages(V2, V2, V2), now_on_v2, approvals=(older,), stored={digest(V1): {"shop": V1}})
    (promotion,) = decision.promotions
    assert promotion.artifacts == {"shop": V1}
    missing = run(spec(), stages(V2, V2, V2), now_on_v2, approvals=(older,))
    assert "no longer stored" in missing.status.history[-1].message


def test_reject_records_and_stops_waiting() -> None:
    decision = run(spec(), stages(V2, V2, V1), approvals=(approval("Reject", digest(V2)),))
    assert decision.promotions == () and decision.status.pending == []
    record = decision.status.history[-1]
    assert (record.decision, record.by, record.approval, record.digest) == ("Rejected", "alice", "x/a1", digest(V2))
    assert decision.approval_outcomes["x/a1"][0] == "Rejected"
    later = run(spec(), stages(V2, V2, V1), decision.status)
    assert later.status.pending == [] and later.events == ()


def test_handled_approvals_are_not_taken_twice() -> None:
    view = approval(artifact=digest(V2))
    assert run(spec(), stages(V2, V2, V1), approvals=(approval(artifact=digest(V2), handled=True),)).promotions == ()
    first = run(spec(), stages(V2, V2, V1), approvals=(view,))
    done = promotion_done(first.status, first.promotions[0], None, NOW).status
    assert run(spec(), stages(V2, V2, V1), done, approvals=(view,)).promotions == ()


def test_one_promotion_into_a_stage_per_pass_oldest_approval_first() -> None:
    history = run(spec(), stages(V1, V1, V1)).status
    status = run(spec(), stages(V2, V2, V1), history).status
    newer = approval(artifact=digest(V1), name="b", created="2026-12-04T12:00:05Z")
    older = approval(artifact=digest(V2), name="a")
    decision = run(spec(), stages(V2, V2, V1), status, approvals=(newer, older), stored={digest(V1): {"shop": V1}})
    assert [p.approval for p in decision.promotions] == ["x/a"]
    assert "x/b" not in decision.approval_outcomes


def test_approval_into_an_auto_stage_takes_the_place_of_its_gate() -> None:
    decision = run(spec(soak=0), stages(V2, V1, V1), approvals=(approval(artifact=digest(V2), stage="pre",
                                                                         namespace="p"),))
    assert [(p.stage, p.by) for p in decision.promotions] == [("pre", "alice")]


# After the controller applied (or not) ---------------------------------------------------------------


def test_promotion_done_records_success() -> None:
    decision = run(spec(), stages(V2, V2, V1), approvals=(approval(artifact=digest(V2)),))
    result = promotion_done(decision.status, decision.promotions[0], None, NOW)
    assert result.status.stages[2].last_promoted == digest(V2)
    record = result.status.history[-1]
    assert (record.decision, record.by, record.stage, record.from_stage) == ("Promoted", "alice", "prod", "pre")
    assert "shop=shop:v2" in record.message
    assert [e.reason for e in result.events] == ["Promoted"] and result.approval_outcome[0] == "Promoted"  # type: ignore[index]


def test_promotion_done_records_failure_without_moving_the_stage() -> None:
    decision = run(spec(soak=0), stages(V2, V1, V1))
    result = promotion_done(decision.status, decision.promotions[0], "shop: mountPath is required", NOW)
    assert result.status.stages[1].last_promoted is None
    assert result.status.history[-1].decision == "Failed"
    assert "no app changed" in result.status.history[-1].message
    assert [e.type for e in result.events] == ["Warning"] and result.approval_outcome is None


def test_history_is_bounded() -> None:
    records = [PromotionRecord(stage="prod", digest=str(i), decision="Rejected", by="a", at="2026-12-04T00:00:00Z")
               for i in range(MAX_HISTORY)]
    decision = run(spec(), stages(V2, V2, V1), ReleasePipelineStatus(history=records),
                   approvals=(approval("Reject", digest(V2)),))
    assert len(decision.status.history) == MAX_HISTORY and decision.status.history[-1].approval == "x/a1"
    promotion = Promotion("prod", "x", "pre", "d", {"shop": V2}, GATE)
    assert len(promotion_done(decision.status, promotion, None, NOW).status.history) == MAX_HISTORY


def test_apply_body_carries_only_the_artifact() -> None:
    assert apply_body("shop", "x", V1, "apprelease.io/v1alpha1", "AppRelease") == {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "shop", "namespace": "x"},
        "spec": {"image": "shop:v1", "config": {"files": {"app.yml": "a: 1\n"}}}}
    assert apply_body("shop", "x", V3, "v", "k")["spec"] == {"image": "shop:v3"}


def test_leftover_files_of_another_manager_block_the_promotion() -> None:
    assert leftover_files("shop", {"image": "shop:v1", "config": {"files": dict(V1.files)}}, V1) is None
    extra = leftover_files("shop", {"image": "shop:v1", "config": {"files": {**V1.files, "old.yml": ""}}}, V1)
    assert extra is not None and "old.yml" in extra and "another field manager" in extra
    other = leftover_files("shop", {"image": "shop:v9", "config": {"files": dict(V1.files)}}, V1)
    assert other is not None and "shop:v9" in other


def test_a_selector_matching_nothing_says_so_once() -> None:
    first = run(spec(), [[], [], []])
    assert first.status.message.startswith("no apps to move: the selector matches no AppRelease in stage test")
    assert [e.reason for e in first.events] == ["NoApps"]
    assert run(spec(), [[], [], []], first.status).events == ()


NACOS_ITEMS = [{"dataId": "shop.yaml", "group": "SHOP", "type": "yaml", "content": "a: 1\n"},
               {"dataId": "shared.properties", "group": "SHOP", "type": "properties", "fromFile": "app.yml"}]


def test_nacos_config_items_move_with_the_artifact_and_their_server_stays() -> None:
    source = {"image": "shop:v1", "config": {"files": dict(V1.files), "nacos": {
        "items": NACOS_ITEMS, "serverAddr": "nacos-test:8848", "namespace": "test", "enforce": True}}}
    artifact = Artifact.of_spec(source)
    assert [dict(item) for item in artifact.nacos] == NACOS_ITEMS
    assert artifact.digest != V1.digest and artifact.config_hash != V1.config_hash
    assert Artifact.from_wire(artifact.to_wire()) == artifact
    changed = Artifact.of_spec({**source, "config": {**source["config"], "nacos": {
        "items": [{**NACOS_ITEMS[0], "content": "a: 2\n"}, NACOS_ITEMS[1]]}}})
    assert changed.digest != artifact.digest
    # Where the dataIds live and how they are kept are the environment's: not in the digest.
    elsewhere = Artifact.of_spec({**source, "config": {**source["config"], "nacos": {"items": NACOS_ITEMS,
                                                                                     "namespace": "prod"}}})
    assert elsewhere.digest == artifact.digest
    body = apply_body("shop", "prod", artifact, "v", "k")["spec"]
    assert body["config"]["nacos"] == {"items": NACOS_ITEMS}  # no serverAddr, namespace, enforce
    # Without items the digest is the one an artifact of image and files always had.
    assert Artifact.of_spec({"image": "shop:v1", "config": {"files": dict(V1.files)}}).digest == V1.digest


def test_nacos_items_left_by_another_manager_block_the_promotion() -> None:
    applied = {"image": "shop:v1", "config": {"files": dict(V1.files), "nacos": {"items": NACOS_ITEMS}}}
    message = leftover_files("shop", applied, V1)
    assert message is not None and "Nacos config items" in message and "another field manager" in message
    artifact = Artifact.of_spec(applied)
    assert leftover_files("shop", applied, artifact) is None


def test_the_stored_artifact_reads_back_as_it_was_stored() -> None:
    artifacts = {"shop": V1, "cart": Artifact("cart:v1", {}, ({"dataId": "c", "content": "x"},))}
    data = artifact_store_data(artifacts)
    assert list(data) == [ARTIFACT_KEY] and stored_artifacts(data) == artifacts
    assert artifact_store_name("shop", "abc") == "shop-artifact-abc"
    with pytest.raises(ValueError):
        stored_artifacts({ARTIFACT_KEY: "not json"})


def test_an_artifacts_spec_fields_are_what_a_promotion_applies() -> None:
    artifact = Artifact("shop:v1", dict(V1.files), ({"dataId": "shop.yaml", "content": "a: 1\n"},))
    assert artifact.to_spec() == apply_body("shop", "x", artifact, "v", "k")["spec"]
    assert Artifact.of_spec(artifact.to_spec()) == artifact
    assert V3.to_spec() == {"image": "shop:v3"}


def test_an_approval_names_the_stage_namespace_and_the_approver() -> None:
    body = approval_body(pipeline="shop", pipeline_namespace="pipes", stage="prod", stage_namespace="x",
                         artifact="d2", decision="Approve", approver="jane", comment="CAB-1")
    assert body["kind"] == "ReleaseApproval" and body["metadata"] == {"generateName": "shop-prod-", "namespace": "x"}
    assert body["spec"] == {"pipeline": "shop", "pipelineNamespace": "pipes", "stage": "prod", "artifact": "d2",
                            "decision": "Approve", "approver": "jane", "comment": "CAB-1"}
    assert decision_refused("Reject", "prod", "x", "forbidden") == (
        "not allowed to reject releases to stage prod (namespace x): forbidden")
