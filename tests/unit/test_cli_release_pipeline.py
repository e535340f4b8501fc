"""`apprelease pipeline get`, `approve`, `reject` against a fake client: what is shown, what
is created (in the target stage's namespace, as the current user), readable refusals. The
real apiserver's answers (RBAC 403, the admission policy) are tests/e2e/test_pipeline.py's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from apprelease.cli import common
from apprelease.cli.main import _register_subcommands, cli
from apprelease.k8s.client import ApiError
from apprelease.rollout.pipeline import Artifact, artifact_store_data, artifact_store_name

PIPELINE = {
    "apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
    "metadata": {"name": "shop", "namespace": "pipelines"},
    "spec": {"apps": {"names": ["shop"]}, "stages": [
        {"name": "test", "namespace": "t"},
        {"name": "pre", "namespace": "p", "gate": {"auto": {"soakSeconds": 60}}},
        {"name": "prod", "namespace": "x", "gate": {"manual": {}}}]},
    "status": {
        "stages": [
            {"name": "test", "namespace": "t", "digest": "d2", "apps": [
                {"name": "shop", "image": "shop:v2", "configHash": "c2", "revision": 2,
                 "healthySince": "2026-12-04T12:00:00Z"}]},
            {"name": "prod", "namespace": "x", "digest": "d1", "apps": [
                {"name": "shop", "image": "shop:v1", "revision": 1, "message": "phase Progressing"}]}],
        "pending": [{"stage": "prod", "digest": "d2", "reason": "WaitingForApproval", "since": "2026-12-04T12:01:00Z",
                     "message": "waiting"}],
        "history": [{"stage": "pre", "digest": "d2", "decision": "Promoted", "by": "gate", "at": "2026-12-04T12:01:00Z",
                     "message": "promoted"}],
    },
}


# What prod runs, and the artifact d2 waiting to enter it (stored by the pipeline).
PROD_SHOP = {"metadata": {"name": "shop", "namespace": "x"}, "spec": {
    "image": "shop:v1", "config": {"files": {"app.yml": "a: 1\n", "same.yml": "s\n"},
                                   "nacos": {"items": [{"dataId": "shop.yaml", "content": "a: 1\n"}]}}}}
D2 = Artifact("shop:v2", {"app.yml": "a: 2\n", "same.yml": "s\n"}, ({"dataId": "shop.yaml", "content": "a: 2\n"},))


class FakeKube:
    def __init__(self, create_error: ApiError | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.create_error = create_error
        self.stored: dict[str, str] | None = artifact_store_data({"shop": D2})  # None: pruned

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        if kind == "ConfigMap":
            assert (namespace, name) == ("pipelines", artifact_store_name("shop", "d2"))
            if self.stored is None:
                raise ApiError(404, "NotFound", f'configmaps "{name}" not found')
            return {"data": self.stored}
        assert (kind, namespace, name) == ("ReleasePipeline", "pipelines", "shop")
        return PIPELINE

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        assert (kind, namespace) == ("AppRelease", "x")
        return [PROD_SHOP]

    def whoami(self) -> str:
        return "jane"

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.create_error:
            raise self.create_error
        self.created.append(obj)
        return {**obj, "metadata": {**obj["metadata"], "name": "shop-prod-abcde"}}


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    monkeypatch.setattr(common.Context, "kube", property(lambda self: fake))
    _register_subcommands()
    return fake


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["-n", "pipelines", *args], env={"COLUMNS": "200"})


def test_get_shows_stages_what_waits_and_history(kube: FakeKube) -> None:
    result = invoke("pipeline", "get", "shop")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(line.split()[:4] == ["test", "t", "-", "d2"] and "shop:v2" in line for line in lines), result.output
    assert any(line.startswith("prod") and "manual" in line and "not healthy: phase Progressing" in line
               for line in lines), result.output
    assert "prod: artifact d2 WaitingForApproval since 2026-12-04T12:01:00Z: waiting" in result.output
    assert "Promoted" in result.output and "gate" in result.output


def test_get_shows_what_would_change_in_the_waiting_stage(kube: FakeKube) -> None:
    result = invoke("pipeline", "get", "shop")
    assert result.exit_code == 0, result.output
    waiting = result.output.split("Waiting:", 1)[1].split("History", 1)[0]
    assert [line.strip() for line in waiting.strip().splitlines()[1:]] == [
        "shop: image shop:v1 → shop:v2",
        "shop: config file app.yml changed",
        "shop: Nacos shop.yaml (DEFAULT_GROUP) changed",
    ]


def test_get_says_why_it_cannot_show_the_change(kube: FakeKube) -> None:
    kube.stored = None
    result = invoke("pipeline", "get", "shop")
    assert result.exit_code == 0, result.output
    assert 'cannot show what would change: configmaps "shop-artifact-d2" not found' in result.output


def test_get_json_is_the_object(kube: FakeKube) -> None:
    result = invoke("pipeline", "get", "shop", "-o", "json")
    assert json.loads(result.output) == PIPELINE


def test_approve_creates_the_approval_in_the_target_namespace_as_me(kube: FakeKube) -> None:
    result = invoke("approve", "shop", "prod", "--comment", "CAB-1")
    assert result.exit_code == 0, result.output
    (approval,) = kube.created
    assert approval["metadata"] == {"generateName": "shop-prod-", "namespace": "x"}
    assert approval["spec"] == {"pipeline": "shop", "pipelineNamespace": "pipelines", "stage": "prod",
                                "artifact": "d2", "decision": "Approve", "approver": "jane", "comment": "CAB-1"}
    assert "releaseapproval x/shop-prod-abcde created: Approve artifact d2 for stage prod as jane" in result.output


def test_reject_or_approve_an_older_artifact(kube: FakeKube) -> None:
    assert invoke("reject", "shop", "prod").exit_code == 0
    assert invoke("approve", "shop", "prod", "--artifact", "d0").exit_code == 0
    assert [(a["spec"]["decision"], a["spec"]["artifact"]) for a in kube.created] == [("Reject", "d2"),
                                                                                       ("Approve", "d0")]


@pytest.mark.parametrize(("stage", "message"), [
    ("pre", "nothing waits for stage pre: name an artifact with --artifact"),
    ("qa", "pipeline shop has no stage qa (stages: test, pre, prod)"),
])
def test_approve_says_what_is_wrong(kube: FakeKube, stage: str, message: str) -> None:
    result = invoke("approve", "shop", stage)
    assert result.exit_code != 0 and message in result.output and kube.created == []


def test_a_403_is_printed_readably(kube: FakeKube) -> None:
    kube.create_error = ApiError(403, "Forbidden", 'releaseapprovals.apprelease.io is forbidden: User "bob" cannot'
                                                   ' create resource "releaseapprovals"')
    result = invoke("approve", "shop", "prod")
    assert result.exit_code != 0
    assert "not allowed to approve releases to stage prod (namespace x): releaseapprovals.apprelease.io is" \
           " forbidden" in result.output
    assert "Traceback" not in result.output


def test_other_errors_pass_through(kube: FakeKube) -> None:
    kube.create_error = ApiError(422, "Invalid", "spec.approver must be the requesting user jane, not bob")
    result = invoke("approve", "shop", "prod")
    assert result.exit_code != 0 and "spec.approver must be the requesting user" in result.output
