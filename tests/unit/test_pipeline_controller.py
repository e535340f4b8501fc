"""The pipeline controller's writes against a fake client: a promotion is a dry run for every
app, then the applies (all or none), and stored artifacts no stage lists are pruned. The real
apiserver's side is tests/e2e/test_pipeline.py's."""

from __future__ import annotations

import json
from typing import Any

from apprelease.api.pipeline import PendingPromotion, ReleasePipelineStatus
from apprelease.controller.pipelines import (
    PASS_SECONDS,
    PIPELINE_MANAGER,
    RESYNC_SECONDS,
    PipelineController,
    PipelineWakes,
    app_seen,
    artifact_store_name,
    pipeline_seen,
    template_users,
)
from apprelease.k8s.client import ApiError
from apprelease.rollout.pipeline import Artifact, Promotion

V2 = Artifact("shop:v2", {"app.yml": "a: 2\n"})


class FakeKube:
    def __init__(self, refuse: str | None = None, leftover: str | None = None) -> None:
        self.refuse = refuse  # the app whose apply the apiserver refuses
        self.leftover = leftover  # the app where another manager's file stays
        self.patches: list[tuple[str, bool]] = []
        self.deleted: list[str] = []
        self.config_maps: list[dict[str, Any]] = []

    def request(self, method: str, path: str, *, query: dict[str, Any], body: bytes, content_type: str,
                resource: str) -> dict[str, Any]:
        assert (method, content_type, query["fieldManager"], query["force"]) == (
            "PATCH", "application/apply-patch+yaml", PIPELINE_MANAGER, "true")
        app = path.rsplit("/", 1)[1]
        self.patches.append((app, query.get("dryRun") == "All"))
        if app == self.refuse:
            raise ApiError(422, "Invalid", "spec.config.mountPath: mountPath is required when files are given")
        spec = json.loads(body)["spec"]
        if app == self.leftover:
            spec["config"]["files"]["old.yml"] = ""
        return {"spec": spec}

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        assert (kind, namespace, query) == ("ConfigMap", "pipelines", {"labelSelector": "apprelease.io/pipeline=shop"})
        return self.config_maps

    def delete(self, kind: str, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        self.deleted.append(name)


def promotion(*apps: str) -> Promotion:
    return Promotion("prod", "x", "pre", "d2", {app: V2 for app in apps}, "alice", "x/a1")


def test_every_app_is_dry_run_before_any_is_applied() -> None:
    kube = FakeKube()
    assert PipelineController(kube)._promote(promotion("cart", "shop")) is None  # type: ignore[arg-type]
    assert kube.patches == [("cart", True), ("shop", True), ("cart", False), ("shop", False)]


def test_one_refusing_app_changes_no_app_and_is_named() -> None:
    kube = FakeKube(refuse="shop")
    failure = PipelineController(kube)._promote(promotion("cart", "shop"))  # type: ignore[arg-type]
    assert failure == "shop: spec.config.mountPath: mountPath is required when files are given"
    assert [dry for _, dry in kube.patches] == [True, True]


def test_a_file_another_manager_keeps_blocks_the_promotion() -> None:
    kube = FakeKube(leftover="cart")
    failure = PipelineController(kube)._promote(promotion("cart", "shop"))  # type: ignore[arg-type]
    assert failure is not None and "cart: config files old.yml are set by another field manager" in failure
    assert [dry for _, dry in kube.patches] == [True, True]


def test_stored_artifacts_no_stage_lists_are_pruned() -> None:
    kube = FakeKube()
    kube.config_maps = [{"metadata": {"name": artifact_store_name("shop", d), "uid": d}} for d in ("d1", "d2", "d3")]
    pipeline = {"metadata": {"name": "shop", "namespace": "pipelines", "uid": "u"}}
    PipelineController(kube)._prune_store(pipeline, {"d2", "d3"})  # type: ignore[arg-type]
    assert kube.deleted == ["shop-artifact-d1"]


# Waking pipelines: on change, not by polling --------------------------------------------------

A, B = ("pipes", "a"), ("pipes", "b")
NAMESPACES = {A: ("test-a", "prod-a"), B: ("test-b", "prod-b")}


def passed_all(wakes: PipelineWakes, now: float, status: ReleasePipelineStatus | None = None) -> list[Any]:
    due = wakes.take_due(NAMESPACES, now)
    for key in due:
        wakes.passed(key, status or ReleasePipelineStatus(), now)
    return due


def test_idle_pipelines_are_passed_at_start_then_only_on_resync() -> None:
    wakes = PipelineWakes()
    assert sorted(passed_all(wakes, 0.0)) == [A, B]
    for second in range(1, int(RESYNC_SECONDS)):
        assert wakes.take_due(NAMESPACES, float(second)) == [], second
    assert wakes.next_wait(NAMESPACES, 1.0) == RESYNC_SECONDS - 1.0
    assert sorted(passed_all(wakes, RESYNC_SECONDS)) == [A, B]


def test_a_change_wakes_only_the_pipelines_it_concerns() -> None:
    wakes = PipelineWakes()
    passed_all(wakes, 0.0)
    assert wakes.app_changed(("prod-b", "shop"), "sig-1", NAMESPACES) == [B]
    assert wakes.next_wait(NAMESPACES, 1.0) == 0.0
    assert passed_all(wakes, 1.0) == [B]
    # The same observation again (a write that changed nothing the pipeline reads): no pass.
    assert wakes.app_changed(("prod-b", "shop"), "sig-1", NAMESPACES) == []
    assert wakes.app_changed(("elsewhere", "shop"), "sig-9", NAMESPACES) == []
    wakes.changed(A)  # an approval naming it
    assert passed_all(wakes, 2.0) == [A]
    assert passed_all(wakes, 3.0) == []
    wakes.changed(B, (NAMESPACES[B], 1))  # its spec
    assert passed_all(wakes, 4.0) == [B]
    wakes.changed(B, (NAMESPACES[B], 1))  # its status, written by the pass: no pass for that
    assert passed_all(wakes, 5.0) == []


def test_a_pipeline_that_soaks_or_retries_is_passed_every_few_seconds() -> None:
    wakes = PipelineWakes()
    soaking = ReleasePipelineStatus(pending=[PendingPromotion(stage="pre", digest="d", reason="Soaking", since="x")])
    waiting = ReleasePipelineStatus(pending=[PendingPromotion(stage="prod", digest="d", reason="WaitingForApproval",
                                                              since="x")])
    for key in wakes.take_due(NAMESPACES, 0.0):
        wakes.passed(key, soaking if key == A else waiting, 0.0)
    assert wakes.take_due(NAMESPACES, PASS_SECONDS) == [A]
    wakes.passed(A, None, PASS_SECONDS)  # a failed pass: soon again
    assert wakes.take_due(NAMESPACES, 2 * PASS_SECONDS) == [A]


def test_what_a_pipeline_reads_of_an_app_decides_whether_it_wakes() -> None:
    app = {"metadata": {"name": "shop", "namespace": "t", "generation": 2, "labels": {"team": "shop"}},
           "spec": {"image": "shop:v1", "replicas": 2, "config": {"files": {"a.yml": "a: 1\n"}}},
           "status": {"phase": "Healthy", "observedGeneration": 2, "currentRevision": 1, "stableRevision": 1,
                      "readyReplicas": 2, "message": "ready"}}
    seen = app_seen(app)
    counts = {**app, "status": {**app["status"], "readyReplicas": 1, "message": "1/2 ready"}}
    assert app_seen(counts) == seen
    for changed in ({**app, "status": {**app["status"], "phase": "Progressing"}},
                    {**app, "spec": {**app["spec"], "image": "shop:v2"}},
                    {**app, "metadata": {**app["metadata"], "labels": {}}}):
        assert app_seen(changed) != seen


def analysed_pipeline(*stages: tuple[str, list[dict[str, Any]] | None]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "pipes", "generation": 3}, "spec": {"stages": [
        {"name": f"s{number}", "namespace": namespace, **({"analysis": {"templates": refs}} if refs else {})}
        for number, (namespace, refs) in enumerate(stages)]}}


def test_a_template_wakes_the_pipelines_whose_stages_name_it() -> None:
    seen = {
        A: pipeline_seen(analysed_pipeline(("test-a", None), ("pre-a", [{"templateName": "error-rate"}]))),
        B: pipeline_seen(analysed_pipeline(("test-b", [{"templateName": "error-rate"}]),
                                           ("pre-b", [{"templateName": "latency", "clusterScope": True}]))),
    }
    assert seen[A].namespaces == ("test-a", "pre-a")
    assert template_users(("pre-a", "error-rate"), seen) == [A]
    assert template_users(("test-b", "error-rate"), seen) == [B]
    # The same name in a namespace no stage names it from, or as the other kind: nobody.
    assert template_users(("test-a", "error-rate"), seen) == []
    assert template_users(("", "error-rate"), seen) == []
    assert template_users(("", "latency"), seen) == [B]  # a ClusterAnalysisTemplate
    assert template_users(("pre-b", "latency"), seen) == []
