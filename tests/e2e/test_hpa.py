"""A real HPA on an AppRelease during a canary: kube-controller-manager's HPA controller, fed
real metrics by metrics-server reading KWOK's simulated CPU usage, changes the replicas
mid-step. The canary follows the replicas the HPA chose without restarting or skipping a step,
an aborted canary stays at zero whatever the HPA does, and the HPA counts the pods spec.replicas
sizes (the stable ones, not the canary beside them)."""

from __future__ import annotations

from typing import Any

import pytest

from apprelease_dev.kwok_metrics import USAGE_CPU_ANNOTATION
from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.operator import AppReleases

pytestmark = pytest.mark.e2e
# Metrics need two scrapes (10 s resolution), the HPA acts every 5 s, and its resource map of
# scale targets refreshes about every 30 s.
HPA_TIMEOUT = 180


def app_with_load() -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "shop"},
        "spec": {
            "image": "registry.local/shop:v1", "replicas": 2, "port": 8080,
            "resources": {"requests": {"cpu": "100m"}},
            # 80 % of the request on every pod, new ones too: the HPA (target 50 %) wants more.
            "podTemplate": {"metadata": {"annotations": {USAGE_CPU_ANNOTATION: "80m"}}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def hpa(max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "name": "shop"},
            "minReplicas": 2, "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}, "scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }


def replicas_of(arl: AppReleases, deployment: str) -> int | None:
    found = arl.kubectl_json("deployments", "--field-selector", f"metadata.name={deployment}")["items"]
    return found[0]["spec"]["replicas"] if found else None


def scaled_to(arl: AppReleases, replicas: int, canary: int) -> object:
    app = arl.get("shop")
    seen = (app["spec"]["replicas"], replicas_of(arl, "shop"), replicas_of(arl, "shop-canary"))
    return True if seen == (replicas, replicas, canary) else NotYet({"spec, stable, canary": seen})


def test_a_live_hpa_mid_canary_neither_restarts_nor_skips_a_step_and_abort_stays_at_zero(
    arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    arl.apply(app_with_load())
    arl.wait_phase("shop", "Healthy", timeout=60)
    kube_cluster.apply({**hpa(4), "metadata": {"name": "shop", "namespace": arl.namespace}})
    wait_for(lambda: arl.get("shop")["spec"]["replicas"] == 4 or NotYet(arl.get("shop")["spec"]["replicas"]),
             HPA_TIMEOUT, 1, "the HPA to scale the AppRelease to its maximum (4)")
    status = arl.wait_phase("shop", "Healthy", timeout=60, readyReplicas=4)
    autoscaling = {c["type"]: c for c in status["conditions"]}["Autoscaling"]
    assert autoscaling["status"] == "True" and "HPA shop" in autoscaling["message"]

    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    status = arl.wait_phase("shop", "Paused", timeout=90, currentStepIndex=1)
    revision = status["canaryRevision"]
    assert replicas_of(arl, "shop-canary") == 2  # 50 % of the 4 the HPA chose
    # The HPA counts the pods spec.replicas sizes, the stable ones: with the canary's 2 beside
    # them, counting those too would have it add the canary's size on top.
    scale = arl.kubectl_json("appreleases", "shop", "--subresource=scale")
    assert scale["status"]["replicas"] == 4
    assert "apprelease.io/track=stable" in scale["status"]["selector"]

    # Mid-step, the HPA may go higher: the canary follows, the step stays where it was.
    kube_cluster.kubectl("patch", "hpa", "shop", "-n", arl.namespace, "--type=merge", "-p", '{"spec":{"maxReplicas":6}}')
    wait_for(lambda: scaled_to(arl, 6, 3), HPA_TIMEOUT, 1, "the HPA's 6 replicas, 3 of them canary")
    status = arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    assert status["canaryRevision"] == revision
    reasons = [e["reason"] for e in arl.events("shop")]
    assert "CanaryRestarted" not in reasons and reasons.count("CanaryStarted") == 1

    # Aborted, the canary stays at zero whatever the HPA chooses (Argo Rollouts #4973).
    arl.cli("abort", "shop")
    arl.wait_phase("shop", "Degraded", timeout=60, aborted=True)
    kube_cluster.kubectl("patch", "hpa", "shop", "-n", arl.namespace, "--type=merge", "-p", '{"spec":{"maxReplicas":8}}')
    wait_for(lambda: scaled_to(arl, 8, 0), HPA_TIMEOUT, 1, "the HPA's 8 replicas, none of them canary")
    assert arl.status("shop")["aborted"] is True


def test_an_hpa_on_our_deployment_gets_a_warning_that_says_what_to_change(
    arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    app = app_with_load()
    app["spec"]["strategy"] = {"rolling": {}}
    arl.apply(app)
    arl.wait_phase("shop", "Healthy", timeout=60)
    wrong = hpa(4)
    wrong["spec"]["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"}
    kube_cluster.apply({**wrong, "metadata": {"name": "shop", "namespace": arl.namespace}})

    def warned(status: dict[str, Any]) -> bool:
        condition = {c["type"]: c for c in status.get("conditions", [])}.get("Autoscaling", {})
        return condition.get("status") == "False" and condition.get("reason") == "HPATargetsDeployment"

    status = arl.wait("shop", warned, 60, "the Autoscaling warning")
    message = {c["type"]: c for c in status["conditions"]}["Autoscaling"]["message"]
    assert "kind AppRelease, name shop" in message
    assert any(e["reason"] == "HPATargetsDeployment" and e["type"] == "Warning" for e in arl.events("shop"))
