"""`apprelease config NAME`: each dataId's copies, md5, the revisions and pods reading them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from apprelease.api.spec import AppRelease
from apprelease.cli import common
from apprelease.cli.main import _register_subcommands, cli
from apprelease.k8s.history import to_controller_revision
from apprelease.render.hashing import revision_hash
from apprelease.rollout.nacos_config import config_hash_of
from apprelease.rollout.observed import RevisionRecord


def spec(content: str) -> dict[str, Any]:
    return {"image": "shop:v1", "config": {"nacos": {"serverAddr": "nacos:8848", "items": [
        {"dataId": "shop.yaml", "group": "SHOP", "content": content}]}}}


APPS = [AppRelease.model_validate({"metadata": {"name": "shop", "namespace": "ns", "uid": "u"}, "spec": spec(c)})
        for c in ("a: 1", "a: 2")]
RECORDS = [RevisionRecord(number=n + 1, hash=revision_hash(a.spec.revision_template()),
                          template=a.spec.revision_template(), created="2026-12-04T20:00:00Z")
           for n, a in enumerate(APPS)]
H1, H2 = (config_hash_of(r.template) for r in RECORDS)
STATUS = {"config": {"nacos": {"namespace": "public", "items": [{
    "dataId": "shop.yaml", "group": "SHOP", "md5": "m1", "formalHash": H1, "revisions": {H1: "m1", H2: "m2"}}],
    "drift": [{"group": "SHOP", "dataId": "shop.yaml", "md5": "m9", "savedTo": "SHOP.drift-m9", "state": "Saved"}],
    "lastDrift": "SHOP/shop.yaml edited by hand"}}}


class Kube:
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return {"metadata": {"name": "shop"}, "spec": spec("a: 2"), "status": STATUS}

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        if kind == "ControllerRevision":
            return [to_controller_revision(APPS[0], r) for r in RECORDS]
        return [{"metadata": {"name": "shop-canary-x", "labels": {"apprelease.io/revision": "2"}}},
                {"metadata": {"name": "shop-y", "labels": {"apprelease.io/revision": "1"}}}]


@pytest.fixture(autouse=True)
def kube(monkeypatch: pytest.MonkeyPatch) -> None:
    _register_subcommands()
    monkeypatch.setattr(common.Context, "kube", property(lambda self: Kube()))


def test_config_lists_formal_and_revision_copies_with_their_readers() -> None:
    result = CliRunner().invoke(cli, ["config", "shop", "-o", "json"], env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["group"], r["md5"], r["revisions"], r["pods"]) for r in rows] == [
        ("SHOP", "m1", [1], []),
        (f"SHOP.rev-{H1}", "m1", [1], ["shop-y"]),
        (f"SHOP.rev-{H2}", "m2", [2], ["shop-canary-x"]),
    ]
    assert rows[0]["handEdited"] == "SHOP.drift-m9"
    table = CliRunner().invoke(cli, ["config", "shop"], env={"KUBECONFIG": None})
    assert table.exit_code == 0 and f"SHOP.rev-{H2}" in table.output and "shop-canary-x" in table.output
    assert "last hand edit: SHOP/shop.yaml edited by hand" in table.output


def test_history_shows_the_nacos_config_hash_of_each_revision() -> None:
    result = CliRunner().invoke(cli, ["history", "shop"], env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    assert f"nacos:{H1}" in result.output and f"nacos:{H2}" in result.output
