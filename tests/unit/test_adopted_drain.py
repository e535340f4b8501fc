"""Adopted pods under Nacos: the first release under the operator takes them offline and
drains them before anything may delete them, and a consumer always finds a serving instance.

Adopted pods carry none of our labels, no readiness gate and no preStop hook: a rolling update
of the adopted Deployment would stop them at once. So new-revision pods start first (in the
canary Deployment, as a bridge), then the adopted instances go offline for drainSeconds, and
only then does the stable Deployment roll.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from apprelease.render.hashing import revision_hash
from apprelease.rollout import requests

from .sim import Sim, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "drainSeconds": 10}


def adopted_sim(**spec: object) -> Sim:
    base = make_app({"registry": NACOS, **spec})
    digest = revision_hash(base.spec.revision_template())
    template = {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "shop", "image": "registry/shop:v1"}]}}
    app = make_app({"registry": NACOS, **spec, "adopt": {"deployment": "shop", "selector": {"app": "shop"},
                                                         "revisionHash": digest, "podTemplate": template}})
    sim = Sim(app, nacos={})
    sim.settle()
    # What the operator observes of the adopted pods: stable pods of the adopted revision
    # (found by the selector), registered by the app itself, without our gate.
    sim.pods["stable"] = [replace(p, adopted=True, gate=None) for p in sim.pods["stable"]]
    for pod in sim.pods["stable"]:
        sim.gates.pop(pod.name, None)
    sim.settle()
    return sim


def serving(sim: Sim) -> set[str]:
    """Addresses a consumer may be handed: registered, healthy and enabled."""
    return {i.ip for i in sim.nacos_instances() if i.healthy and i.enabled}


def test_the_first_release_drains_adopted_pods_offline_before_they_go_and_never_leaves_none() -> None:
    sim = adopted_sim()
    sim.edit(image="registry/shop:v2")
    release_checked(sim)


def test_a_canary_promotion_drains_the_adopted_pods_too() -> None:
    sim = adopted_sim(strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.phase == "Paused" and any(p.adopted for p in sim.pods["stable"])
    sim.annotate(requests.PROMOTE, "full")
    release_checked(sim)


def release_checked(sim: Sim) -> None:
    """Tick until the release is over, checking at every pass: an adopted pod goes only
    after drainSeconds offline, some instance always serves, none of a stopped pod."""
    adopted = {p.name: p.ip for p in sim.pods["stable"] if p.adopted}
    assert len(adopted) == 3
    offline_at: dict[str, datetime] = {}
    for _ in range(40):
        sim.tick(2)
        live = {p.name for pods in sim.pods.values() for p in pods}
        for name, ip in adopted.items():
            instance = sim.instance(ip)
            if instance is not None and not instance.enabled:
                offline_at.setdefault(name, sim.now)
            if name not in live:
                # Gone only after its instance was offline for the whole drain.
                assert name in offline_at, f"{name} deleted while still enabled in Nacos"
                assert (sim.now - offline_at[name]).total_seconds() >= 10
        assert serving(sim), "a consumer found no instance"
        gone = set(serving(sim)) - {p.ip for pods in sim.pods.values() for p in pods}
        assert not gone, f"a consumer may pick a stopped instance: {gone}"
        if sim.deployments.keys() == {"stable"} and sim.stable_image() == "registry/shop:v2" \
                and not any(p.adopted for p in sim.pods["stable"]):
            break
    assert sim.stable_image() == "registry/shop:v2"
    assert set(sim.deployments) == {"stable"}, "the bridge is gone once stable carries the new revision"
    assert len(sim.pods["stable"]) == 3 and not any(p.adopted for p in sim.pods["stable"])
    assert set(offline_at) == set(adopted)


def drain_adopted_offline(sim: Sim) -> dict[str, str]:
    """Tick until every adopted instance is offline in Nacos (the release's drain window)."""
    adopted = {p.name: p.ip for p in sim.pods["stable"] if p.adopted}
    for _ in range(20):
        sim.tick(1)
        if all((i := sim.instance(ip)) is not None and not i.enabled for ip in adopted.values()):
            return adopted
    raise AssertionError(f"the adopted instances never went offline: {sim.status.message}")


def assert_adopted_serving_again(sim: Sim, adopted: dict[str, str]) -> None:
    for _ in range(10):
        before = serving(sim)
        enabling = not set(adopted.values()) <= before
        sim.tick(2)
        assert serving(sim), "a consumer found no instance"
        # Nacos applies (and pushes) each write on its own: the instances leaving go offline
        # only once the ones coming back are seen serving, or a client may find none between.
        assert not enabling or before <= serving(sim), f"{before - serving(sim)} offline while the adopted come back"
    live = {p.name for pods in sim.pods.values() for p in pods}
    assert set(adopted) <= live, "the adopted pods stay"
    disabled = [name for name, ip in adopted.items() if not (i := sim.instance(ip)) or not i.enabled]
    assert not disabled, f"left disabled in Nacos after the release stopped draining them: {disabled}"
    assert not sim.status.draining


def test_a_release_reverted_while_the_adopted_instances_drain_enables_them_again() -> None:
    sim = adopted_sim()
    sim.edit(image="registry/shop:v2")
    adopted = drain_adopted_offline(sim)
    sim.edit(image="registry/shop:v1")  # back to the adopted revision (a rollback is this spec edit)
    assert_adopted_serving_again(sim, adopted)


def test_a_promotion_aborted_while_the_adopted_instances_drain_enables_them_again() -> None:
    sim = adopted_sim(strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.PROMOTE, "full")
    adopted = drain_adopted_offline(sim)
    sim.annotate(requests.ABORT, "1")
    assert_adopted_serving_again(sim, adopted)
