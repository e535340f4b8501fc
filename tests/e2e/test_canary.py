"""Progressive delivery on the real control plane: steps, pauses, promote, abort, retry,
rollback (image and config), restart, automatic rollback, spec change mid-canary."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases
from tests.plugins.routing import Routed, wait_until_routed_only_once_ready
from tests.plugins.service_endpoints import ReadyEndpoints

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}]


def canary_app(name: str = "shop", steps: list | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.local/shop:v1",
            "replicas": 3,
            "port": 8080,
            "config": {"mountPath": "/app/config", "files": {"application.yml": "greeting: hello\n"}},
            "strategy": {"canary": {"steps": steps if steps is not None else STEPS}},
            **spec,
        },
    }


def pods(arl: AppReleases, name: str, track: str | None = None) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={name}" + (f",apprelease.io/track={track}" if track else "")
    items = arl.kubectl_json("pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def deployment(arl: AppReleases, name: str) -> dict[str, Any] | None:
    found = arl.kubectl_json("deployments", "--field-selector", f"metadata.name={name}")["items"]
    return found[0] if found else None


def image_of(dep: dict[str, Any]) -> str:
    return dep["spec"]["template"]["spec"]["containers"][0]["image"]


def config_of(arl: AppReleases, dep: dict[str, Any]) -> str:
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v.get("configMap"))
    cm = arl.kubectl_json("configmap", volume["configMap"]["name"])
    return cm["data"]["application.yml"]


def start(arl: AppReleases, app: dict[str, Any]) -> None:
    arl.apply(app)
    arl.wait_phase(app["metadata"]["name"], "Healthy", timeout=60, stableRevision=1)


def test_four_step_canary_driven_to_the_end(arl: AppReleases) -> None:
    start(arl, canary_app())
    stable_uids = {p["metadata"]["uid"] for p in pods(arl, "shop", "stable")}
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})

    status = arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    assert status["canaryRevision"] == 2 and status["setWeight"] == 20
    assert status["actualWeight"] == 25  # 1 canary pod beside 3 stable ones
    assert status["step"] == "2/4"
    assert len(pods(arl, "shop", "canary")) == 1
    # Stable stays at full size and untouched during the canary.
    assert {p["metadata"]["uid"] for p in pods(arl, "shop", "stable")} == stable_uids
    service = arl.kubectl_json("service", "shop")
    assert "apprelease.io/track" not in service["spec"]["selector"]  # both tracks get traffic

    arl.cli("promote", "shop")
    status = arl.wait("shop", lambda s: s.get("currentStepIndex") == 3, 60, "duration pause step")
    assert status["pauseStartTime"]
    assert len(pods(arl, "shop", "canary")) == 2  # 50% of 3 rounds up
    status = arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)
    assert "canaryRevision" not in status
    assert deployment(arl, "shop-canary") is None
    assert image_of(deployment(arl, "shop")) == "registry.local/shop:v2"
    wait_for(lambda: not pods(arl, "shop", "canary"), 60, 0.3, "canary pods removed")
    reasons = [e["reason"] for e in arl.events("shop")]
    for reason in ("CanaryStarted", "StepCompleted", "Promoted", "Promoting", "PromotionCompleted"):
        assert reason in reasons, reasons
    history = arl.cli("history", "shop").stdout
    assert "registry.local/shop:v2" in history and "current,stable" in history


def test_promote_full_skips_the_remaining_steps(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    arl.cli("promote", "shop", "--full")
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)
    assert not [e for e in arl.events("shop") if e["message"].startswith("step 3/4")]


def test_abort_then_retry(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    arl.cli("abort", "shop")
    status = arl.wait_phase("shop", "Degraded", timeout=60, aborted=True)
    assert status["abortReason"] == "AbortedByUser"
    assert "aborted" in status["message"]
    wait_for(lambda: not pods(arl, "shop", "canary"), 60, 0.3, "canary pods gone at once")
    assert arl.get("shop")["spec"]["image"] == "registry.local/shop:v2"  # spec left as it is
    stalled = next(c for c in arl.status("shop")["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"

    arl.cli("retry", "shop")
    status = arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1, aborted=False)
    assert len(pods(arl, "shop", "canary")) == 1


def test_rollback_mid_canary_restores_image_and_config_without_steps(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2",
                                "config": {"files": {"application.yml": "greeting: bonjour\n"}}}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    canary = deployment(arl, "shop-canary")
    assert config_of(arl, canary) == "greeting: bonjour\n"
    arl.cli("rollback", "shop")
    arl.wait_phase("shop", "Healthy", timeout=60, stableRevision=1)
    spec = arl.get("shop")["spec"]
    assert spec["image"] == "registry.local/shop:v1"
    assert spec["config"]["files"]["application.yml"] == "greeting: hello\n"
    wait_for(lambda: deployment(arl, "shop-canary") is None, 30, 0.3, "canary Deployment removed")
    assert config_of(arl, deployment(arl, "shop")) == "greeting: hello\n"


SLOW = {"metadata": {"labels": {"e2e.apprelease.io/behavior": "slow-ready"},
                     "annotations": {"e2e.apprelease.io/ready-after": "5s"}}}


def stable_pods_of(arl: AppReleases, revision: str) -> list[str]:
    return [p["metadata"]["name"] for p in pods(arl, "shop", "stable")
            if p["metadata"]["labels"].get("apprelease.io/revision") == revision]


def stable_back_on(arl: AppReleases, revision: str) -> bool:
    """The stable Deployment runs ``revision`` at full ready size (its rollout is complete)."""
    dep = deployment(arl, "shop")
    if dep is None or dep["metadata"]["annotations"].get("apprelease.io/revision") != revision:
        return False
    status, want = dep.get("status") or {}, dep["spec"]["replicas"]
    return (status.get("observedGeneration") == dep["metadata"]["generation"]
            and status.get("replicas") == status.get("updatedReplicas") == status.get("readyReplicas") == want)


def test_rollback_during_promotion_keeps_the_canary_until_stable_is_back(
    arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    """Every pod is ready 5 s after it starts. promote --full: the stable Deployment takes the
    canary's revision; a rollback then keeps the canary until stable is back on revision 1 at
    full ready size, and the Service never has fewer ready pods than the replicas."""
    start(arl, canary_app(podTemplate=SLOW))
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    canary_gone_early: list[float] = []

    def rolled_back() -> bool:
        # The canary first: once it is gone, the stable Deployment read after it must be back.
        canary = deployment(arl, "shop-canary")
        back = stable_back_on(arl, "1")
        if not back and canary is None:
            canary_gone_early.append(time.time())
        return back and canary is None

    with ReadyEndpoints(str(kube_cluster.kubeconfig), arl.namespace, "shop") as seen:
        arl.cli("promote", "shop", "--full")
        wait_for(lambda: arl.status("shop").get("promoting") and len(stable_pods_of(arl, "1")) < 3,
                 60, 0.2, "a revision-1 stable pod replaced by the promotion")
        arl.cli("rollback", "shop")
        wait_for(rolled_back, 90, 0.2, "stable back on revision 1, then the canary removed")
        arl.wait_phase("shop", "Healthy", timeout=60, stableRevision=1)
        wait_for(lambda: not stable_pods_of(arl, "2"), 60, 0.3, "revision 2's stable pods gone")
    assert not canary_gone_early, "the canary was removed before the stable Deployment was back"
    fewest = seen.fewest()
    assert len(fewest.ready) >= 3, f"the Service had {sorted(fewest.ready)} ready at {fewest.at}"
    assert "RolledBack" in {e["reason"] for e in arl.events("shop")}


def test_rollback_after_promotion_restores_config_and_skips_steps(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2",
                                "config": {"files": {"application.yml": "greeting: bonjour\n"}}}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    arl.cli("promote", "shop", "--full")
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)
    assert config_of(arl, deployment(arl, "shop")) == "greeting: bonjour\n"

    arl.cli("rollback", "shop", "--to-revision", "1")
    status = arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=3)
    assert "canaryRevision" not in status
    dep = deployment(arl, "shop")
    assert image_of(dep) == "registry.local/shop:v1"
    assert config_of(arl, dep) == "greeting: hello\n"
    assert "RolledBack" in [e["reason"] for e in arl.events("shop")]
    assert "CanaryStarted" not in [e["reason"] for e in arl.events("shop")][-5:]


def test_restart_rolls_every_pod_of_the_current_revision(arl: AppReleases) -> None:
    start(arl, canary_app())
    before = {p["metadata"]["uid"] for p in pods(arl, "shop")}
    arl.cli("restart", "shop")
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)

    def replaced() -> bool:
        now = {p["metadata"]["uid"] for p in pods(arl, "shop")}
        return len(now) == 3 and not (now & before)

    wait_for(replaced, 60, 0.3, "all pods replaced")
    template = deployment(arl, "shop")["spec"]["template"]
    assert "apprelease.io/restartedAt" in template["metadata"]["annotations"]
    assert image_of(deployment(arl, "shop")) == "registry.local/shop:v1"


def test_crash_looping_canary_is_aborted_automatically(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {
        "image": "registry.local/shop:v2-broken",
        "podTemplate": {"metadata": {"labels": {"e2e.apprelease.io/behavior": "not-ready"},
                                     "annotations": {"e2e.apprelease.io/restart-interval": "1s"}}},
    }})
    status = arl.wait_phase("shop", "Degraded", timeout=90, aborted=True)
    assert status["abortReason"] == "CrashLoop"
    assert "restarted" in status["abortMessage"]
    wait_for(lambda: not pods(arl, "shop", "canary"), 60, 0.3, "canary scaled away")
    assert image_of(deployment(arl, "shop")) == "registry.local/shop:v1"
    warnings = [e for e in arl.events("shop") if e["type"] == "Warning" and e["reason"] == "Aborted"]
    assert warnings


def test_progress_deadline_aborts_a_canary_that_never_becomes_ready(arl: AppReleases) -> None:
    start(arl, canary_app(progressDeadlineSeconds=8,
                          strategy={"canary": {"steps": STEPS, "maxRestarts": 1000}}))
    arl.patch("shop", {"spec": {
        "image": "registry.local/shop:v2-slow",
        "podTemplate": {"metadata": {"labels": {"e2e.apprelease.io/behavior": "slow-ready"},
                                     "annotations": {"e2e.apprelease.io/ready-after": "10m"}}},
    }})
    status = arl.wait_phase("shop", "Degraded", timeout=60, aborted=True)
    assert status["abortReason"] == "ProgressDeadlineExceeded"
    assert "progressDeadlineSeconds (8s)" in status["abortMessage"]


def test_spec_change_during_canary_restarts_at_step_one(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1, canaryRevision=2)
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v3"}})
    status = arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1, canaryRevision=3)
    assert image_of(deployment(arl, "shop-canary")) == "registry.local/shop:v3"
    assert "CanaryRestarted" in [e["reason"] for e in arl.events("shop")]
    assert status["stableRevision"] == 1


def test_nginx_traffic_routing_sets_exact_weight(arl: AppReleases) -> None:
    steps = [{"setWeight": 10}, {"pause": {}}]
    start(arl, canary_app(ingress={"host": "shop.example.com"},
                          strategy={"canary": {"trafficRouting": "nginx", "steps": steps}}))
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    status = arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    assert status["actualWeight"] == 10
    canary_ingress = arl.kubectl_json("ingress", "shop-canary")
    annotations = canary_ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    backend = canary_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "shop-canary"
    assert arl.kubectl_json("service", "shop-canary")["spec"]["selector"]["apprelease.io/track"] == "canary"
    arl.cli("promote", "shop")
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)
    wait_for(lambda: not arl.kubectl_json("ingresses", "--field-selector", "metadata.name=shop-canary")["items"],
             30, 0.3, "canary ingress removed")


def test_nginx_canary_weight_waits_for_a_ready_canary_pod(arl: AppReleases) -> None:
    """Weight follows readiness: while the canary pod starts (12 s), the canary Ingress gives
    it no share; the step's 10 % appears once it is Ready."""
    steps = [{"setWeight": 10}, {"pause": {}}]
    start(arl, canary_app(ingress={"host": "shop.example.com"},
                          strategy={"canary": {"trafficRouting": "nginx", "steps": steps}}))
    arl.patch("shop", {"spec": {
        "image": "registry.local/shop:v2",
        "podTemplate": {"metadata": {"labels": {"e2e.apprelease.io/behavior": "slow-ready"},
                                     "annotations": {"e2e.apprelease.io/ready-after": "12s"}}},
    }})

    def canary_ingress_weight() -> Routed:
        found = arl.kubectl_json("ingresses", "--field-selector", "metadata.name=shop-canary")["items"]
        if not found:
            return Routed(None)
        annotations = found[0]["metadata"].get("annotations") or {}
        return Routed(int(annotations.get("nginx.ingress.kubernetes.io/canary-weight", "0")))

    wait_until_routed_only_once_ready(arl, "shop", canary_ingress_weight, Routed(10))
    status = arl.wait_phase("shop", "Paused", timeout=30, currentStepIndex=1)
    assert status["setWeight"] == 10 and status["actualWeight"] == 10


def test_get_shows_the_tree(arl: AppReleases) -> None:
    start(arl, canary_app())
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    out = arl.cli("get", "shop").stdout
    assert "Paused" in out and "Step:" in out and "2/4" in out
    assert "registry.local/shop:v2 (canary)" in out and "registry.local/shop:v1 (stable)" in out
    assert "revision:2" in out and "shop-canary" in out
