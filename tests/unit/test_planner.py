"""The rollout planner, driven through whole rollouts on a simulated cluster."""

from __future__ import annotations

import pytest

from apprelease.rollout import requests
from apprelease.rollout.canary import canary_replicas, routed_weight
from apprelease.rollout.observed import RegistryState, TrackRegistration

from .sim import CANARY, Sim, make_app


def started_canary(**spec_extra: object) -> Sim:
    sim = Sim(make_app({"strategy": CANARY, **spec_extra}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    return sim


# Initial deploy and the rolling strategy ------------------------------------------------


def test_first_deploy_goes_straight_to_stable_without_steps() -> None:
    sim = Sim(make_app({"strategy": CANARY}))
    first = sim.tick()
    assert first.status.phase == "Progressing"
    assert [t.track for t in first.desired.tracks] == ["stable"]
    sim.settle()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable_revision == 1
    assert sim.status.canary_revision is None
    assert sim.status.ready == "3/3"
    assert sim.revisions[sim.status.stable_revision_hash].promoted is not None


def test_rolling_update_moves_stable_directly() -> None:
    sim = Sim(make_app())
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.stable_revision == 2
    assert sim.stable_image() == "registry/shop:v2"
    assert "RolloutStarted" in sim.reasons()
    assert sim.status.phase == "Healthy"
    # One Event per cause: RolloutStarted explains the move to Progressing; Healthy closes it.
    assert sim.reasons()[-2:] == ["RolloutStarted", "Healthy"]


def test_rolling_update_deadline_exceeded_is_degraded_and_stalled() -> None:
    sim = Sim(make_app())
    sim.settle()
    sim.pods_ready["stable"] = False
    sim.edit(image="registry/shop:broken")
    sim.tick()
    sim.deployments["stable"] = sim.deployments["stable"].__class__(
        **{**sim.deployments["stable"].__dict__, "deadline_exceeded": True}
    )
    result = sim.tick()
    assert result.status.phase == "Degraded"
    stalled = result.status.condition("Stalled")
    assert stalled is not None and stalled.status == "True"
    assert stalled.reason == "ProgressDeadlineExceeded"


def test_recreate_strategy_renders_single_track() -> None:
    sim = Sim(make_app({"strategy": {"recreate": {}}}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    result = sim.tick()
    assert [t.track for t in result.desired.tracks] == ["stable"]
    assert result.desired.tracks[0].template.image == "registry/shop:v2"


# The canary, step by step ----------------------------------------------------------------


def test_canary_walks_steps_with_pauses_and_promotes() -> None:
    sim = started_canary()
    first = sim.tick()
    assert first.status.canary_revision == 2
    assert first.status.current_step_index == 0
    assert sim.canary_replicas() == 1  # 20% of 3 rounds up to one pod
    assert "CanaryStarted" in sim.reasons()

    sim.settle()  # canary ready → step 1 (pause {}) and waits
    assert sim.status.current_step_index == 1
    assert sim.status.phase == "Paused"
    assert sim.status.actual_weight == 25  # 1 canary pod next to 3 stable pods
    assert sim.status.set_weight == 20
    assert sim.status.step == "2/4"  # working on step 2 (the pause)

    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()  # → step 2 (setWeight 50) → ready → step 3 (pause 30s)
    assert sim.status.current_step_index == 3
    assert sim.canary_replicas() == 2
    assert sim.status.pause_start_time == "2026-11-23T10:00:00Z"
    assert sim.last is not None and sim.last.requeue_after == 30

    sim.tick(29)
    assert sim.status.current_step_index == 3
    sim.tick(1)  # the 30 s pause is over → promotion
    assert sim.status.promoting
    assert sim.deployments["stable"].revision_hash == sim.status.canary_revision_hash
    sim.settle()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable_revision == 2
    assert sim.status.canary_revision is None
    assert "canary" not in sim.deployments
    assert sim.stable_image() == "registry/shop:v2"
    assert "PromotionCompleted" in sim.reasons()


def test_promote_request_is_handled_once() -> None:
    sim = started_canary()
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:a")
    sim.settle()
    assert sim.status.current_step_index == 3
    # The same annotation re-applied by GitOps is not a second promotion.
    for _ in range(3):
        sim.tick()
    assert sim.status.current_step_index == 3
    assert sim.status.handled_requests.promote == "step:a"


def test_requests_made_before_a_canary_starts_do_not_apply_to_it() -> None:
    sim = Sim(make_app({"strategy": CANARY}, annotations={requests.PROMOTE: "full:old"}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.current_step_index == 1  # waits at the pause, old request ignored


def test_promote_full_skips_remaining_steps() -> None:
    sim = started_canary()
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:x")
    sim.settle()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable_revision == 2


def test_abort_scales_canary_away_and_retry_restarts() -> None:
    sim = started_canary()
    sim.settle()
    sim.annotate(requests.ABORT, "a1")
    result = sim.tick()
    assert result.status.phase == "Degraded"
    assert result.status.aborted and result.status.abort_reason == "AbortedByUser"
    assert sim.canary_replicas() == 0
    assert sim.stable_image() == "registry/shop:v1"
    assert sim.revisions[result.status.canary_revision_hash].aborted
    sim.settle()
    assert sim.status.phase == "Degraded"  # stays until the user acts
    assert sim.status.actual_weight == 0  # once the canary pods are gone

    sim.annotate(requests.RETRY, "r1")
    sim.settle()
    assert not sim.status.aborted
    assert sim.status.current_step_index == 1
    assert sim.canary_replicas() == 1


def test_abort_during_promotion_reverts_stable() -> None:
    sim = started_canary()
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.pods_ready["stable"] = False  # promotion cannot finish
    sim.tick()
    assert sim.status.promoting
    assert sim.deployments["stable"].revision_hash == sim.status.canary_revision_hash
    sim.annotate(requests.ABORT, "a")
    sim.tick()
    assert sim.status.aborted
    stable_hash = sim.status.stable_revision_hash
    assert sim.deployments["stable"].revision_hash == stable_hash
    assert sim.revisions[stable_hash].template.image == "registry/shop:v1"


def test_progress_deadline_aborts_canary() -> None:
    sim = started_canary(progressDeadlineSeconds=60)
    sim.pods_ready["canary"] = False
    first = sim.tick()
    assert first.requeue_after == 60
    sim.tick(59)
    assert not sim.status.aborted
    result = sim.tick(1)
    assert result.status.aborted
    assert result.status.abort_reason == "ProgressDeadlineExceeded"
    assert "Aborted" in sim.reasons()


def test_crash_looping_canary_aborts_early() -> None:
    sim = started_canary()
    sim.pods_ready["canary"] = False
    sim.tick()
    sim.restarts["canary"] = 4
    result = sim.tick(5)
    assert result.status.aborted
    assert result.status.abort_reason == "CrashLoop"
    assert "restarted 4 times" in (result.status.abort_message or "")


def test_spec_change_during_canary_restarts_at_step_zero() -> None:
    sim = started_canary()
    sim.settle()
    assert sim.status.current_step_index == 1
    sim.edit(image="registry/shop:v3")
    result = sim.tick()
    assert result.status.current_step_index == 0
    assert result.status.canary_revision == 3
    assert "CanaryRestarted" in sim.reasons()
    superseded = [r for r in sim.revisions.values() if r.number == 2]
    assert superseded and superseded[0].abort_reason == "Superseded"


def test_rollback_mid_canary_returns_to_stable_instantly() -> None:
    sim = started_canary()
    sim.settle()
    sim.edit(image="registry/shop:v1")
    result = sim.tick()
    assert [t.track for t in result.desired.tracks] == ["stable"]
    assert result.status.canary_revision is None
    assert result.status.stable_revision == 1
    assert "RolledBack" in sim.reasons()


def ready_pods(sim: Sim) -> list[str]:
    return [p.name for track, pods in sim.pods.items() for p in pods if sim._pod(p, track).ready]


def test_rollback_during_promotion_keeps_the_canary_until_stable_is_back() -> None:
    """The stable Deployment already runs the canary's revision when the spec goes back: the
    canary stays until stable is back on the stable revision at full ready size."""
    sim = started_canary()
    sim.surge = True  # Deployments roll as Kubernetes does (maxUnavailable 0)
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert sim.status.promoting and {p.revision for p in sim.pods["stable"]} == {2}
    canary_pods = [p.name for p in sim.pods["canary"]]
    sim.unready_revisions = {1}  # the stable revision's pods take a while to come back
    sim.edit(image="registry/shop:v1")  # roll back mid-promotion
    for _ in range(3):
        sim.tick()
        assert [p.name for p in sim.pods["canary"]] == canary_pods, sim.status.message
        assert len(ready_pods(sim)) >= 3 + len(canary_pods)
    assert "rolling back to revision 1" in sim.status.message and sim.status.phase == "Progressing"
    sim.unready_revisions = set()
    for _ in range(3):
        sim.tick()
        assert len(ready_pods(sim)) >= 3
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 1 and "canary" not in sim.deployments
    assert {p.revision for p in sim.pods["stable"]} == {1} and "RolledBack" in sim.reasons()


def test_rollback_to_promoted_revision_skips_steps_and_renumbers() -> None:
    sim = started_canary()
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert sim.status.stable_revision == 2
    sim.edit(image="registry/shop:v1")  # revision 1 was promoted before
    result = sim.tick()
    assert result.status.canary_revision is None
    assert result.status.stable_revision == 3  # numbers only grow
    assert sim.stable_image() == "registry/shop:v1"


def test_restart_rolls_without_steps() -> None:
    sim = Sim(make_app({"strategy": CANARY}))
    sim.settle()
    sim.edit(restartAt="2026-11-23T10:05:00Z")
    result = sim.tick()
    assert result.status.canary_revision is None
    assert result.status.stable_revision == 2
    assert result.desired.tracks[0].template.restart_at == "2026-11-23T10:05:00Z"
    assert "Restarted" in sim.reasons()


def test_config_change_is_a_new_revision_and_rollback_restores_it() -> None:
    config_v1 = {"mountPath": "/app/config", "files": {"application.yml": "a: 1\n"}}
    config_v2 = {"mountPath": "/app/config", "files": {"application.yml": "a: 2\n"}}
    sim = Sim(make_app({"config": config_v1}))
    sim.settle()
    sim.edit(config=config_v2)
    sim.settle()
    assert sim.status.current_revision == 2
    retained = {c.files["application.yml"] for c in sim.last.desired.retained_configs}
    assert retained == {"a: 1\n", "a: 2\n"}  # the old revision's config is kept for rollback
    sim.edit(config=config_v1)
    sim.settle()
    assert sim.last.desired.tracks[0].template.config.files["application.yml"] == "a: 1\n"


def test_paused_spec_holds_the_step() -> None:
    sim = started_canary(paused=True)
    sim.settle()
    assert sim.status.phase == "Paused"
    assert sim.status.current_step_index == 0
    sim.edit(paused=False)
    sim.settle()
    assert sim.status.current_step_index == 1


def test_taken_down_mid_canary_the_step_waits_and_a_promote_is_refused() -> None:
    sim = started_canary(progressDeadlineSeconds=60)
    sim.settle()
    assert sim.status.current_step_index == 1  # paused at step 2
    sim.edit(takenDown=True)
    sim.settle()
    assert sim.status.phase == "TakenDown" and not sim.pods.get("canary")
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick(10)
    assert sim.status.current_step_index == 1  # not moved on while there is nothing to observe
    assert sim.status.handled_requests.promote == "step:1"  # refused, not left for later
    refused = [m for r, m in sim.events if r == "PromoteRefused"]
    assert refused and "taken down" in refused[0] and "bring-up" in refused[0]
    sim.tick(3600)  # far beyond progressDeadlineSeconds
    sim.edit(takenDown=False)
    sim.settle()
    assert not sim.status.aborted and sim.status.current_step_index == 1 and sim.status.phase == "Paused"
    sim.annotate(requests.PROMOTE, "step:2")
    sim.settle()
    assert sim.status.current_step_index == 3 and not sim.status.aborted


def test_taken_down_mid_canary_the_steps_clocks_count_only_while_it_is_up() -> None:
    sim = started_canary(progressDeadlineSeconds=60)
    sim.settle()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert sim.status.current_step_index == 3  # the 30 s pause
    sim.tick(10)
    sim.edit(takenDown=True)
    sim.settle()
    sim.tick(3600)
    assert sim.status.current_step_index == 3 and not sim.status.promoting
    sim.edit(takenDown=False)
    sim.settle()
    sim.tick(29)
    assert sim.status.current_step_index == 3  # the pause counts again from the bring-up
    sim.tick(1)
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2


def test_taken_down_while_the_canary_starts_the_progress_deadline_counts_from_bring_up() -> None:
    sim = started_canary(progressDeadlineSeconds=60)
    sim.pods_ready["canary"] = False
    sim.tick()
    sim.tick(30)
    sim.edit(takenDown=True)
    sim.settle()
    sim.tick(3600)
    assert not sim.status.aborted and sim.status.current_step_index == 0
    sim.edit(takenDown=False)
    sim.tick()
    sim.tick(59)
    assert not sim.status.aborted
    sim.tick(1)
    assert sim.status.aborted and sim.status.abort_reason == "ProgressDeadlineExceeded"


def test_an_abort_while_taken_down_is_accepted_and_stays_after_bring_up() -> None:
    sim = started_canary()
    sim.settle()
    sim.edit(takenDown=True)
    sim.settle()
    sim.annotate(requests.ABORT, "a")
    sim.settle()
    assert sim.status.aborted
    sim.edit(takenDown=False)
    sim.settle()
    assert sim.status.aborted and sim.canary_replicas() == 0 and sim.stable_image() == "registry/shop:v1"


def test_history_is_pruned_to_the_limit() -> None:
    sim = Sim(make_app({"revisionHistoryLimit": 2}))
    sim.settle()
    for tag in ("v2", "v3", "v4", "v5"):
        sim.edit(image=f"registry/shop:{tag}")
        sim.settle()
    assert sorted(r.number for r in sim.revisions.values()) == [3, 4, 5]


def test_unchanged_state_gives_identical_status_and_no_events() -> None:
    sim = started_canary()
    sim.settle()
    before = sim.status
    events_before = len(sim.events)
    result = sim.tick(5)
    assert result.status == before
    assert len(sim.events) == events_before
    assert result.revisions_to_save == ()


# Registry gate ---------------------------------------------------------------------------


def _registry(healthy: int, expected: int = 1, reachable: bool = True) -> RegistryState:
    return RegistryState(
        reachable=reachable,
        tracks={"canary": TrackRegistration(expected, healthy, healthy, healthy),
                "stable": TrackRegistration(3, 3, 3, 3)},
        error=None if reachable else "connection refused",
    )


def test_registry_gate_holds_until_canary_registered() -> None:
    sim = started_canary(registry={"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"},
                                   "gateTimeout": "2m"})
    sim.registry = _registry(healthy=0)
    sim.settle()
    assert sim.status.current_step_index == 0
    assert "registered" in sim.status.message
    sim.registry = _registry(healthy=1)
    sim.settle()
    assert sim.status.current_step_index == 1


def test_registry_gate_timeout_aborts() -> None:
    sim = started_canary(registry={"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"},
                                   "gateTimeout": "2m"})
    sim.registry = _registry(healthy=0)
    sim.tick()
    result = sim.tick(120)
    assert result.status.aborted and result.status.abort_reason == "RegistryGateTimeout"


def test_registry_outage_neither_promotes_nor_aborts() -> None:
    sim = started_canary(registry={"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"},
                                   "gateTimeout": "1m"})
    sim.registry = _registry(healthy=1, reachable=False)
    sim.tick()
    sim.tick(600)
    assert not sim.status.aborted
    assert sim.status.current_step_index == 0
    assert "unreachable" in sim.status.message
    sim.registry = _registry(healthy=1)
    sim.settle()
    assert sim.status.current_step_index == 1


# Traffic routing and rounding ------------------------------------------------------------


def test_nginx_routing_carries_exact_weight() -> None:
    steps = {"canary": {"trafficRouting": "nginx", "steps": [{"setWeight": 10}, {"pause": {}}]}}
    sim = Sim(make_app({"strategy": steps, "ingress": {"host": "shop.example.com"}}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 10
    assert sim.status.actual_weight == 10


def test_nginx_weight_waits_for_ready_canary_pods() -> None:
    steps = {"canary": {"trafficRouting": "nginx", "steps": [{"setWeight": 10}, {"pause": {}}]}}
    sim = Sim(make_app({"strategy": steps, "ingress": {"host": "shop.example.com"}}))
    sim.settle()
    sim.pods_ready["canary"] = False
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 0
    assert sim.status.set_weight == 10 and sim.status.actual_weight == 0
    sim.pods_ready["canary"] = True
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 10 and sim.status.actual_weight == 10


def test_routed_weight_grows_with_the_ready_canary_pods() -> None:
    """Each ready canary pod carries at most the share the step meant for it: 60 % of 5
    replicas is 3 pods at 20 % each, so 1 ready pod gets 20 %, not 60 %."""
    steps = {"canary": {"trafficRouting": "nginx", "steps": [{"setWeight": 60}, {"pause": {}}]}}
    sim = Sim(make_app({"replicas": 5, "strategy": steps, "ingress": {"host": "shop.example.com"}}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.tick()
    canary = [p.name for p in sim.pods["canary"]]
    assert len(canary) == 3
    sim.unready_pods = set(canary[1:])
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 20 and sim.status.actual_weight == 20
    sim.unready_pods = {canary[2]}
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 40
    sim.unready_pods = set()
    sim.settle()
    assert sim.last.desired.nginx_canary_weight == 60 and sim.status.current_step_index == 1


@pytest.mark.parametrize(("weight", "replicas", "ready", "routed"), [
    (20, 3, 0, 0), (20, 3, 1, 20), (60, 5, 1, 20), (60, 5, 2, 40), (60, 5, 3, 60), (60, 5, 4, 60),
    (50, 3, 1, 25), (0, 3, 1, 0), (100, 3, 2, 66), (30, 0, 0, 0),
])
def test_routed_weight(weight: int, replicas: int, ready: int, routed: int) -> None:
    assert routed_weight(weight, replicas, ready) == routed


@pytest.mark.parametrize(
    ("weight", "replicas", "pods"),
    [(20, 3, 1), (50, 3, 2), (100, 3, 3), (0, 3, 0), (1, 10, 1), (33, 3, 1), (34, 3, 2), (50, 0, 0)],
)
def test_canary_replicas_round_up(weight: int, replicas: int, pods: int) -> None:
    assert canary_replicas(weight, replicas) == pods


def test_the_scale_subresource_counts_the_apps_replicas_not_the_canary_beside_them() -> None:
    """An HPA sizes spec.replicas (the stable Deployment) from the pods its selector matches
    and status.replicas: counting the canary too would add the canary's size on top."""
    sim = started_canary()
    sim.settle()
    assert sim.status.current_step_index == 1 and sim.canary_replicas() == 1
    assert sim.status.replicas == 3
    assert sim.status.selector == ("app.kubernetes.io/instance=shop,app.kubernetes.io/name=shop,"
                                   "apprelease.io/track=stable")
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.replicas == 3
    assert sim.status.selector.endswith("apprelease.io/track=stable")


def test_material_change_ignores_counts_but_not_state() -> None:
    from apprelease.rollout.status_summary import material_change

    sim = started_canary()
    sim.settle()
    base = sim.status.to_wire()
    counts = {**base, "readyReplicas": 99, "ready": "99/4", "message": "other words"}
    assert not material_change(base, counts)
    assert material_change(base, {**base, "currentStepIndex": 2})
    flipped = [dict(c, status="False") if c["type"] == "Paused" else c for c in base["conditions"]]
    assert material_change(base, {**base, "conditions": flipped})
    reworded = [dict(c, message="x") for c in base["conditions"]]
    assert not material_change(base, {**base, "conditions": reworded})
    registered = {**base, "registration": {"summary": "1/4", "instanceCount": 1}}
    assert not material_change(base, registered)
    unregistered = [*base["conditions"], {"type": "Registered", "status": "False", "reason": "NotRegistered"}]
    assert not material_change(base, {**base, "conditions": unregistered})
