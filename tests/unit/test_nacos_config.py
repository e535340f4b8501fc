"""Nacos config released with the pods, through whole rollouts on the simulated cluster and a
fake config store: every pod reads its own revision's copy, published before the pod exists."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from apprelease.registry.base import RegistryUnavailable
from apprelease.registry.config_store import ConfigKey
from apprelease.registry.config_sync import run_actions
from apprelease.render.nacos_config import GROUP_ENV, SPRING_GROUP_ENV, content_md5, pod_env
from apprelease.rollout import requests
from apprelease.rollout.nacos_config import CONFIG_DRIFT, CONFIG_PUBLISHED, config_hash_of

from .fake_config_store import FakeConfigStore
from .sim import CANARY, Sim, make_app

V1 = "greeting: hello\n"
V2 = "greeting: bonjour\n"
V3 = "greeting: hallo\n"


def nacos(content: str, **extra: Any) -> dict[str, Any]:
    return {"nacos": {"serverAddr": "nacos.example:8848",
                      "items": [{"dataId": "shop.yaml", "group": "SHOP", "type": "yaml", "content": content}],
                      **extra}}


def started(strategy: dict[str, Any] | None = None, **extra: Any) -> Sim:
    spec: dict[str, Any] = {"config": nacos(V1, **extra)}
    if strategy is not None:
        spec["strategy"] = strategy
    sim = Sim(make_app(spec), config_store=FakeConfigStore())
    sim.settle()
    assert sim.status.phase == "Healthy", sim.status.message
    return sim


def edit_config(sim: Sim, content: str, **extra: Any) -> None:
    sim.edit(config=nacos(content, **extra))


def group_of(sim: Sim, track: str) -> str | None:
    """The copy group the track's pods are pointed at (their env), None without pods."""
    dep = sim.deployments.get(track)
    if dep is None or dep.replicas == 0:
        return None
    template = next(r.template for r in sim.revisions.values() if r.hash == dep.revision_hash)
    env = {e["name"]: e["value"] for e in pod_env(template.config)}
    assert env[SPRING_GROUP_ENV] == env[GROUP_ENV]
    return env[GROUP_ENV]


def read(sim: Sim, group: str) -> str | None:
    return sim.config_store.contents().get(ConfigKey("", group, "shop.yaml"))


def formal(sim: Sim) -> str | None:
    return read(sim, "SHOP")


def condition(sim: Sim, type_: str) -> tuple[str, str]:
    found = sim.status.condition(type_)
    assert found is not None
    return found.status, found.reason


def test_first_revision_publishes_its_copy_before_any_pod_then_formal() -> None:
    sim = Sim(make_app({"config": nacos(V1)}), config_store=FakeConfigStore())
    first = sim.tick()
    # No pod may exist before its copy: the stable Deployment is created without pods.
    assert [(t.track, t.replicas) for t in first.desired.tracks] == [("stable", 0)]
    assert condition(sim, CONFIG_PUBLISHED) == ("False", "Publishing")
    # Only the copy: the formal dataId waits for the revision to run on every stable pod.
    assert [(a.kind, a.group.startswith("SHOP.rev-")) for a in first.config_actions] == [("publish", True)]
    sim.settle()
    group = group_of(sim, "stable")
    assert group is not None and group.startswith("SHOP.rev-")
    assert read(sim, group) == V1
    assert formal(sim) == V1
    assert condition(sim, CONFIG_PUBLISHED) == ("True", "Published")
    assert condition(sim, CONFIG_DRIFT) == ("False", "InSync")
    item = sim.status.config.nacos.items[0]
    assert item.md5 == content_md5(V1) and item.revisions == {group.removeprefix("SHOP.rev-"): content_md5(V1)}
    assert "ConfigPublished" in sim.reasons()


def test_canary_reads_its_copy_stable_keeps_its_own_formal_follows_promotion() -> None:
    sim = started(CANARY)
    old = group_of(sim, "stable")
    edit_config(sim, V2)
    sim.tick()
    assert group_of(sim, "canary") is None  # held: the copy is published, not yet read back
    sim.settle()
    new = group_of(sim, "canary")
    assert new is not None and new != old
    assert read(sim, new) == V2 and read(sim, old) == V1
    assert group_of(sim, "stable") == old
    assert sim.status.current_step_index == 1 and sim.status.phase == "Paused"
    assert formal(sim) == V1  # formal stays the stable content through steps and pauses
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert formal(sim) == V1  # promoting: not stable yet
    sim.settle()
    assert sim.status.phase == "Healthy" and group_of(sim, "stable") == new
    assert formal(sim) == V2


def test_abort_leaves_formal_and_no_pod_reads_the_new_copy() -> None:
    sim = started(CANARY)
    old = group_of(sim, "stable")
    edit_config(sim, V2)
    sim.settle()
    sim.annotate(requests.ABORT, "a1")
    sim.settle()
    assert sim.status.aborted
    assert group_of(sim, "canary") is None
    assert group_of(sim, "stable") == old
    assert formal(sim) == V1


def test_blue_green_preview_reads_the_new_copy_until_the_switch() -> None:
    sim = started({"blueGreen": {}})
    old = group_of(sim, "stable")
    edit_config(sim, V2)
    sim.settle()
    new = group_of(sim, "preview")
    assert new is not None and new != old and read(sim, new) == V2
    assert group_of(sim, "stable") == old and formal(sim) == V1
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert formal(sim) == V2


def test_rolling_update_of_config_alone() -> None:
    sim = started()
    old = group_of(sim, "stable")
    edit_config(sim, V2)
    held = sim.tick()
    assert held.desired.tracks[0].revision_hash == sim.deployments["stable"].revision_hash  # keeps what it runs
    assert sim.status.condition(CONFIG_PUBLISHED).status == "False"
    assert "waiting for revision 2's config" in sim.status.message
    sim.settle()
    assert group_of(sim, "stable") != old and formal(sim) == V2
    assert sim.status.stable_revision == 2


def test_rollback_republishes_a_copy_that_is_gone() -> None:
    sim = started()
    old = group_of(sim, "stable")
    assert old is not None
    edit_config(sim, V2)
    sim.settle()
    del sim.config_store.configs[ConfigKey("", old, "shop.yaml")]  # gone (say, deleted by hand)
    edit_config(sim, V1)  # back to revision 1's content
    held = sim.tick()
    assert group_of(sim, "stable") != old  # not yet: its copy is missing
    assert any(a.kind == "publish" and a.group == old for a in held.config_actions)
    sim.settle()
    assert group_of(sim, "stable") == old and read(sim, old) == V1 and formal(sim) == V1


def test_an_outage_holds_the_new_revision_then_it_resumes() -> None:
    sim = started()
    old = group_of(sim, "stable")
    sim.config_store.fail_with = RegistryUnavailable("nacos.example:8848: connection refused")
    edit_config(sim, V2)
    for _ in range(3):
        sim.tick(10)
    assert group_of(sim, "stable") == old
    assert condition(sim, CONFIG_PUBLISHED) == ("False", "RegistryUnavailable")
    assert sim.status.failure is not None and sim.status.failure.reason == "ConfigStoreUnavailable"
    sim.tick(600)  # past progressDeadlineSeconds: Stalled, still holding
    assert sim.status.phase == "Degraded" and group_of(sim, "stable") == old
    sim.config_store.fail_with = None
    sim.settle()
    assert sim.status.phase == "Healthy" and group_of(sim, "stable") != old and formal(sim) == V2


def test_a_refused_publish_holds_naming_the_data_id() -> None:
    sim = started()
    old = group_of(sim, "stable")
    edit_config(sim, V2)
    new = f"SHOP.rev-{config_hash_of(sim.app.spec.revision_template())}"
    sim.config_store.refuse = {ConfigKey("", new, "shop.yaml")}
    for _ in range(3):
        sim.tick()
    assert condition(sim, CONFIG_PUBLISHED) == ("False", "PublishFailed")
    assert f"{new}/shop.yaml" in sim.status.condition(CONFIG_PUBLISHED).message
    assert sim.status.failure is not None and sim.status.failure.reason == "ConfigPublishFailed"
    assert group_of(sim, "stable") == old
    sim.config_store.refuse = set()
    sim.tick()  # publishes; the read after it (a wake-up in the operator) releases the hold
    sim.settle()
    assert group_of(sim, "stable") == new and sim.status.failure is None


def test_content_that_does_not_parse_is_a_verdict_never_a_publish() -> None:
    sim = started()
    store: FakeConfigStore = sim.config_store
    before = dict(store.contents())
    sim.edit(config={"nacos": {"serverAddr": "nacos.example:8848", "items": [
        {"dataId": "shop.yaml", "group": "SHOP", "type": "yaml", "content": "a: [1, 2"}]}})
    sim.tick()
    sim.tick()
    assert store.contents() == before
    assert sim.status.phase == "Degraded"
    assert sim.status.failure is not None and sim.status.failure.reason == "ConfigInvalid"
    assert "spec.config.nacos.items[0]" in sim.status.failure.message
    assert condition(sim, CONFIG_PUBLISHED) == ("False", "ConfigInvalid")
    assert "ConfigInvalid" in sim.reasons()


def test_formal_drift_is_saved_and_reported_then_put_back_at_the_next_promotion() -> None:
    sim = started()
    sim.config_store.hand_edit(ConfigKey("", "SHOP", "shop.yaml"), "greeting: edited\n")
    sim.settle()
    assert condition(sim, CONFIG_DRIFT) == ("True", "HandEdited")
    drift = sim.status.config.nacos.drift[0]
    assert drift.state == "Saved" and read(sim, drift.saved_to) == "greeting: edited\n"
    assert formal(sim) == "greeting: edited\n"  # not enforced: left until the next promotion
    assert "ConfigDrift" in sim.reasons()
    edit_config(sim, V2)
    sim.settle()
    assert formal(sim) == V2
    assert condition(sim, CONFIG_DRIFT) == ("False", "InSync")
    assert "saved to" in (sim.status.config.nacos.last_drift or "")


def test_formal_drift_is_put_back_at_once_with_enforce() -> None:
    sim = started(enforce=True)
    sim.config_store.hand_edit(ConfigKey("", "SHOP", "shop.yaml"), "greeting: edited\n")
    sim.settle()
    assert formal(sim) == V1
    assert read(sim, f"SHOP.drift-{content_md5('greeting: edited' + chr(10))[:8]}") == "greeting: edited\n"
    assert condition(sim, CONFIG_DRIFT)[0] == "False"


def test_a_hand_edited_copy_is_put_back_with_enforce_and_kept_without() -> None:
    for enforce, expected in ((True, V1), (False, "greeting: edited\n")):
        sim = started(enforce=enforce)
        group = group_of(sim, "stable")
        assert group is not None
        sim.config_store.hand_edit(ConfigKey("", group, "shop.yaml"), "greeting: edited\n")
        sim.settle()
        assert read(sim, group) == expected
        assert f"{group}/shop.yaml edited by hand" in (sim.status.config.nacos.last_drift or "")
        assert condition(sim, CONFIG_DRIFT)[0] == ("False" if enforce else "True")


def test_copies_outside_the_kept_history_are_deleted() -> None:
    sim = Sim(make_app({"config": nacos(V1), "revisionHistoryLimit": 1}), config_store=FakeConfigStore())
    sim.settle()
    first = group_of(sim, "stable")
    for content in (V2, V3):
        edit_config(sim, content)
        sim.settle()
    assert first is not None and read(sim, first) is None
    groups = {k.group for k in sim.config_store.contents() if k.group.startswith("SHOP.rev-")}
    assert group_of(sim, "stable") in groups and len(groups) == 2  # the stable's and one kept
    assert all(len(i.revisions) == 2 for i in sim.status.config.nacos.items)


def _deletion(policy: str) -> tuple[Sim, Any]:
    sim = started(deletionPolicy=policy)
    edit_config(sim, V2, deletionPolicy=policy)
    sim.settle()
    return sim, sim.observed()


def test_deletion_retain_removes_the_copies_once_no_pod_reads_them_and_keeps_formal() -> None:
    from apprelease.rollout.deletion import needs_finalizer, plan_deletion

    sim, observed = _deletion("Retain")
    assert needs_finalizer(sim.app)
    waiting = plan_deletion(sim.app, sim.status, observed, sim.now, sim.now)
    assert waiting.delete_workloads and not waiting.release and not waiting.config_actions  # pods still run
    gone = dataclasses.replace(observed, pods=())
    deleting = plan_deletion(sim.app, sim.status, gone, sim.now, sim.now)
    assert not deleting.release
    deleted = {a.group for a in deleting.config_actions}
    assert deleted and all(g.startswith("SHOP.rev-") for g in deleted) and len(deleted) == 2
    asyncio.run(run_actions(sim.config_store, "public", deleting.config_actions))
    after = dataclasses.replace(sim.observed(), pods=())
    done = plan_deletion(sim.app, sim.status, after, sim.now, sim.now)
    assert done.release and "ConfigCleanedUp" in [e.reason for e in done.events]
    assert formal(sim) == V2


def test_deletion_delete_removes_formal_too_and_an_outage_leaves_it_after_the_bound() -> None:
    from apprelease.rollout.deletion import plan_deletion

    sim, observed = _deletion("Delete")
    gone = dataclasses.replace(observed, pods=())
    assert ("SHOP", "shop.yaml") in {(a.group, a.data_id) for a in
                                     plan_deletion(sim.app, sim.status, gone, sim.now, sim.now).config_actions}
    sim.config_store.fail_with = RegistryUnavailable("nacos.example:8848: connection refused")
    down = dataclasses.replace(sim.observed(), pods=())
    held = plan_deletion(sim.app, sim.status, down, sim.now, sim.now)
    assert not held.release and "removing" in held.message
    later = sim.now + timedelta(seconds=131)  # drainSeconds + deletionTimeout (defaults: 10 s + 2 m)
    forced = plan_deletion(sim.app, sim.status, down, later, sim.now)
    assert forced.release
    warning = next(e for e in forced.events if e.reason == "ConfigLeftBehind")
    assert "connection refused" in warning.message and "SHOP/shop.yaml" in warning.message


def test_an_outage_holds_a_new_canary_without_pods_over_many_passes() -> None:
    sim = started(CANARY)
    sim.config_store.fail_with = RegistryUnavailable("nacos.example:8848: connection refused")
    edit_config(sim, V2)
    for _ in range(4):
        sim.tick(5)
        assert group_of(sim, "canary") is None and sim.canary_replicas() == 0  # never a pod before its copy
    assert condition(sim, CONFIG_PUBLISHED) == ("False", "RegistryUnavailable")
    sim.config_store.fail_with = None
    sim.tick()
    sim.settle()
    assert group_of(sim, "canary") is not None and sim.status.current_step_index == 1


def test_an_outage_holds_a_blue_green_preview_without_pods_and_active_keeps_its_copy() -> None:
    sim = started({"blueGreen": {}})
    old = group_of(sim, "stable")
    sim.config_store.fail_with = RegistryUnavailable("nacos.example:8848: connection refused")
    edit_config(sim, V2)
    for _ in range(3):
        sim.tick(5)
        assert group_of(sim, "preview") is None and group_of(sim, "stable") == old
    sim.config_store.fail_with = None
    sim.tick()
    sim.settle()
    new = group_of(sim, "preview")
    assert new is not None and new != old and read(sim, new) == V2 and formal(sim) == V1
