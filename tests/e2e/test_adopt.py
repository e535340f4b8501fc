"""Adopting a running app on the real control plane: the five order-service YAMLs of the ops
notes, applied with kubectl as they were by hand, taken over by `apprelease adopt` without
a pod restarting; the next image change is a canary. Helm-owned apps are refused whole."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from apprelease_dev.kwok_metrics import USAGE_CPU_ANNOTATION
from tests.plugins.cluster import NotYet, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess
from tests.support import DATA

pytestmark = pytest.mark.e2e

NAME = "order-service"
# Metrics need two scrapes (10 s resolution), the HPA acts every 5 s, and its resource map of
# scale targets refreshes about every 30 s.
HPA_TIMEOUT = 180


def five_yamls(namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DATA / "adopt" / "order-service.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def deployment(arl: AppReleases) -> dict[str, Any]:
    return deployment_named(arl, NAME)


def deployment_named(arl: AppReleases, name: str) -> dict[str, Any]:
    return arl.kubectl_json("deployment", name)


def running(arl: AppReleases) -> object:
    dep = deployment(arl)
    status = dep.get("status") or {}
    done = (status.get("observedGeneration") == dep["metadata"]["generation"]
            and status.get("readyReplicas") == status.get("updatedReplicas") == status.get("replicas") == 3)
    return dep if done else NotYet(status)


def pods(arl: AppReleases) -> dict[str, tuple[str, str | None]]:
    """Pod name → (uid, start time), of every pod the app's Service selects."""
    items = arl.kubectl_json("pods", "-l", "app=order-service")["items"]
    return {p["metadata"]["name"]: (p["metadata"]["uid"], (p.get("status") or {}).get("startTime"))
            for p in items if not p["metadata"].get("deletionTimestamp")}


def replica_sets(arl: AppReleases) -> list[str]:
    return sorted(r["metadata"]["name"] for r in arl.kubectl_json("replicasets", "-l", "app=order-service")["items"])


def owners(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["kind"], r["name"]) for r in obj["metadata"].get("ownerReferences") or []]


def start_by_hand(arl: AppReleases, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """As the ops notes did: kubectl apply of the five YAMLs (last-applied annotation included)."""
    arl.cluster.apply(*docs, namespace=arl.namespace)
    return wait_for(lambda: running(arl), 90, 0.5, "the hand-made Deployment running")


def test_the_five_yamls_are_adopted_without_a_restart_and_then_roll_out_a_canary(arl: AppReleases) -> None:
    start_by_hand(arl, five_yamls(arl.namespace))
    before_pods, before_sets = pods(arl), replica_sets(arl)
    cluster_ip = arl.kubectl_json("service", NAME)["spec"]["clusterIP"]
    assert len(before_pods) == 3 and len(before_sets) == 1

    preview = arl.cli("adopt", f"deploy/{NAME}", "--dry-run")
    assert "pods restart: no (pod template unchanged)" in preview.stdout
    with pytest.raises(AssertionError):
        arl.get(NAME)  # a dry run creates nothing

    arl.cli("adopt", f"deploy/{NAME}")
    spec = arl.get(NAME)["spec"]
    # The apiserver's defaults (dnsPolicy, terminationMessagePath, …) are not carried over.
    assert spec["podTemplate"] == {"metadata": {"labels": {"app": "order-service"}}}
    assert spec["config"]["subPath"] is True and spec["service"]["port"] == 80
    status = arl.wait_phase(NAME, "Healthy", timeout=90, stableRevision=1)
    # The watching view lists the adopted pods as `get` does (they carry none of our labels).
    watched = arl.cli("get", NAME, "-w", "--timeout", "4s").stdout
    assert all(f"{pod}  Pod" in watched for pod in before_pods), watched
    # What an HPA on the AppRelease counts (the scale subresource): the adopted pods.
    counted = arl.kubectl_json("pods", "-l", status["selector"])["items"]
    assert {p["metadata"]["name"] for p in counted} == set(before_pods)
    dep = wait_for(lambda: running(arl), 60, 0.5, "the adopted Deployment settled")
    assert pods(arl) == before_pods, "adopting restarted pods"
    assert replica_sets(arl) == before_sets, "adopting made a new ReplicaSet"
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "order-service"}}
    assert ("AppRelease", NAME) in owners(dep)
    # kubectl's record of what it applied stays readable.
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    service = arl.kubectl_json("service", NAME)
    assert service["spec"]["clusterIP"] == cluster_ip
    assert service["spec"]["selector"] == {"app": "order-service"}
    assert ("AppRelease", NAME) in owners(service)
    assert ("AppRelease", NAME) in owners(arl.kubectl_json("ingress", NAME))

    # A strategy is no new revision: still no restart. Then the image: a canary beside the
    # adopted pods, which stay as they are until promotion.
    arl.patch(NAME, {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}}})
    arl.wait_phase(NAME, "Healthy", timeout=60, stableRevision=1)
    assert pods(arl) == before_pods
    arl.patch(NAME, {"spec": {"image": "harbor.company.com/order/order-service:20251001v2"}})
    status = arl.wait_phase(NAME, "Paused", timeout=90, currentStepIndex=1)
    assert status["canaryRevision"] == 2
    now = pods(arl)
    assert {n: v for n, v in now.items() if n in before_pods} == before_pods
    canary = [n for n in now if n not in before_pods]
    assert len(canary) == 1 and canary[0].startswith(f"{NAME}-canary-")  # the Service reaches it

    arl.cli("promote", NAME, "--full")
    arl.wait_phase(NAME, "Healthy", timeout=120, stableRevision=2)

    def promoted() -> object:
        current = pods(arl)
        return current if len(current) == 3 and not set(current) & set(before_pods) else NotYet(current)

    wait_for(promoted, 90, 0.5, "the adopted pods replaced by revision 2")
    dep = deployment(arl)
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "order-service"}}  # immutable, kept
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":20251001v2")
    # kubectl's volume is gone with the adopted revision: the old managers own nothing now.
    assert [v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]] == ["apprelease-config"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    assert arl.kubectl_json("service", NAME)["spec"]["clusterIP"] == cluster_ip

    # Someone edits the Deployment by hand afterwards (as Rancher's UI would): the operator
    # takes its fields back and says who changed them.
    arl.cluster.kubectl("set", "image", f"deployment/{NAME}", f"{NAME}=harbor.company.com/order/order-service:hotfix",
                        "-n", arl.namespace)

    def reverted() -> object:
        events = [e for e in arl.events(NAME) if e["reason"] == "DriftReverted"]
        image = deployment(arl)["spec"]["template"]["spec"]["containers"][0]["image"]
        return events if events and image.endswith(":20251001v2") else NotYet((image, events))

    [event] = wait_for(reverted, 60, 0.5, "the hand edit reverted with an Event")
    assert event["type"] == "Warning" and "changed by kubectl-set" in event["message"]


def test_a_helm_owned_app_is_refused_and_left_exactly_as_it_was(arl: AppReleases) -> None:
    docs = five_yamls(arl.namespace)
    for doc in docs:
        doc["metadata"]["annotations"] = {**doc["metadata"].get("annotations", {}),
                                          "meta.helm.sh/release-name": "order",
                                          "meta.helm.sh/release-namespace": arl.namespace}
        doc["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    before = start_by_hand(arl, docs)
    imported = yaml.safe_load(arl.cli("import", f"deploy/{NAME}").stdout)  # reading is always fine
    assert imported["spec"]["image"] == "harbor.company.com/order/order-service:20250920v1"
    result = arl.cli("adopt", f"deploy/{NAME}", check=False)
    assert result.returncode == 4
    assert f"Deployment {NAME} is owned by Helm release order" in result.stderr
    assert f"Service {NAME} is owned by Helm release order" in result.stderr
    assert not arl.kubectl_json("appreleases")["items"]
    after = deployment(arl)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert owners(after) == [] and copy.deepcopy(after["spec"]) == before["spec"]


def test_a_drift_after_an_operator_restart_is_reverted_with_one_event_naming_the_manager(
    arl: AppReleases, operator: OperatorProcess,
) -> None:
    start_by_hand(arl, five_yamls(arl.namespace))
    arl.cli("adopt", f"deploy/{NAME}")
    arl.wait_phase(NAME, "Healthy", timeout=90, stableRevision=1)
    ours = deployment(arl)["spec"]["revisionHistoryLimit"]
    # Edited while the operator restarts (Rancher does not wait): the new process never applied
    # this object, so drift is read off its managedFields, not remembered.
    operator.stop()
    try:
        arl.cluster.kubectl("patch", "deployment", NAME, "-n", arl.namespace, "--type=merge",
                            "-p", '{"spec":{"revisionHistoryLimit":7}}')
    finally:
        operator.start()

    def reverted() -> object:
        events = [e for e in arl.events(NAME) if e["reason"] == "DriftReverted"]
        kept = deployment(arl)["spec"]["revisionHistoryLimit"]
        return events if events and kept == ours else NotYet((kept, events))

    [event] = wait_for(reverted, 60, 0.5, "the edit reverted with an Event")
    assert event["type"] == "Warning" and "changed by kubectl-patch" in event["message"], event["message"]
    assert ".spec.revisionHistoryLimit" in event["message"]
    arl.wait_phase(NAME, "Healthy", timeout=30, stableRevision=1)
    assert [e["reason"] for e in arl.events(NAME)].count("DriftReverted") == 1
    assert event.get("count", 1) == 1


def test_an_adopted_deployment_keeps_its_hpa_working_on_the_app_release(arl: AppReleases) -> None:
    """The HPA that scaled the Deployment scales the AppRelease after adoption (its scale
    subresource), counting the adopted pods, with none of them restarted."""
    by_hand = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": arl.namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}}, "template": {
            # 80 % of the request on every pod: the HPA (target 50 %) wants its maximum.
            "metadata": {"labels": {"app": "shop"}, "annotations": {USAGE_CPU_ANNOTATION: "80m"}},
            "spec": {"containers": [{"name": "shop", "image": "registry.local/shop:v1",
                                     "ports": [{"containerPort": 8080}],
                                     "resources": {"requests": {"cpu": "100m"}}}]}}},
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "shop", "namespace": arl.namespace},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
                 "minReplicas": 2, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                 "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                              "scaleDown": {"stabilizationWindowSeconds": 0}}},
    }
    arl.cluster.apply(by_hand, hpa, namespace=arl.namespace)

    def hpa_at(replicas: int) -> object:
        status = arl.kubectl_json("hpa", "shop").get("status") or {}
        seen = (status.get("currentReplicas"), status.get("desiredReplicas"))
        return status if seen == (replicas, replicas) else NotYet(seen)

    def shop_pods() -> dict[str, str]:
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in arl.kubectl_json("pods", "-l", "app=shop")["items"]
                if not p["metadata"].get("deletionTimestamp")}

    wait_for(lambda: hpa_at(3), HPA_TIMEOUT, 1, "the HPA scaling the hand-made Deployment to 3")
    wait_for(lambda: (len(shop_pods()) == 3 and (deployment_named(arl, "shop").get("status") or {}).get(
        "readyReplicas") == 3) or NotYet(shop_pods()), 60, 0.5, "3 pods ready")
    before = shop_pods()

    arl.cli("adopt", "deploy/shop")
    target = arl.kubectl_json("hpa", "shop")["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "name": "shop"}
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=1)
    # The HPA reads the AppRelease's scale subresource: the adopted pods counted.
    wait_for(lambda: hpa_at(3), HPA_TIMEOUT, 1, "the HPA working on the AppRelease")
    scale = arl.kubectl_json("appreleases", "shop", "--subresource=scale")
    assert scale["status"]["replicas"] == 3
    assert {p["metadata"]["name"] for p in arl.kubectl_json("pods", "-l", scale["status"]["selector"])["items"]} == set(before)

    # And it still scales: a higher maximum reaches the AppRelease and its Deployment.
    arl.cluster.kubectl("patch", "hpa", "shop", "-n", arl.namespace, "--type=merge", "-p", '{"spec":{"maxReplicas":4}}')
    wait_for(lambda: hpa_at(4), HPA_TIMEOUT, 1, "the HPA scaling the AppRelease to 4")
    wait_for(lambda: (arl.get("shop")["spec"]["replicas"], deployment_named(arl, "shop")["spec"]["replicas"]) == (4, 4)
             or NotYet(arl.get("shop")["spec"]["replicas"]), 60, 0.5, "the AppRelease and its Deployment at 4")
    after = shop_pods()
    assert {n: u for n, u in after.items() if n in before} == before, "a pod was restarted"
    assert len(after) == 4
