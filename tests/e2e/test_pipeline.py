"""ReleasePipeline on the real control plane: test → pre (auto gate, soak) → prod (manual gate).

Who may release to prod is RBAC on `create releaseapprovals` in prod's namespace; the
approval names its approver, and the admission policy (deploy/30-releaseapproval-policy.yaml,
enforced by the apiserver) refuses a forged name or an edited approval.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.cluster import NotYet, wait_for
from tests.plugins.pipeline import Stages, app

pytestmark = pytest.mark.e2e


def _forged_approval_refused(stages: Stages, kubeconfig: Path, digest: str) -> str:
    """Create an approval naming someone else as approver: the policy must refuse it (it may
    take a moment after installation before the apiserver enforces it)."""
    forged = {"apiVersion": "apprelease.io/v1alpha1", "kind": "ReleaseApproval",
              "metadata": {"generateName": "forged-", "namespace": stages.prod},
              "spec": {"pipeline": "shop", "pipelineNamespace": stages.pipelines, "stage": "prod",
                       "artifact": digest, "decision": "Approve", "approver": "alice"}}

    def refused() -> Any:
        result = subprocess.run([str(stages.cluster.kubectl_binary), f"--kubeconfig={kubeconfig}", "create", "-f",
                                 "-"], input=json.dumps(forged), capture_output=True, text=True, timeout=60,
                                check=False)
        if result.returncode == 0:
            # Created before the policy was enforced: remove it (as admin), it must not count.
            name = result.stdout.split()[0]
            stages.cluster.kubectl("delete", name, "-n", stages.prod)
            return NotYet(result.stdout)
        return result.stderr

    return str(wait_for(refused, 30, 1.0, "the admission policy to refuse a forged approver"))


def test_promotion_through_auto_and_manual_gates(stages: Stages) -> None:
    v1_files = {"application.yml": "greeting: hello\n"}
    stages.three_stages(v1_files, replicas=(1, 2, 3), soak_seconds=3)
    first = stages.wait_status(lambda s: len({st.get("digest") for st in s.get("stages") or []} - {""}) == 1
                               and all(st.get("healthySince") for st in s.get("stages") or []),
                               "every stage on the same artifact, Healthy")
    v1 = stages.stage(first, "test")["digest"]
    assert first.get("pending") == [], first

    # A new image and config in test: pre takes it by itself after the soak, prod waits.
    v2_files = {"application.yml": "greeting: hi\n"}
    stages.apply(stages.test, app("registry.local/shop:v2", v2_files, 1, "test"))
    stages.healthy(stages.test, 2)
    status = stages.wait_status(lambda s: stages.stage(s, "pre").get("lastPromoted") not in (None, v1),
                                "pre promoted by its gate")
    v2 = stages.stage(status, "test")["digest"]
    assert v2 != v1
    pre = stages.shop(stages.pre)
    assert pre["spec"]["image"] == "registry.local/shop:v2"
    assert pre["spec"]["config"]["files"] == v2_files
    assert pre["spec"]["replicas"] == 2 and pre["spec"]["env"] == [{"name": "STAGE", "value": "pre"}]
    promoted = [r for r in status["history"] if r["decision"] == "Promoted" and r["stage"] == "pre"]
    assert promoted[-1]["by"] == "gate" and promoted[-1]["digest"] == v2
    stages.healthy(stages.pre, 2)
    waiting = stages.wait_status(lambda s: any(p["reason"] == "WaitingForApproval" for p in s.get("pending") or []),
                                 "prod waiting for approval")
    assert [(p["stage"], p["digest"]) for p in waiting["pending"]] == [("prod", v2)]
    assert stages.shop(stages.prod)["spec"]["image"] == "registry.local/shop:v1"
    events = stages.cluster.get_json("events", "-n", stages.pipelines, "--field-selector",
                                     "involvedObject.kind=ReleasePipeline")["items"]
    assert "WaitingForApproval" in {e["reason"] for e in events}

    # A user bound only to view cannot approve: the apiserver answers 403.
    viewer_config, _ = stages.user("viewer", approve=False)
    denied = stages.cli(viewer_config, "approve", "shop", "prod", check=False)
    assert denied.returncode != 0
    assert "not allowed to approve releases to stage prod" in denied.stderr and "forbidden" in denied.stderr

    # An approver cannot forge another approver's name, then approves as themself.
    approver_config, approver = stages.user("approver", approve=True)
    refusal = _forged_approval_refused(stages, approver_config, v2)
    assert f"spec.approver must be the requesting user {approver}" in refusal
    listing = stages.cli(approver_config, "pipeline", "get", "shop")
    assert "WaitingForApproval" in listing.stdout and v2 in listing.stdout
    stages.cli(approver_config, "approve", "shop", "prod")

    status = stages.wait_status(lambda s: stages.stage(s, "prod").get("lastPromoted") == v2, "prod promoted")
    record = [r for r in status["history"] if r["stage"] == "prod" and r["decision"] == "Promoted"][-1]
    assert record["by"] == approver and record["approval"].startswith(f"{stages.prod}/shop-prod-")
    approval = stages.cluster.get_json("releaseapprovals", "-n", stages.prod)["items"][0]
    assert approval["spec"]["approver"] == approver
    assert approval["status"]["outcome"] == "Promoted"
    # The record of who approved cannot be edited afterwards.
    edit = stages.cluster.kubectl("patch", "releaseapproval", approval["metadata"]["name"], "-n", stages.prod,
                                  "--type=merge", "-p", json.dumps({"spec": {"approver": "alice"}}), check=False)
    assert edit.returncode != 0 and "immutable" in edit.stderr
    reasons = {e["reason"]: e["message"] for e in stages.cluster.get_json(
        "events", "-n", stages.pipelines, "--field-selector", "involvedObject.kind=ReleasePipeline")["items"]}
    assert f"Approved by {approver}" in reasons.get("Approved", "")
    assert "Promoted" in reasons

    # Prod releases with its own canary; its environment stays its own.
    prod = stages.healthy(stages.prod, 2, timeout=120)
    assert prod["spec"]["image"] == "registry.local/shop:v2"
    assert prod["spec"]["config"]["files"] == v2_files
    assert prod["spec"]["replicas"] == 3 and prod["spec"]["env"] == [{"name": "STAGE", "value": "prod"}]
    # The operator posts a transition's Events just after the status that shows it.
    def prod_events() -> Any:
        reasons = {e["reason"] for e in stages.cluster.get_json("events", "-n", stages.prod)["items"]}
        wanted = {"PipelinePromoted", "StepCompleted", "PromotionCompleted"}
        return reasons if wanted <= reasons else NotYet(sorted(wanted - reasons))
    wait_for(prod_events, 30, 0.5, "prod's canary Events")
    managers = {m["manager"] for m in stages.cluster.get_json(
        "appreleases", "shop", "-n", stages.prod, "--show-managed-fields")["metadata"]["managedFields"]}
    assert "apprelease-pipeline" in managers

    # v3 reaches pre and waits for prod; rejected, prod stays on v2.
    stages.apply(stages.test, app("registry.local/shop:v3", {"application.yml": "greeting: hey\n"}, 1, "test"))
    waiting = stages.wait_status(lambda s: [p["reason"] for p in s.get("pending") or []] == ["WaitingForApproval"]
                                 and s["pending"][0]["digest"] not in (v1, v2), "v3 waiting for prod")
    v3 = waiting["pending"][0]["digest"]
    stages.cli(approver_config, "reject", "shop", "prod", "--comment", "not this week")
    status = stages.wait_status(lambda s: any(r["decision"] == "Rejected" for r in s.get("history") or []),
                                "the rejection recorded")
    rejected = [r for r in status["history"] if r["decision"] == "Rejected"][-1]
    assert (rejected["digest"], rejected["by"]) == (v3, approver)
    assert status["pending"] == []
    assert stages.shop(stages.prod)["spec"]["image"] == "registry.local/shop:v2"

    # An artifact that never passed pre is refused, naming it.
    created = stages.cli(approver_config, "approve", "shop", "prod", "--artifact", "0123456789").stdout
    status = stages.wait_status(lambda s: any(r["decision"] == "Refused" for r in s.get("history") or []),
                                "the refusal recorded")
    refused = [r for r in status["history"] if r["decision"] == "Refused"][-1]
    assert "artifact 0123456789 never passed stage pre" in refused["message"]
    approval_name = created.split()[1].split("/")[1]
    outcome = wait_for(lambda: (stages.cluster.get_json("releaseapproval", approval_name, "-n", stages.prod)
                                .get("status") or NotYet("no status")), 30, 0.5, "the approval's outcome")
    assert outcome["outcome"] == "Refused" and "never passed stage pre" in outcome["message"]

    # A rollback: approving v1 (it passed pre long ago) brings prod back to v1's image and config.
    stages.cli(approver_config, "approve", "shop", "prod", "--artifact", v1)
    stages.wait_status(lambda s: stages.stage(s, "prod").get("lastPromoted") == v1, "prod back on v1")
    prod = stages.healthy(stages.prod, None, timeout=120)
    assert prod["spec"]["image"] == "registry.local/shop:v1"
    assert prod["spec"]["config"]["files"] == v1_files
    assert prod["spec"]["replicas"] == 3 and prod["spec"]["env"] == [{"name": "STAGE", "value": "prod"}]


def test_pipeline_rules_are_enforced_at_admission(stages: Stages) -> None:
    def refused(stage_list: list[dict[str, Any]]) -> str:
        body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
                "metadata": {"name": "bad", "namespace": stages.pipelines},
                "spec": {"apps": {"names": ["shop"]}, "stages": stage_list}}
        result = stages.cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
        assert result.returncode != 0, result.stdout
        return result.stderr

    test, pre = {"name": "test", "namespace": stages.test}, {"name": "pre", "namespace": stages.pre}
    assert "at least 2 stages" in refused([test])
    assert "stage names must be unique" in refused([test, {**pre, "name": "test", "gate": {"manual": {}}}])
    assert "stage namespaces must be unique" in refused([test, {**pre, "namespace": stages.test,
                                                                "gate": {"manual": {}}}])
    assert "the first stage has no gate" in refused([{**test, "gate": {"manual": {}}}, {**pre, "gate": {"manual": {}}}])
    assert "every stage after the first has a gate" in refused([test, pre])


def test_promotion_is_all_apps_or_none(stages: Stages) -> None:
    """Two apps picked by a selector; pre's second app cannot take config files (no mountPath):
    neither app changes, the status names the app and why; once fixed, both move."""
    files = {"application.yml": "greeting: hello\n"}

    def labelled(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "metadata": {"name": name, "labels": {"team": "shop"}}}

    for name in ("cart", "shop"):
        stages.apply(stages.test, labelled(name, app("registry.local/shop:v1", files, 1, "test")))
    stages.apply(stages.pre, labelled("cart", app("registry.local/shop:v1", files, 1, "pre")))
    no_config = app("registry.local/shop:v0", {}, 1, "pre")
    del no_config["spec"]["config"]
    stages.apply(stages.pre, labelled("shop", no_config))
    stages.cluster.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
        "metadata": {"name": "shop", "namespace": stages.pipelines},
        "spec": {"apps": {"selector": {"matchLabels": {"team": "shop"}}}, "stages": [
            {"name": "test", "namespace": stages.test},
            {"name": "pre", "namespace": stages.pre, "gate": {"auto": {"soakSeconds": 0}}},
        ]},
    }, namespace=stages.pipelines)
    status = stages.wait_status(lambda s: any(r["decision"] == "Failed" for r in s.get("history") or []),
                                "the promotion refused as a whole")
    failed = [r for r in status["history"] if r["decision"] == "Failed"][-1]
    assert "no app changed" in failed["message"] and "shop: " in failed["message"]
    assert "mountPath" in failed["message"], failed["message"]
    assert [p["reason"] for p in status["pending"]] == ["PromotionFailed"]
    cart = stages.cluster.get_json("appreleases", "cart", "-n", stages.pre)
    assert cart["spec"]["config"]["files"] == files and "apprelease-pipeline" not in json.dumps(
        stages.cluster.get_json("appreleases", "cart", "-n", stages.pre, "--show-managed-fields")["metadata"])

    # Fixed in pre (a mount path, the environment's part): the gate retries and both apps move.
    stages.apply(stages.pre, labelled("shop", app("registry.local/shop:v0", {}, 1, "pre")))
    stages.wait_status(lambda s: stages.stage(s, "pre").get("lastPromoted") == stages.stage(s, "test")["digest"],
                       "both apps promoted on the retry", timeout=120)
    for name in ("cart", "shop"):
        body = stages.cluster.get_json("appreleases", name, "-n", stages.pre)
        assert (body["spec"]["image"], body["spec"]["config"]["files"]) == ("registry.local/shop:v1", files)
