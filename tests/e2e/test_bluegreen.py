"""Blue-green on the real control plane: the preview runs without traffic, promotion switches
the active Service at once, the old pods stay for an instant rollback until the scale-down
delay ends, abort leaves the active revision alone, auto-promotion switches by itself."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases
from tests.plugins.service_endpoints import ReadyEndpoints

pytestmark = pytest.mark.e2e


def blue_green_app(name: str = "web", **strategy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.local/web:v1", "replicas": 2, "port": 8080,
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": 8, **strategy}},
        },
    }


def selector(arl: AppReleases, service: str) -> str | None:
    """The revision a Service selects, or "stable" when it selects the stable Deployment's pods."""
    found = arl.kubectl_json("services", "--field-selector", f"metadata.name={service}")["items"]
    if not found:
        return None
    labels = found[0]["spec"]["selector"]
    return labels.get("apprelease.io/revision") or labels.get("apprelease.io/track")


def endpoints(arl: AppReleases, service: str) -> set[str]:
    """Pods behind a Service, as Kubernetes routes to them (its EndpointSlices)."""
    slices = arl.kubectl_json("endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return {(e.get("targetRef") or {}).get("name", "") for s in slices for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")}


def pods_of(arl: AppReleases, app: str, revision: int) -> set[str]:
    items = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance={app},apprelease.io/revision={revision}")["items"]
    return {p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}


def previewing(arl: AppReleases, app: dict[str, Any]) -> None:
    arl.apply(app)
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.patch("web", {"spec": {"image": "registry.local/web:v2"}})
    arl.wait_phase("web", "Paused", timeout=60)


def test_promote_switches_at_once_and_the_old_revision_goes_after_the_delay(arl: AppReleases) -> None:
    previewing(arl, blue_green_app())
    assert selector(arl, "web") == "stable" and selector(arl, "web-preview") == "2"
    blue, green = pods_of(arl, "web", 1), pods_of(arl, "web", 2)
    assert len(blue) == 2 and len(green) == 2
    wait_for(lambda: endpoints(arl, "web") == blue and endpoints(arl, "web-preview") == green, 30, 0.3,
             "the active Service on blue, the preview Service on green")
    arl.cli("promote", "web")
    wait_for(lambda: endpoints(arl, "web") >= green and not endpoints(arl, "web") & blue, 30, 0.2,
             "the active Service on green")
    assert pods_of(arl, "web", 1) == blue  # kept, idle, for an instant rollback
    status = arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)
    assert not pods_of(arl, "web", 1)
    assert arl.kubectl_json("deployments", "--field-selector", "metadata.name=web-preview")["items"] == []
    assert status["actualWeight"] == 100 and selector(arl, "web") == "stable"
    assert {"Promoted", "PromotionCompleted"} <= {e["reason"] for e in arl.events("web")}


def test_rollback_inside_the_scale_down_delay_is_instant_and_makes_no_new_pods(arl: AppReleases) -> None:
    previewing(arl, blue_green_app(scaleDownDelaySeconds=120))
    blue = pods_of(arl, "web", 1)
    arl.cli("promote", "web")
    wait_for(lambda: selector(arl, "web") == "2", 30, 0.2, "the switch")
    arl.patch("web", {"spec": {"image": "registry.local/web:v1"}})  # roll back
    wait_for(lambda: endpoints(arl, "web") == blue, 20, 0.2, "traffic back on the very same blue pods")
    assert pods_of(arl, "web", 1) == blue
    status = arl.wait_phase("web", "Healthy", timeout=60)
    assert status["stableRevision"] == 1 and pods_of(arl, "web", 1) == blue
    assert "RolledBack" in {e["reason"] for e in arl.events("web")}


def test_abort_scales_the_preview_away_and_leaves_active_untouched(arl: AppReleases) -> None:
    previewing(arl, blue_green_app())
    blue = pods_of(arl, "web", 1)
    arl.cli("abort", "web")
    status = arl.wait_phase("web", "Degraded", timeout=60, aborted=True)
    assert status["abortReason"] == "AbortedByUser" and selector(arl, "web") == "stable"
    wait_for(lambda: not pods_of(arl, "web", 2), 60, 0.3, "the preview pods gone")
    assert pods_of(arl, "web", 1) == blue and endpoints(arl, "web") == blue


def test_auto_promotion_switches_by_itself(arl: AppReleases) -> None:
    previewing(arl, blue_green_app(autoPromotionSeconds=3))
    assert "switches at" in arl.status("web")["message"]
    wait_for(lambda: selector(arl, "web") == "2", 30, 0.3, "the automatic switch")
    assert "AutoPromoted" in {e["reason"] for e in arl.events("web")}
    arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)


SLOW = {"metadata": {"labels": {"e2e.apprelease.io/behavior": "slow-ready"},
                     "annotations": {"e2e.apprelease.io/ready-after": "5s"}}}


def test_rollback_during_promotion_brings_blue_back_before_traffic_returns_to_it(
    arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    """promote --full: the stable Deployment takes green, its pods starting in 5 s each, and
    blue's pods go one by one; a rollback then brings blue back to full size first, with the
    Service on green meanwhile, and only then switches and removes the preview."""
    app = blue_green_app()
    arl.apply(app)
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.patch("web", {"spec": {"image": "registry.local/web:v2", "podTemplate": SLOW}})
    arl.wait_phase("web", "Paused", timeout=60)
    with ReadyEndpoints(str(kube_cluster.kubeconfig), arl.namespace, "web") as seen:
        arl.cli("promote", "web", "--full")
        wait_for(lambda: len(pods_of(arl, "web", 1)) == 1 and arl.status("web").get("promoting"), 40, 0.2,
                 "a blue pod replaced by the promotion")
        arl.cli("rollback", "web")
        status = arl.wait_phase("web", "Healthy", timeout=90, stableRevision=1)
        wait_for(lambda: not pods_of(arl, "web", 2), 60, 0.3, "green gone")
    fewest = seen.fewest()
    assert len(fewest.ready) >= 2, f"the Service had {sorted(fewest.ready)} ready at {fewest.at}"
    assert status["stableRevision"] == 1 and "RolledBack" in {e["reason"] for e in arl.events("web")}
    assert endpoints(arl, "web") == pods_of(arl, "web", 1) and len(pods_of(arl, "web", 1)) == 2


def test_rollback_after_the_promotion_rolls_the_old_revision_in_without_losing_capacity(
    arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    """Blue is long gone: going back to it is a known-good revision (3) rolling into the
    stable Deployment, its pods starting in 5 s; the Service keeps the old ones meanwhile."""
    app = blue_green_app(scaleDownDelaySeconds=0)
    app["spec"]["podTemplate"] = SLOW
    previewing(arl, app)
    arl.cli("promote", "web")
    arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)
    wait_for(lambda: not pods_of(arl, "web", 1), 60, 0.3, "blue gone")
    with ReadyEndpoints(str(kube_cluster.kubeconfig), arl.namespace, "web") as seen:
        arl.cli("rollback", "web", "--to-revision", "1")
        arl.wait_phase("web", "Healthy", timeout=90, stableRevision=3)
        wait_for(lambda: not pods_of(arl, "web", 2), 60, 0.3, "revision 2's pods gone")
    fewest = seen.fewest()
    assert len(fewest.ready) >= 2, f"the Service had {sorted(fewest.ready)} ready at {fewest.at}"
    assert endpoints(arl, "web") == pods_of(arl, "web", 3)
