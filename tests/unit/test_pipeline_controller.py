"""The pipeline controller's writes against a fake client: a promotion is a dry run for every
app, then the applies (all or none), and stored artifacts no stage lists are pruned. The real
apiserver's side is tests/e2e/test_pipeline.py's."""

from __future__ import annotations

import json
from typing import Any

from apprelease.controller.pipelines import (
    PIPELINE_MANAGER,
    PipelineController,
    artifact_store_name,
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
