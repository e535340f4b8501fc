"""One writer for every instance: joining disabled, enabled only once the pod is Ready,
offline the moment a pod terminates, exact canary shares through Nacos weights, warm-up,
take-down. On the simulated cluster and registry (tests/unit/sim.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from apprelease.rollout import requests
from apprelease.rollout.instances import _track_weights
from apprelease.rollout.observed import Observed, PodState
from apprelease.rollout.outcome import Decision
from apprelease.rollout.state import Stepping

from .sim import CANARY, Override, Sim, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "drainSeconds": 10}


def nacos_sim(strategy: dict[str, Any] | None = None, **spec: Any) -> Sim:
    sim = Sim(make_app({"strategy": strategy or {"rolling": {}}, "registry": NACOS, **spec}))
    sim.nacos = {}
    sim.settle()
    return sim


def writes(sim: Sim, pod: str) -> list[tuple[bool, str]]:
    return [(a.enabled, a.reason) for _, a in sim.actions if a.kind == "write" and a.pod == pod]


def test_a_new_pod_joins_disabled_and_is_enabled_only_once_ready() -> None:
    sim = Sim(make_app({"registry": NACOS}))
    sim.nacos = {}
    sim.pods_ready["stable"] = False  # containers still starting
    sim.tick()  # the Deployment is created; its pods get their addresses
    sim.tick()
    pod = sim.pods["stable"][0]
    assert writes(sim, pod.name) == [(False, "joining")]  # written ahead of the registration
    assert sim.gates[pod.name].reason == "Waiting" and not sim.gates[pod.name].status
    sim.pods_ready["stable"] = True
    sim.tick()  # the containers are ready: the app registers and inherits the disabled record
    assert sim.instance(pod.ip).enabled is False
    sim.tick()  # the operator reads it
    assert sim.gates[pod.name].reason == "Registered"  # the pod may turn Ready now...
    picks_before_ready = [e for e, _ in writes(sim, pod.name) if e]
    assert picks_before_ready == []  # ... but nothing enabled it yet
    sim.tick()  # Ready now (the gate is True): enabled
    assert writes(sim, pod.name)[-1] == (True, "serving")
    sim.tick()
    assert sim.gates[pod.name].reason == "Serving"
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.registration.summary == "3/3"


def test_an_app_faster_than_the_write_ahead_is_disabled_at_once() -> None:
    sim = nacos_sim()
    sim.edit(replicas=4)
    sim.tick()
    newcomer = sim.pods["stable"][-1]
    sim.overrides.pop((newcomer.ip, 8080), None)  # the app registered before our write landed
    sim.tick()
    assert sim.instance(newcomer.ip).enabled is False and sim.gates[newcomer.name].reason == "Registered"


def test_a_pod_someone_else_deletes_goes_offline_the_moment_it_terminates() -> None:
    sim = nacos_sim()
    victim = sim.pods["stable"][0]
    sim.pods["stable"][0] = replace(victim, deleting=True)  # kubectl delete pod / an eviction
    sim.actions.clear()
    sim.tick()
    assert writes(sim, victim.name) == [(False, "offline")]
    assert victim.name not in {g.pod for g in sim.last.pod_gates}  # its gate no longer matters


def test_a_disable_by_someone_else_is_respected_and_makes_the_pod_unready() -> None:
    sim = nacos_sim()
    pod = sim.pods["stable"][0]
    state = sim.overrides[(pod.ip, 8080)]
    sim.overrides[(pod.ip, 8080)] = replace(state, enabled=False)  # the Nacos console
    sim.actions.clear()
    sim.tick()
    assert sim.gates[pod.name].reason == "DisabledInRegistry" and not sim.gates[pod.name].status
    assert writes(sim, pod.name) == []  # not ours to undo
    sim.overrides[(pod.ip, 8080)] = state  # enabled there again
    sim.tick()
    assert sim.gates[pod.name].reason == "Serving"


def test_every_instance_carries_owner_track_and_revision() -> None:
    sim = nacos_sim(strategy=CANARY)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    for track in ("stable", "canary"):
        for pod in sim.pods[track]:
            meta = dict(sim.instance(pod.ip).metadata)
            assert meta == {"apprelease.io/owner": "ns/shop", "apprelease.io/track": track,
                            "apprelease.io/revision": str(pod.revision)}


@pytest.mark.parametrize(("weight", "stable", "canary"), [(20, 3, 1), (50, 3, 2), (5, 10, 1), (90, 2, 2), (1, 100, 1)])
def test_nacos_weights_give_the_canary_exactly_the_steps_share(weight: int, stable: int, canary: int) -> None:
    app = make_app({"strategy": {"canary": {"trafficRouting": "nacos", "steps": [{"setWeight": weight}]}},
                    "registry": NACOS})
    pods = tuple(PodState(f"s{i}", "stable", 1, True, ip=f"10.0.0.{i}") for i in range(stable)) + tuple(
        PodState(f"c{i}", "canary", 2, True, ip=f"10.0.1.{i}") for i in range(canary))
    record = Sim(app).tick().revisions_to_save[0]
    decision = Decision(state=Stepping(0, ""), stable=record, candidate=record, set_weight=weight,
                        routed_weight=weight)
    weights = _track_weights(app, Observed(pods=pods), decision)
    share = canary * weights["canary"] / (canary * weights["canary"] + stable * weights["stable"])
    assert share == pytest.approx(weight / 100, abs=1e-6)
    assert all(0.01 <= w <= 10000 for w in weights.values())


def test_nacos_routed_canary_writes_the_weights_and_resets_them_after_promotion() -> None:
    steps = {"canary": {"trafficRouting": "nacos", "steps": [{"setWeight": 20}, {"pause": {}}]}}
    sim = nacos_sim(strategy=steps)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.current_step_index == 1 and len(sim.pods["canary"]) == 1
    instances = {p.ip: sim.instance(p.ip) for ps in sim.pods.values() for p in ps}
    canary_weight = sum(instances[p.ip].weight for p in sim.pods["canary"])
    total = sum(i.weight for i in instances.values())
    assert canary_weight / total == pytest.approx(0.20, abs=0.001)
    sim.annotate(requests.PROMOTE, "full:1")
    for _ in range(12):
        sim.tick(10)
    sim.settle()
    assert sim.status.phase == "Healthy"
    assert {sim.instance(p.ip).weight for p in sim.pods["stable"]} == {100.0}


def test_nacos_weights_give_ready_canary_pods_no_more_than_the_step_meant_for_each() -> None:
    """60 % of 5 replicas is 3 canary pods at 20 % each: while only one of them is ready, it
    gets 20 %, not the whole 60 % (weight follows readiness, as with nginx and Gateway API)."""
    steps = {"canary": {"trafficRouting": "nacos", "steps": [{"setWeight": 60}, {"pause": {}}]}}
    sim = nacos_sim(strategy=steps, replicas=5)
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.unready_pods = {p.name for p in sim.pods["canary"][1:]}
    for _ in range(4):
        sim.tick()
    enabled = [i for ps in sim.pods.values() for p in ps if (i := sim.instance(p.ip)) and i.enabled]
    canary_ips = {p.ip for p in sim.pods["canary"]}
    canary_weight = sum(i.weight for i in enabled if i.ip in canary_ips)
    assert len([i for i in enabled if i.ip in canary_ips]) == 1
    assert canary_weight / sum(i.weight for i in enabled) == pytest.approx(0.20, abs=0.001)
    assert sim.status.actual_weight == 20


def test_warm_up_ramps_a_new_instances_weight_and_shows_it() -> None:
    sim = nacos_sim(registry={**NACOS, "warmup": "60s"})
    for _ in range(6):
        sim.tick(10)  # the first pods finish warming
    sim.edit(replicas=4)
    sim.settle()
    newcomer = sim.pods["stable"][-1]
    ramp = [sim.instance(newcomer.ip).weight]
    rows = {r.pod: r for r in sim.status.registration.instances}
    assert rows[newcomer.name].warming and not rows[sim.pods["stable"][0].name].warming
    assert sim.last.requeue_after == pytest.approx(6.0)  # the next step of the ramp
    for _ in range(10):
        sim.tick(6)
        ramp.append(sim.instance(newcomer.ip).weight)
    assert ramp[0] == pytest.approx(10.0) and ramp[-1] == 100.0
    # It was never enabled at full weight, not even for the moment before it counted as serving.
    enabling = [a.weight for _, a in sim.actions if a.kind == "write" and a.pod == newcomer.name and a.enabled]
    assert enabling[0] == pytest.approx(10.0)
    assert ramp == sorted(ramp) and len(set(ramp)) == 11
    assert not {r.pod: r for r in sim.status.registration.instances}[newcomer.name].warming


def test_take_down_drains_everything_then_runs_no_pods_and_bring_up_restores() -> None:
    sim = nacos_sim(strategy=CANARY)
    sim.edit(takenDown=True)
    sim.tick()
    assert sim.status.phase == "Progressing" and "taking down" in sim.status.message
    assert sim.deployments["stable"].replicas == 3  # held while the instances drain
    assert all(not sim.instance(p.ip).enabled for p in sim.pods["stable"])
    sim.tick()
    sim.tick(10)
    sim.settle()
    assert sim.deployments["stable"].replicas == 0 and sim.status.phase == "TakenDown"
    assert sim.status.condition("Ready").status == "True"
    assert sim.app.spec.replicas == 3  # remembered for bring-up
    sim.edit(takenDown=False)
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.deployments["stable"].replicas == 3
    assert all(sim.instance(p.ip).enabled for p in sim.pods["stable"])


def test_nothing_is_written_or_flipped_without_a_reliable_read() -> None:
    sim = nacos_sim()
    sim.nacos_up = False
    sim.actions.clear()
    gates = dict(sim.gates)
    plan = sim.tick(30)
    assert [a for _, a in sim.actions if a.kind == "write"] == [] and plan.pod_gates == ()
    assert sim.gates == gates


def test_a_stale_override_from_a_gone_pod_is_not_inherited_by_a_new_one() -> None:
    sim = nacos_sim()
    sim.overrides[("10.0.0.99", 8080)] = Override(enabled=False, weight=3.0)
    sim.serial_ips = ["10.0.0.99"]
    sim.edit(replicas=4)
    sim.settle()
    instance = sim.instance("10.0.0.99")
    assert instance is not None and instance.enabled and instance.weight == 100.0


@pytest.mark.parametrize("reason", ["RegistryUnavailable", "RegistryBadResponse"])
def test_canary_pods_held_by_a_registry_outage_are_not_aborted_at_the_progress_deadline(reason: str) -> None:
    """Their readiness gate waits on a registry that cannot be read: the outage's verdict
    (Stalled once it has lasted progressDeadlineSeconds) applies, not an abort that would
    remove instances the operator cannot take offline first."""
    sim = nacos_sim(CANARY, progressDeadlineSeconds=60)
    sim.nacos_up = False
    sim.nacos_down_reason = reason
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.tick()
    assert sim.pods["canary"] and not any(p.ready for p in sim.observed().pods if p.track == "canary")
    sim.tick(61)
    sim.tick(600)
    assert not sim.status.aborted and sim.status.current_step_index == 0
    stalled = next(c for c in sim.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", reason)
    sim.nacos_up = True
    sim.settle()
    assert not sim.status.aborted and sim.status.failure is None and sim.status.current_step_index >= 1


def test_a_preview_held_by_a_registry_outage_is_not_aborted_at_the_progress_deadline() -> None:
    sim = nacos_sim({"blueGreen": {}}, progressDeadlineSeconds=60)
    sim.nacos_up = False
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.tick()
    assert sim.pods["preview"]
    sim.tick(61)
    sim.tick(600)
    assert not sim.status.aborted and sim.status.phase != "Paused"
    stalled = next(c for c in sim.status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "RegistryUnavailable")
    sim.nacos_up = True
    sim.settle()
    assert not sim.status.aborted and sim.status.failure is None
    assert sim.status.phase == "Paused" and "promote to switch" in sim.status.message


def test_canary_pods_whose_apps_never_register_abort_at_the_gate_timeout() -> None:
    """Their readiness gate keeps them unready, but they started: gateTimeout applies,
    not progressDeadlineSeconds (which is longer)."""
    sim = nacos_sim(CANARY, progressDeadlineSeconds=600)
    sim.app = make_app({"strategy": CANARY, "progressDeadlineSeconds": 600,
                        "registry": {**NACOS, "gateTimeout": "30s"}})
    sim.settle()
    sim.not_registering.add("canary")
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert not sim.status.aborted and "registered" in sim.status.message
    sim.tick(31)
    assert sim.status.aborted and sim.status.abort_reason == "RegistryGateTimeout"


def test_warm_up_counts_from_when_the_instance_starts_serving_not_from_its_registration() -> None:
    sim = nacos_sim(registry={**NACOS, "warmup": "60s"})
    for _ in range(6):
        sim.tick(10)
    sim.edit(replicas=4)
    for _ in range(6):
        sim.tick()
        newcomer = sim.pods["stable"][-1]
        gate = sim.gates.get(newcomer.name)
        if gate is not None and gate.reason == "Registered":
            break
    else:
        pytest.fail("the new pod's gate never said Registered")
    sim.tick(10)  # the kubelet took 10 s to report it Ready: enabled now
    sim.tick()
    assert sim.gates[newcomer.name].reason == "Serving"
    sim.tick(5)
    assert sim.instance(newcomer.ip).weight == pytest.approx(10.0)  # still the ramp's first step
    sim.tick(2)
    assert sim.instance(newcomer.ip).weight == pytest.approx(19.0)
