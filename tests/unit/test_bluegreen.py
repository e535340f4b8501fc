"""Blue-green on the simulated cluster: preview without traffic, switch, instant rollback
inside the scale-down delay, promotion, abort, auto-promotion, and Nacos ordering."""

from __future__ import annotations

from typing import Any

from apprelease.render import render_children
from apprelease.rollout import requests

from .sim import Sim, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "drainSeconds": 5}


def blue_green(**strategy: Any) -> Sim:
    sim = Sim(make_app({"strategy": {"blueGreen": {"scaleDownDelaySeconds": 30, **strategy}}}))
    sim.settle()
    return sim


def service_selector(sim: Sim, name: str = "shop") -> dict[str, str]:
    assert sim.last is not None
    objs = render_children(sim.app, sim.last.desired)
    return next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == name)["spec"]["selector"]


def on_stable(sim: Sim) -> bool:
    """The active Service selects the stable Deployment's pods (whatever revision they run)."""
    return service_selector(sim) == {"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop",
                                     "apprelease.io/track": "stable"}


def test_preview_runs_beside_the_active_revision_without_traffic() -> None:
    sim = blue_green()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.phase == "Paused" and "promote to switch" in sim.status.message
    assert sim.image_of("preview") == "registry/shop:v2" and sim.deployments["preview"].replicas == 3
    assert on_stable(sim)  # active: still blue
    assert service_selector(sim, "shop-preview")["apprelease.io/revision"] == "2"
    assert sim.status.actual_weight == 0 and sim.status.blue_green.preview_ready_since
    assert "PreviewReady" in sim.reasons()
    # The HPA counts the active pods only.
    assert sim.status.selector.endswith("apprelease.io/track=stable") and sim.status.replicas == 3


def test_promote_switches_at_once_then_stable_takes_the_revision_after_the_delay() -> None:
    sim = blue_green()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick()
    assert service_selector(sim)["apprelease.io/revision"] == "2"  # traffic on green
    assert sim.stable_image() == "registry/shop:v1"  # blue kept, idle, for an instant rollback
    assert sim.status.actual_weight == 100 and sim.status.blue_green.switched_at
    sim.tick(29)
    assert sim.stable_image() == "registry/shop:v1"
    sim.tick(1)  # the scale-down delay is over
    assert sim.stable_image() == "registry/shop:v2"
    sim.settle()
    assert sim.status.phase == "Healthy" and "preview" not in sim.deployments
    assert sim.status.stable_revision == 2 and "PromotionCompleted" in sim.reasons()


def test_rollback_inside_the_delay_is_instant_and_makes_no_new_pods() -> None:
    sim = blue_green()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick()
    blue_pods = [p.name for p in sim.pods["stable"]]
    serial = sim.serial
    sim.edit(image="registry/shop:v1")  # rollback while blue still runs
    sim.tick()
    assert on_stable(sim) and ready_behind(sim) == blue_pods
    assert [p.name for p in sim.pods["stable"]] == blue_pods and sim.serial == serial
    assert "RolledBack" in sim.reasons()
    sim.settle()
    assert "preview" not in sim.deployments and sim.status.phase == "Healthy"


def test_abort_scales_the_preview_away_and_leaves_active_alone() -> None:
    sim = blue_green()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.ABORT, "a")
    sim.settle()
    assert sim.status.phase == "Degraded" and sim.status.aborted
    assert sim.deployments["preview"].replicas == 0
    assert on_stable(sim) and sim.stable_image() == "registry/shop:v1"


def test_auto_promotion_after_the_preview_has_been_ready_long_enough() -> None:
    sim = blue_green(autoPromotionSeconds=60)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert "switches at" in sim.status.message and sim.last.requeue_after == 60
    sim.tick(60)
    assert service_selector(sim)["apprelease.io/revision"] == "2" and "AutoPromoted" in sim.reasons()


def test_promote_before_the_preview_is_ready_waits_for_it() -> None:
    sim = blue_green()
    sim.pods_ready["preview"] = False
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick()
    assert on_stable(sim)  # never to pods not ready
    sim.pods_ready["preview"] = True
    sim.tick()  # the preview's pods turn ready
    sim.settle()
    assert service_selector(sim)["apprelease.io/revision"] == "2"


def test_with_nacos_the_preview_stays_disabled_and_green_serves_before_blue_goes_offline() -> None:
    sim = Sim(make_app({"strategy": {"blueGreen": {}}, "registry": NACOS}))
    sim.nacos = {}
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    preview = sim.pods["preview"]
    assert all(sim.gates[p.name].status for p in preview)  # Ready: registered and healthy
    assert not any(sim.instance(p.ip).enabled for p in preview)  # but no traffic
    assert all(dict(sim.instance(p.ip).metadata)["apprelease.io/track"] == "preview" for p in preview)
    sim.annotate(requests.PROMOTE, "step:1")
    history = []
    for _ in range(6):
        sim.tick()
        enabled = [p for ps in sim.pods.values() for p in ps if (i := sim.instance(p.ip)) and i.enabled]
        history.append(len(enabled))
    assert min(history) > 0, history  # never a moment without an enabled instance
    assert all(sim.instance(p.ip).enabled for p in preview)
    assert not any(sim.instance(p.ip).enabled for p in sim.pods["stable"])  # blue offline now


def test_an_hpa_on_the_deployment_is_pointed_out() -> None:
    from dataclasses import replace

    from apprelease.rollout.observed import HpaState

    sim = blue_green()
    observed = sim.observed()
    wrong = replace(observed, hpas=(HpaState("web", "Deployment", "shop", 2, 10, 4),))
    from apprelease.rollout.planner import plan

    result = plan(sim.app, sim.status, wrong, sim.now)
    condition = result.status.condition("Autoscaling")
    assert condition is not None and condition.status == "False" and "kind AppRelease" in condition.message
    assert any(e.reason == "HPATargetsDeployment" and e.type == "Warning" for e in result.events)


def test_the_preview_ingress_reaches_the_preview_service() -> None:
    sim = Sim(make_app({"strategy": {"blueGreen": {"previewIngress": {"host": "preview.shop.example", "className": "nginx"}}}}))
    sim.settle()
    assert sim.last is not None
    assert not [o for o in render_children(sim.app, sim.last.desired) if o["kind"] == "Ingress"]
    sim.edit(image="registry/shop:v2")
    sim.settle()
    ingress = next(o for o in render_children(sim.app, sim.last.desired) if o["kind"] == "Ingress")
    rule = ingress["spec"]["rules"][0]
    assert ingress["metadata"]["name"] == "shop-preview" and rule["host"] == "preview.shop.example"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "shop-preview"
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_a_preview_never_ready_aborts_at_the_deadline_and_retry_starts_it_again() -> None:
    sim = Sim(make_app({"strategy": {"blueGreen": {}}, "progressDeadlineSeconds": 60}))
    sim.settle()
    sim.pods_ready["preview"] = False
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.tick(60)
    assert sim.status.aborted and sim.status.abort_reason == "ProgressDeadlineExceeded"
    assert "preview revision 2 aborted" in sim.status.message
    sim.pods_ready["preview"] = True
    sim.annotate(requests.RETRY, "r")
    sim.tick()
    assert not sim.status.aborted and sim.status.blue_green.preview_since
    sim.tick()
    sim.settle()
    assert sim.status.phase == "Paused"


def test_promote_full_switches_and_skips_the_scale_down_delay() -> None:
    sim = blue_green(scaleDownDelaySeconds=3600)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert sim.stable_image() == "registry/shop:v2"  # no hour-long wait
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2


def test_a_restart_or_a_known_good_revision_skips_the_preview() -> None:
    sim = blue_green()
    sim.edit(restartAt="2026-11-23T10:05:00Z")
    sim.tick()
    assert "preview" not in sim.deployments and "Restarted" in sim.reasons()


def ready_behind(sim: Sim, name: str = "shop") -> list[str]:
    """The ready pods the Service selects (what Kubernetes would route to)."""
    selector = service_selector(sim, name)
    found = []
    for track, pods in sim.pods.items():
        for pod in pods:
            labels = {"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop",
                      "apprelease.io/track": track, "apprelease.io/revision": str(pod.revision)}
            if all(labels.get(k) == v for k, v in selector.items()) and sim._pod(pod, track).ready:
                found.append(pod.name)
    return found


def test_rollback_during_promotion_brings_the_old_side_back_before_traffic_returns_to_it() -> None:
    """The stable Deployment already runs the new revision (blue is gone) when the spec goes
    back: blue comes back to full ready size first, then the Service switches, then green goes."""
    sim = blue_green()
    sim.surge = True
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.unready_revisions = {2}  # the stable Deployment's new pods take a while
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    sim.unready_revisions = set()
    sim.tick()
    assert sim.status.promoting and {p.revision for p in sim.pods["stable"]} == {2}  # blue is gone
    sim.unready_revisions = {1}  # blue's pods take a while to come back
    sim.edit(image="registry/shop:v1")  # roll back mid-promotion
    for _ in range(3):
        sim.tick()
        assert ready_behind(sim), sim.status.message
        assert service_selector(sim)["apprelease.io/revision"] == "2" and "preview" in sim.deployments
    assert "rolling back" in sim.status.message
    sim.unready_revisions = set()
    for _ in range(4):
        sim.tick()
        assert ready_behind(sim), sim.status.message
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 1
    assert "preview" not in sim.deployments and {p.revision for p in sim.pods["stable"]} == {1}
    assert all(p.startswith("stable-r1") for p in ready_behind(sim))


def test_a_known_good_revision_rolls_in_place_without_a_moment_with_no_ready_pod() -> None:
    """Rollback after the promotion is complete (blue long gone): the known-good revision rolls
    into the stable Deployment; its new pods join the Service as they turn ready."""
    sim = blue_green()
    sim.surge = True
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2
    sim.unready_revisions = {3}
    sim.edit(image="registry/shop:v1")  # rollback: revision 3, known good
    for _ in range(3):
        sim.tick()
        assert ready_behind(sim), sim.status.message
    sim.unready_revisions = set()
    sim.settle()
    assert sim.status.stable_revision == 3 and len(ready_behind(sim)) == 3
    assert all(p.startswith("stable-r3") for p in ready_behind(sim))


def test_with_nacos_a_rollback_after_the_switch_enables_blue_before_green_goes_offline() -> None:
    sim = Sim(make_app({"strategy": {"blueGreen": {"scaleDownDelaySeconds": 600}}, "registry": NACOS}))
    sim.nacos = {}
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:1")
    for _ in range(6):
        sim.tick()
    blue, green = sim.pods["stable"], sim.pods["preview"]
    assert not any(sim.instance(p.ip).enabled for p in blue) and all(sim.instance(p.ip).enabled for p in green)
    sim.edit(image="registry/shop:v1")  # roll back while blue is offline
    for _ in range(8):
        blue_enabled_before = all(sim.instance(p.ip).enabled for p in blue)
        result = sim.tick()
        green_offline = [a for a in result.registry_actions
                         if a.kind == "write" and not a.enabled and a.pod in {p.name for p in green}]
        assert not green_offline or blue_enabled_before, "green taken offline before blue serves again"
        enabled = [p for ps in sim.pods.values() for p in ps if (i := sim.instance(p.ip)) and i.enabled]
        assert enabled
    for _ in range(4):
        sim.tick(5)  # green drains (drainSeconds), then goes
    assert all(sim.instance(p.ip).enabled for p in blue)
    assert "preview" not in sim.deployments and not sim.pods.get("preview")
    assert "RolledBack" in sim.reasons()


def timed_blue_green(*, pods_ready: bool = True) -> Sim:
    sim = Sim(make_app({"progressDeadlineSeconds": 60,
                        "strategy": {"blueGreen": {"scaleDownDelaySeconds": 30, "autoPromotionSeconds": 60}}}))
    sim.settle()
    sim.pods_ready["preview"] = pods_ready
    sim.edit(image="registry/shop:v2")
    return sim


def test_taken_down_mid_preview_auto_promotion_waits_and_a_promote_is_refused() -> None:
    sim = timed_blue_green()
    sim.settle()
    assert sim.status.blue_green.preview_ready_since
    sim.tick(30)
    sim.edit(takenDown=True)
    sim.settle()
    assert sim.status.phase == "TakenDown" and not sim.pods.get("preview")
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick(10)
    assert sim.status.handled_requests.promote == "step:1"  # refused, not left for later
    refused = [m for r, m in sim.events if r == "PromoteRefused"]
    assert refused and "taken down" in refused[0] and "bring-up" in refused[0]
    sim.tick(3600)  # far beyond autoPromotionSeconds
    assert on_stable(sim) and not sim.status.blue_green.switched_at
    assert "Promoted" not in sim.reasons() and "AutoPromoted" not in sim.reasons()
    sim.edit(takenDown=False)
    sim.settle()
    assert sim.status.phase == "Paused" and on_stable(sim)  # ready again: auto-promotion counts anew
    sim.tick(59)
    assert on_stable(sim)
    sim.tick(1)
    assert service_selector(sim)["apprelease.io/revision"] == "2" and "AutoPromoted" in sim.reasons()


def test_taken_down_while_the_preview_starts_the_progress_deadline_counts_from_bring_up() -> None:
    sim = timed_blue_green(pods_ready=False)
    sim.tick()
    sim.tick(30)
    sim.edit(takenDown=True)
    sim.settle()
    sim.tick(3600)
    assert not sim.status.aborted and sim.status.phase == "TakenDown"
    sim.edit(takenDown=False)
    sim.tick()
    sim.tick(59)
    assert not sim.status.aborted
    sim.tick(1)
    assert sim.status.aborted and sim.status.abort_reason == "ProgressDeadlineExceeded"
