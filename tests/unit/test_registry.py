"""Registration status and graceful offline, on the simulated cluster and registry."""

from __future__ import annotations

from typing import Any

from apprelease.registry.base import RegistryInstance
from apprelease.registry.registration import (
    MAX_LISTED_INSTANCES,
    RegistryRead,
    endpoint_slice_instances,
    summarize,
)
from apprelease.rollout import requests
from apprelease.rollout.observed import PodState
from apprelease.rollout.timefmt import format_precise_time

from .sim import CANARY, Override, Sim, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "drainSeconds": 10}


def nacos_sim(strategy: dict[str, Any] | None = None, **spec: Any) -> Sim:
    sim = Sim(make_app({"strategy": strategy or CANARY, "registry": NACOS, **spec}))
    sim.nacos = {}
    sim.settle()
    return sim


def kinds_at(sim: Sim) -> list[tuple[str, str | None]]:
    return [(a.kind, a.pod) for _, a in sim.actions]


def taken_offline(sim: Sim) -> set[str | None]:
    """Pods whose instances were written disabled for leaving or on request (not joining)."""
    return {a.pod for _, a in sim.actions if a.kind == "write" and not a.enabled and a.reason != "joining"}


def enabled_writes(sim: Sim) -> set[str | None]:
    return {a.pod for _, a in sim.actions if a.kind == "write" and a.enabled}


# Pure summaries ----------------------------------------------------------------------------


def _pod(name: str, ip: str, track: str = "stable", ready: bool = True, revision: int = 1) -> PodState:
    return PodState(name=name, track=track, revision=revision, ready=ready, ip=ip)  # type: ignore[arg-type]


def _instance(ip: str, healthy: bool = True, enabled: bool = True) -> RegistryInstance:
    return RegistryInstance(ip, 8080, healthy, enabled, 1.0, True, "DEFAULT")


def test_endpoint_slices_map_to_instances() -> None:
    slices = [{
        "ports": [{"name": "http", "port": 8080}, {"name": "jmx", "port": 9010}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
             "targetRef": {"name": "a"}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True, "terminating": True},
             "targetRef": {"name": "b"}},
        ],
    }]
    found = endpoint_slice_instances(slices, "http")
    assert [(i.ip, i.port, i.healthy, i.enabled) for i in found] == [
        ("10.0.0.1", 8080, True, True), ("10.0.0.2", 8080, False, False)]
    assert endpoint_slice_instances(slices, "missing") == []


def test_summary_counts_per_track_and_stale_rows() -> None:
    pods = [_pod("s1", "10.0.0.1"), _pod("s2", "10.0.0.2"), _pod("c1", "10.0.0.3", "canary", revision=2)]
    read = RegistryRead((_instance("10.0.0.1"), _instance("10.0.0.3", healthy=False), _instance("10.9.9.9")))
    reg = summarize(provider="nacos", service="DEFAULT_GROUP@@shop", read=read, pods=pods,
                    revisions={"stable": 1, "canary": 2})
    rows = {r.track: r for r in reg.status.revisions}
    assert (rows["stable"].expected, rows["stable"].registered, rows["stable"].healthy) == (2, 1, 1)
    assert (rows["canary"].expected, rows["canary"].registered, rows["canary"].healthy) == (1, 1, 0)
    assert reg.status.summary == "1/3"
    assert [s.ip for s in reg.status.stale] == ["10.9.9.9"] and reg.status.stale_count == 1
    assert reg.condition.status == "False" and reg.condition.reason == "NotRegistered"
    assert not reg.state.gate_open("canary", 1)
    assert reg.by_pod["s1"].ip == "10.0.0.1"


def test_summary_all_registered_and_unreachable() -> None:
    pods = [_pod("s1", "10.0.0.1")]
    ok = summarize(provider="nacos", service="svc", read=RegistryRead((_instance("10.0.0.1"),)),
                   pods=pods, revisions={"stable": 1})
    assert ok.condition.status == "True" and ok.status.summary == "1/1"
    down = summarize(provider="nacos", service="svc", read=RegistryRead(None, "connection refused"),
                     pods=pods, revisions={"stable": 1})
    assert down.condition.status == "Unknown" and down.condition.reason == "RegistryUnavailable"
    assert down.status.last_error == "connection refused" and not down.state.reachable


def test_a_read_older_than_a_pod_says_nothing_about_that_pods_registration() -> None:
    """Pod IPs are reused: a read taken before a pod existed may list the instance of the
    pod that had its address before (its deregistration on the way). That instance is not
    the new pod's (it would turn the pod Ready and take our enable write), nor stale."""
    old_read = RegistryRead((_instance("10.0.0.1"), _instance("10.0.0.2", enabled=False)),
                            changed_at="2026-12-05T03:23:21Z", taken_at="2026-12-05T03:23:27Z")
    pods = [PodState(name="s1", track="stable", revision=1, ready=True, ip="10.0.0.1", created="2026-12-05T03:00:00Z"),
            PodState(name="c2", track="canary", revision=2, ready=False, ip="10.0.0.2", created="2026-12-05T03:23:28Z")]
    reg = summarize(provider="nacos", service="svc", read=old_read, pods=pods, revisions={"stable": 1, "canary": 2})
    assert set(reg.by_pod) == {"s1"} and reg.stale == () and reg.unconfirmed == ("c2",)
    same_second = RegistryRead(old_read.instances, changed_at=old_read.changed_at, taken_at="2026-12-05T03:23:28Z")
    reg = summarize(provider="nacos", service="svc", read=same_second, pods=pods, revisions={"stable": 1, "canary": 2})
    assert set(reg.by_pod) == {"s1"} and reg.unconfirmed == ("c2",)
    newer = RegistryRead(old_read.instances, changed_at=old_read.changed_at, taken_at="2026-12-05T03:23:29Z")
    reg = summarize(provider="nacos", service="svc", read=newer, pods=pods, revisions={"stable": 1, "canary": 2})
    assert set(reg.by_pod) == {"s1", "c2"} and reg.unconfirmed == ()


def test_a_drain_counts_from_a_read_that_shows_the_instance_offline_not_from_our_write() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from apprelease.rollout.drain import take_offline

    now = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    ours = replace(_instance("10.0.0.1", enabled=False), disabling=True)  # written, not read back yet
    assert take_offline(None, "s1", ours, now, "leaving").offline_since is None
    shown = take_offline(None, "s1", _instance("10.0.0.1", enabled=False), now, "leaving")
    assert shown.offline_since is not None


def test_instance_list_is_bounded_but_counts_exact() -> None:
    pods = [_pod(f"p{i}", f"10.1.{i // 250}.{i % 250}") for i in range(120)]
    read = RegistryRead(tuple(_instance(p.ip or "") for p in pods))
    reg = summarize(provider="nacos", service="svc", read=read, pods=pods, revisions={"stable": 1})
    assert len(reg.status.instances) == MAX_LISTED_INSTANCES
    assert reg.status.instance_count == 120 and reg.status.summary == "120/120"


# Graceful offline ------------------------------------------------------------------------


def test_registration_gates_and_status_flow_into_the_app_status() -> None:
    sim = nacos_sim()
    assert sim.status.registration is not None
    assert sim.status.registration.summary == "3/3"
    registered = sim.status.condition("Registered")
    assert registered is not None and registered.status == "True"


def test_abort_takes_canary_offline_before_scaling_it_away() -> None:
    sim = nacos_sim()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    canary_pod = sim.pods["canary"][0].name
    sim.annotate(requests.ABORT, "a")
    sim.tick()
    assert canary_pod in taken_offline(sim)
    assert sim.canary_replicas() == 1  # held while the instance drains
    assert [d.pod for d in sim.status.draining] == [canary_pod]
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(9)
    assert sim.canary_replicas() == 1
    sim.tick(1)
    assert sim.canary_replicas() == 0
    sim.settle()
    assert sim.status.draining == []  # gone: Nacos expires its override by itself (~60 s)


def test_a_new_pod_at_an_old_address_joins_with_its_own_state_not_the_old_override() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    leaving = sim.pods["stable"][-1]
    sim.edit(replicas=2)
    sim.tick()
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(10)
    sim.settle()
    assert leaving.name not in [p.name for p in sim.pods["stable"]]
    assert sim.overrides[(leaving.ip, 8080)].enabled is False  # outlives the instance, as in Nacos
    sim.serial_ips = [leaving.ip]  # the next pod gets the old address
    sim.edit(replicas=3)
    sim.settle()
    newcomer = next(p for p in sim.pods["stable"] if p.ip == leaving.ip)
    instance = sim.instance(leaving.ip)
    assert newcomer.name != leaving.name and instance is not None and instance.enabled
    assert dict(instance.metadata)["apprelease.io/owner"] == "ns/shop"
    assert sim.gates[newcomer.name].reason == "Serving"
    assert sim.status.draining == []


def test_promotion_grows_canary_then_drains_stable_then_canary() -> None:
    sim = nacos_sim()
    old_stable = [p.name for p in sim.pods["stable"]]
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert sim.status.promotion_phase == "ScaleCanary"
    assert sim.canary_replicas() == 3  # carries full capacity first
    for _ in range(4):  # the new canary pods join: registered, Ready, enabled
        sim.tick()
    assert sim.status.promotion_phase == "UpdateStable"
    assert set(old_stable) <= taken_offline(sim)
    assert sim.stable_image() == "registry/shop:v1"  # held during the drain
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(10)
    assert sim.stable_image() == "registry/shop:v2"
    sim.settle()
    assert sim.canary_replicas() == 3  # promotion done: now the canary drains
    canary_pods = [p.name for p in sim.pods["canary"]]
    assert set(canary_pods) <= taken_offline(sim)
    sim.tick(10)
    sim.settle()
    assert "canary" not in sim.deployments
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2
    new_stable = {p.name for p in sim.pods["stable"]}
    assert all(sim.gates[name].reason == "Serving" for name in new_stable)
    assert sim.status.draining == []


def test_scale_down_marks_and_drains_the_leaving_pods() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    newest = sim.pods["stable"][-1].name
    sim.edit(replicas=2)
    sim.tick()
    assert newest in taken_offline(sim)
    assert sim.deployments["stable"].replicas == 3
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(10)
    assert ("mark-leaving", newest) in kinds_at(sim)
    assert sim.deployments["stable"].replicas == 2
    assert newest not in [p.name for p in sim.pods["stable"]]


def test_drain_counts_from_when_the_registry_shows_the_instance_offline() -> None:
    # A disable that takes long to show (slow registry write, stale poll) must not shorten the drain.
    sim = nacos_sim(strategy={"rolling": {}})
    newest = sim.pods["stable"][-1]
    sim.edit(replicas=2)
    sim.tick()
    sim.overrides.pop((newest.ip, 8080))  # the registry has not applied the disable yet
    sim.tick(3)
    assert sim.status.draining[0].offline_since is None
    assert sim.deployments["stable"].replicas == 3
    sim.tick()  # applied now, and seen
    seen_at = sim.now
    sim.tick(9.9)
    assert sim.deployments["stable"].replicas == 3
    sim.tick(0.1)
    assert sim.deployments["stable"].replicas == 2
    assert sim.status.draining[0].offline_since == format_precise_time(seen_at)


def test_an_instance_enabled_again_behind_our_back_restarts_its_drain() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    newest = sim.pods["stable"][-1]
    sim.edit(replicas=2)
    sim.tick()
    sim.tick()
    sim.tick(6)
    sim.overrides.pop((newest.ip, 8080))  # someone re-enabled it in the Nacos console
    sim.actions.clear()
    sim.tick()
    assert newest.name in taken_offline(sim)
    assert sim.status.draining[0].offline_since is None
    sim.tick()
    sim.tick(6)
    assert sim.deployments["stable"].replicas == 3  # 12 s since first seen offline, but not in one stretch
    sim.tick(4)
    assert sim.deployments["stable"].replicas == 2


def test_take_down_to_zero_drains_everything_first() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    sim.edit(replicas=0)
    sim.tick()
    assert len(taken_offline(sim)) == 3
    assert sim.deployments["stable"].replicas == 3
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(10)
    assert sim.deployments["stable"].replicas == 0


def test_unreachable_registry_holds_leaving_pods() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    sim.nacos_up = False
    sim.edit(replicas=1)
    sim.tick()
    sim.tick(60)
    assert sim.deployments["stable"].replicas == 3
    assert "registry unreachable" in sim.status.message
    registered = sim.status.condition("Registered")
    assert registered is not None and registered.status == "Unknown"
    sim.nacos_up = True
    sim.tick()
    sim.tick()  # the next read shows it offline: the drain starts
    sim.tick(10)
    assert sim.deployments["stable"].replicas == 1


def test_unreachable_registry_hold_is_named_in_the_canary_message() -> None:
    sim = nacos_sim()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert sim.canary_replicas() == 3
    sim.nacos_up = False
    sim.edit(image="registry/shop:v3")  # the v2 canary pods would leave: held
    sim.tick()
    sim.tick(30)
    assert sim.canary_image() == "registry/shop:v2"
    assert (sim.status.canary_revision, sim.status.canary.revision) == (3, 2)  # planned, running
    assert "registry unreachable: pods stay" in sim.status.message
    assert sim.status.message.startswith(f"canary revision {sim.status.canary_revision}")


def test_user_offline_and_online() -> None:
    sim = nacos_sim(strategy={"rolling": {}})
    pod = sim.pods["stable"][0].name
    sim.annotate(requests.OFFLINE, pod)
    sim.tick()
    assert pod in taken_offline(sim)
    assert sim.status.offline_pods == [pod]
    assert sim.gates[pod].reason == "Offline" and sim.gates[pod].status  # still Ready
    sim.actions.clear()
    sim.annotate(requests.OFFLINE, "")
    sim.tick()
    assert pod in enabled_writes(sim)
    sim.settle()  # listed until a read shows the instance enabled again
    assert sim.status.offline_pods == []


def test_online_re_enables_an_instance_we_took_offline_even_if_the_pod_still_shows_serving() -> None:
    """The pod as the operator sees it may lag its own gate write (a stale watch under load):
    a disable that status says was ours is ours to undo, not "disabled in Nacos by someone"
    (that reason is False: the pod would stay unready for good after `online`)."""
    sim = nacos_sim(strategy={"rolling": {}})
    pod = sim.pods["stable"][0].name
    serving = sim.gates[pod]
    sim.annotate(requests.OFFLINE, pod)
    sim.tick()
    assert sim.status.offline_pods == [pod]
    sim.gates[pod] = serving  # the Offline gate not seen yet
    sim.actions.clear()
    sim.annotate(requests.OFFLINE, "")
    sim.tick()
    assert pod in enabled_writes(sim)
    assert sim.gates[pod].status, sim.gates[pod]
    sim.settle()
    assert sim.gates[pod].reason == "Serving"


def test_online_is_remembered_as_ours_until_the_registry_shows_the_instance_enabled() -> None:
    """Nacos applies an override late (a read right after the write shows the old state), and a
    written enable is not sent again for a moment: a pass that still reads the instance disabled
    must still know the disable was ours. Before, offlinePods forgot the pod in the pass that
    sent the enable, and the next pass called it "disabled in Nacos, not by AppRelease": the
    pod stayed unready for good (seen in CI about once in ten runs)."""
    sim = nacos_sim(strategy={"rolling": {}})
    pod = sim.pods["stable"][0].name
    sim.annotate(requests.OFFLINE, pod)
    sim.tick()
    key = next(k for k, o in sim.overrides.items() if o.enabled is False)
    disabled = sim.overrides[key]
    sim.annotate(requests.OFFLINE, "")
    sim.tick()
    assert pod in enabled_writes(sim)
    sim.overrides[key] = disabled  # Nacos has not applied the enable yet
    sim.tick()
    assert sim.gates[pod].reason != "DisabledInRegistry", sim.gates[pod]
    assert sim.status.offline_pods == [pod]  # still ours to put back
    sim.actions.clear()
    sim.tick()
    assert pod in enabled_writes(sim) or sim.overrides[key].enabled
    sim.settle()
    assert sim.gates[pod].reason == "Serving" and sim.status.offline_pods == []


def test_stale_instances_cleaned_up_when_asked_but_only_our_own() -> None:
    sim = nacos_sim(strategy={"rolling": {}}, registry={**NACOS, "cleanupStale": True})
    assert sim.nacos is not None
    sim.nacos[("10.9.9.9", 8080)] = True  # an address none of our pods has any more...
    sim.overrides[("10.9.9.9", 8080)] = Override(metadata=(("apprelease.io/owner", "ns/shop"),))
    sim.nacos[("10.8.8.8", 8080)] = True  # ... and another team's instance of the same service
    sim.tick()
    assert sim.status.registration is not None and sim.status.registration.stale_count == 2
    stale_writes = [a for _, a in sim.actions if a.kind == "write" and a.reason == "stale"]
    assert [(a.ip, a.enabled) for a in stale_writes] == [("10.9.9.9", False)]


def serving(sim: Sim) -> list[str]:
    """Pods that take requests: Ready, and their instance enabled and healthy in Nacos."""
    return [p.name for track, pods in sim.pods.items() for p in pods
            if sim._pod(p, track).ready and (i := sim.instance(p.ip)) is not None and i.enabled and i.healthy]


def test_rollback_during_promotion_keeps_the_canary_serving_until_stable_is_back() -> None:
    """The spec goes back while the stable Deployment takes the canary's revision (its old
    instances offline, the full-size canary carrying the traffic): the canary serves on until
    the stable Deployment is back at full ready size on the stable revision, then drains."""
    sim = nacos_sim()
    sim.surge = True  # Deployments roll as Kubernetes does (maxUnavailable 0)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    for _ in range(7):
        sim.tick()
        assert len(serving(sim)) >= 3, sim.status.message
    sim.tick(10)  # old stable instances drained: stable rolls to revision 2
    assert sim.status.promoting and sim.status.promotion_phase == "UpdateStable"
    assert {p.revision for p in sim.pods["stable"]} >= {2}
    sim.unready_revisions = {1}  # the stable revision's pods take a while to come back
    sim.edit(image="registry/shop:v1")  # roll back mid-promotion
    for _ in range(4):
        sim.tick(5)
        assert len(serving(sim)) >= 3, sim.status.message
    assert "canary" in sim.deployments and "rolling back" in sim.status.message
    sim.unready_revisions = set()
    for _ in range(12):
        sim.tick(5)
        assert len(serving(sim)) >= 3, sim.status.message
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 1
    assert "canary" not in sim.deployments and {p.revision for p in sim.pods["stable"]} == {1}
    assert len(serving(sim)) == 3 and "RolledBack" in sim.reasons()


def test_pods_the_rolling_stable_deployment_replaces_are_not_enabled_again() -> None:
    """Once the stable Deployment has the new revision, its old pods are no longer the plan's
    leaving pods (the Deployment controller removes them), but they still leave: their drained
    instances stay offline. Only a pod that stays on its track's revision is released."""
    sim = nacos_sim({"canary": {"steps": [{"setWeight": 34}, {"pause": {}}]}})
    sim.surge = True  # Deployments roll as Kubernetes does (maxUnavailable 0)
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full:1")
    for _ in range(20):
        sim.tick(2)
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2
    offline_first: set[str | None] = set()
    for _, action in sim.actions:
        if action.kind == "write" and action.pod and action.pod.startswith("stable-r1"):
            if action.reason == "offline":
                offline_first.add(action.pod)
            assert not (action.enabled and action.pod in offline_first), f"{action.pod} enabled again while it leaves"
    assert offline_first == {"stable-r1-1", "stable-r1-2", "stable-r1-3"}
