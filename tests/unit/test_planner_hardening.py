"""Issue 13's planner findings, each reproduced on the simulated cluster: no canary step can be
bypassed, history never drops what still runs, and registry failures get a verdict."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from apprelease.rollout import requests
from apprelease.rollout.observed import RegistryState, TrackRegistration

from .sim import CANARY, Sim, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "gateTimeout": "2m"}


def condition(sim: Sim, kind: str) -> tuple[str, str]:
    found = sim.status.condition(kind)
    assert found is not None, kind
    return found.status, found.reason


def test_a_missing_stable_record_never_sends_the_next_image_to_every_pod() -> None:
    sim = Sim(make_app({"strategy": CANARY}))
    sim.settle()
    sim.revisions.clear()  # someone deleted the ControllerRevisions
    sim.edit(image="registry/shop:v2")
    plan = sim.tick()
    assert [t.track for t in plan.desired.tracks] == []  # the stable Deployment is left as it is
    assert plan.desired.untouched_tracks == ("stable",)
    assert sim.deployments["stable"].revision_hash != sim.status.current_revision_hash
    assert sim.status.failure is not None and sim.status.failure.reason == "StableRevisionMissing"
    assert condition(sim, "Stalled") == ("True", "StableRevisionMissing")
    assert "promote --full" in sim.status.message
    # The user decides: promote --full sends v2 to the stable Deployment.
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert sim.stable_image() == "registry/shop:v2" and sim.status.phase == "Healthy"
    assert sim.status.failure is None


def test_history_limit_zero_keeps_the_revisions_pods_still_run() -> None:
    config = {"mountPath": "/c", "files": {"a.yml": "v: 1\n"}}
    sim = Sim(make_app({"revisionHistoryLimit": 0, "config": config}))
    sim.settle()
    sim.pods_ready["stable"] = False  # the rolling update is under way: old pods still run
    old_pods = list(sim.pods["stable"])
    sim.edit(config={**config, "files": {"a.yml": "v: 2\n"}})
    plan = sim.tick()
    sim.pods["stable"] = old_pods + sim.pods["stable"]
    plan = sim.tick()
    kept = {c.files["a.yml"] for c in plan.desired.retained_configs}
    assert "v: 1\n" in kept, "the old pods' ConfigMap would be pruned while they run"


def test_a_revision_that_never_ran_a_pod_is_not_known_good() -> None:
    sim = Sim(make_app({"strategy": CANARY, "replicas": 0}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    v2 = next(r for r in sim.revisions.values() if r.template.image == "registry/shop:v2")
    assert v2.promoted is None
    # Later, with pods, a return to v2 goes through the canary steps again.
    sim.edit(replicas=3, image="registry/shop:v3")
    sim.annotate(requests.PROMOTE, "full:2")
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.tick()
    assert sim.status.canary_revision is not None and sim.status.current_step_index == 0


def test_the_gate_stays_shut_while_the_pods_it_counts_are_not_visible() -> None:
    """Deployment status can run ahead of the pod cache: no visible pod is not "all healthy"."""
    sim = Sim(make_app({"strategy": CANARY, "registry": NACOS}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.registry = RegistryState(reachable=True, tracks={"canary": TrackRegistration(0, 0, 0, 0)})
    sim.settle()
    assert sim.status.current_step_index == 0
    assert "registered" in sim.status.message


def _registry_down(reason: str) -> RegistryState:
    return RegistryState(reachable=False, error="HTTP 403: no permission", failure_reason=reason,
                         tracks={"canary": TrackRegistration(1, 1, 1, 1)})


def test_a_registry_that_refuses_is_stalled_at_once_and_the_gate_times_out() -> None:
    sim = Sim(make_app({"strategy": CANARY, "registry": NACOS}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.registry = _registry_down("RegistryRefused")
    sim.tick()
    assert condition(sim, "Stalled") == ("True", "RegistryRefused")
    assert "credentialsSecret" in sim.status.message
    sim.tick(121)
    assert sim.status.aborted and sim.status.abort_reason == "RegistryGateTimeout"


def test_a_registry_outage_holds_then_stalls_after_the_progress_deadline_without_aborting() -> None:
    sim = Sim(make_app({"strategy": CANARY, "registry": NACOS, "progressDeadlineSeconds": 300}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.registry = _registry_down("RegistryUnavailable")
    plan = sim.tick()
    assert condition(sim, "Stalled")[0] == "False"
    assert condition(sim, "Reconciling") == ("True", "RegistryUnavailable")
    assert plan.requeue_after == 300  # looked at again when it turns Stalled
    sim.tick(300)
    assert condition(sim, "Stalled") == ("True", "RegistryUnavailable")
    assert not sim.status.aborted and sim.status.current_step_index == 0
    sim.registry = RegistryState(reachable=True, tracks={"canary": TrackRegistration(1, 1, 1, 1)})
    sim.settle()
    assert sim.status.failure is None and sim.status.current_step_index == 1


def test_an_idle_app_does_not_stall_on_a_registry_outage() -> None:
    sim = Sim(make_app({"strategy": CANARY, "registry": NACOS}))
    sim.settle()
    sim.registry = _registry_down("RegistryUnavailable")
    sim.tick()
    sim.tick(3600)
    assert sim.status.phase == "Healthy" and sim.status.failure is None


def test_pods_that_cannot_be_created_are_stalled_with_the_reason() -> None:
    sim = Sim(make_app())
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.deployments["stable"] = replace(
        sim.deployments["stable"],
        replica_failure='FailedCreate: pods "shop-x" is forbidden: violates PodSecurity "restricted:latest"',
    )
    sim.tick()
    assert condition(sim, "Stalled") == ("True", "PodCreationFailed")
    assert "PodSecurity" in sim.status.message
    sim.deployments["stable"] = replace(sim.deployments["stable"], replica_failure=None)
    sim.settle()
    assert sim.status.failure is None


def test_a_hand_edited_status_stamp_does_not_crash_the_planner() -> None:
    sim = Sim(make_app({"strategy": CANARY}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.tick()
    sim.status = sim.status.model_copy(update={"step_start_time": "yesterday", "pause_start_time": "?"})
    sim.tick(timedelta(seconds=1).total_seconds())
    assert sim.status.canary_revision is not None
