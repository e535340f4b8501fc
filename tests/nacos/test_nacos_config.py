"""Nacos config released with the pods, by the operator on the real control plane and a real
Nacos (2.3.2 and 3.1.0): each revision's pods are pointed (env) at their own immutable copy,
published before they exist; the formal dataId follows the stable revision."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apprelease.registry.config_store import ConfigKey, NacosConfigStore, content_md5
from apprelease.render.nacos_config import GROUP_ENV
from tests.nacos.conftest import PORT, SECRET, run
from tests.plugins.fault_proxy import FaultProxy, fault_proxy
from tests.plugins.nacos import NacosEndpoint
from tests.plugins.nacos_config_readers import ConfigReaders
from tests.plugins.operator import AppReleases

pytestmark = pytest.mark.nacos

V1 = "greeting: hello\n"
V2 = "greeting: bonjour\n"
STEPS = [{"setWeight": 20}, {"pause": {}}]


def config_app(endpoint: NacosEndpoint, group: str, content: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "orders"},
        "spec": {
            "image": "registry.local/orders:v1", "replicas": 2, "port": PORT,
            "strategy": {"canary": {"steps": STEPS}},
            "config": {"nacos": {
                "serverAddr": endpoint.base_url, "credentialsSecret": {"name": SECRET},
                "items": [{"dataId": "orders.yaml", "group": group, "type": "yaml", "content": content}],
            }},
            **spec,
        },
    }


def read(config_store: NacosConfigStore, group: str) -> str | None:
    stored = run(config_store.read(ConfigKey("", group, "orders.yaml")))
    return stored.content if stored is not None else None


def pod_groups(arl: AppReleases, track: str) -> set[str]:
    """The copy group each live pod of the track is pointed at, by its own env."""
    pods = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance=orders,apprelease.io/track={track}")["items"]
    return {
        e["value"] for p in pods if not p["metadata"].get("deletionTimestamp")
        for c in p["spec"]["containers"] for e in c.get("env", []) if e["name"] == GROUP_ENV
    }


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


def test_canary_with_a_config_change_reads_its_own_copy_and_formal_follows_promotion(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    arl.apply(config_app(nacos_endpoint, group, V1))
    status = arl.wait_phase("orders", "Healthy", timeout=90)
    arl.wait("orders", lambda s: read(config_store, group) == V1, 30, "formal dataId = revision 1's content")
    assert conditions(arl.status("orders"))["ConfigPublished"]["status"] == "True"
    (old,) = pod_groups(arl, "stable")
    assert old.startswith(f"{group}.rev-") and read(config_store, old) == V1

    arl.apply(config_app(nacos_endpoint, group, V2))
    status = arl.wait("orders", lambda s: s.get("currentStepIndex") == 1 and s.get("phase") == "Paused"
                      and len(pod_groups(arl, "canary")) == 1, 90, "canary paused with its pod")
    (new,) = pod_groups(arl, "canary")
    assert new != old and read(config_store, new) == V2  # the canary reads the new content
    assert pod_groups(arl, "stable") == {old} and read(config_store, old) == V1  # stable keeps its own
    assert read(config_store, group) == V1  # formal stays the stable content while the canary runs
    published = {i["dataId"]: i for i in status["config"]["nacos"]["items"]}["orders.yaml"]
    assert set(published["revisions"]) == {old.removeprefix(f"{group}.rev-"), new.removeprefix(f"{group}.rev-")}

    arl.cli("promote", "orders", "--full")
    arl.wait_phase("orders", "Healthy", timeout=90)
    arl.wait("orders", lambda s: read(config_store, group) == V2, 30, "formal dataId = revision 2's content")
    assert pod_groups(arl, "stable") == {new}
    reasons = [e["reason"] for e in arl.events("orders")]
    assert "ConfigPublished" in reasons


def test_abort_leaves_no_pod_on_the_new_copy_and_formal_unchanged(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    arl.apply(config_app(nacos_endpoint, group, V1))
    arl.wait_phase("orders", "Healthy", timeout=90)
    (old,) = pod_groups(arl, "stable")
    arl.apply(config_app(nacos_endpoint, group, V2))
    arl.wait("orders", lambda s: s.get("currentStepIndex") == 1 and len(pod_groups(arl, "canary")) == 1, 90,
             "canary paused with its pod")
    arl.cli("abort", "orders")
    arl.wait("orders", lambda s: s.get("aborted") and not pod_groups(arl, "canary"), 60, "canary gone")
    assert pod_groups(arl, "stable") == {old}
    assert read(config_store, group) == V1


def test_drift_made_by_hand_is_reported_saved_and_put_back_with_enforce(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    body = config_app(nacos_endpoint, group, V1)
    body["spec"]["config"]["nacos"]["enforce"] = True
    arl.apply(body)
    arl.wait_phase("orders", "Healthy", timeout=90)
    arl.wait("orders", lambda s: read(config_store, group) == V1, 30, "formal published")
    edited = "greeting: edited by hand\n"
    run(config_store.publish(ConfigKey("", group, "orders.yaml"), edited, "yaml"))
    arl.wait("orders", lambda s: any(e["reason"] == "ConfigDrift" for e in arl.events("orders")), 60,
             "a ConfigDrift Warning")
    arl.wait("orders", lambda s: read(config_store, group) == V1, 60, "the hand edit put back")
    status = arl.status("orders")
    saved = f"{group}.drift-{content_md5(edited)[:8]}"
    assert saved in status["config"]["nacos"]["lastDrift"] and read(config_store, saved) == edited  # never silently lost


@pytest.fixture
def proxy(nacos_endpoint: NacosEndpoint) -> Iterator[FaultProxy]:
    with fault_proxy(nacos_endpoint.base_url.removesuffix("/nacos")) as running:
        yield running


def test_a_nacos_outage_holds_the_new_revision_then_it_resumes(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore, proxy: FaultProxy,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    body = config_app(nacos_endpoint, group, V1)
    body["spec"]["config"]["nacos"]["serverAddr"] = proxy.address
    arl.apply(body)
    arl.wait_phase("orders", "Healthy", timeout=90)
    (old,) = pod_groups(arl, "stable")
    proxy.set_mode("down")
    body["spec"]["config"]["nacos"]["items"][0]["content"] = V2
    arl.apply(body)
    status = arl.wait("orders", lambda s: conditions(s).get("ConfigPublished", {}).get("reason") == "RegistryUnavailable",
                      60, "ConfigPublished=False RegistryUnavailable")
    assert conditions(status)["ConfigPublished"]["status"] == "False"
    assert not pod_groups(arl, "canary") and pod_groups(arl, "stable") == {old}  # held: no pod of the new revision
    proxy.set_mode("pass")
    arl.wait("orders", lambda s: s.get("currentStepIndex") == 1 and len(pod_groups(arl, "canary")) == 1, 90,
             "the canary once Nacos is back")
    (new,) = pod_groups(arl, "canary")
    assert new != old and read(config_store, new) == V2 and read(config_store, group) == V1


def test_rollback_republishes_the_earlier_revisions_copy(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    body = config_app(nacos_endpoint, group, V1)
    body["spec"]["strategy"] = {"rolling": {}}
    arl.apply(body)
    arl.wait_phase("orders", "Healthy", timeout=90)
    (old,) = pod_groups(arl, "stable")
    body["spec"]["config"]["nacos"]["items"][0]["content"] = V2
    arl.apply(body)
    arl.wait("orders", lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2
             and read(config_store, group) == V2, 90, "revision 2 stable, formal = its content")
    run(config_store.delete(ConfigKey("", old, "orders.yaml")))  # revision 1's copy gone by hand
    arl.cli("rollback", "orders", "--to-revision", "1")
    arl.wait("orders", lambda s: s.get("phase") == "Healthy" and pod_groups(arl, "stable") == {old}
             and read(config_store, group) == V1, 90, "back on revision 1's content, formal too")
    assert read(config_store, old) == V1


class PodReaders:
    """One nacos-client ConfigService per live pod of the app, started when the pod has an IP,
    reading the group its own env names (as the app's Spring Cloud Alibaba client would)."""

    def __init__(self, arl: AppReleases, readers: ConfigReaders, formal_group: str):
        self.arl = arl
        self.readers = readers
        readers.add_pod("person", "127.0.0.2", formal_group, ["orders.yaml"])  # reads the formal dataId

    def sync(self) -> None:
        pods = self.arl.kubectl_json("pods", "-l", "app.kubernetes.io/instance=orders")["items"]
        live = {}
        for pod in pods:
            ip = pod["status"].get("podIP")
            groups = {e["value"] for c in pod["spec"]["containers"] for e in c.get("env", []) if e["name"] == GROUP_ENV}
            if ip and groups and not pod["metadata"].get("deletionTimestamp"):
                live[pod["metadata"]["name"]] = (ip, groups.pop())
        for name in set(self.readers.pods()) - set(live) - {"person"}:
            self.readers.remove_pod(name)
        for name, (ip, group) in live.items():
            if name not in self.readers.pods():
                self.readers.add_pod(name, ip, group, ["orders.yaml"])

    def wait(self, predicate: Any, timeout: float, message: str) -> dict[str, Any]:
        def check(status: dict[str, Any]) -> bool:
            self.sync()
            return bool(predicate(status))

        return self.arl.wait("orders", check, timeout, message)


def test_every_client_reads_exactly_its_revisions_content_through_a_canary(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
    config_readers: Any,
) -> None:
    """The judge: nacos-client ConfigService per simulated pod (one JVM for all: the design
    needs no client IP), reading at startup and listening after."""
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    arl.apply(config_app(nacos_endpoint, group, V1))
    arl.wait_phase("orders", "Healthy", timeout=90)
    arl.wait("orders", lambda s: read(config_store, group) == V1, 30, "formal published")
    pods = PodReaders(arl, config_readers(nacos_endpoint, jvm_per_pod=False), group)
    pods.wait(lambda s: len(pods.readers.pods()) == 3, 60, "two stable pods and the person read")
    (old,) = pod_groups(arl, "stable")

    arl.apply(config_app(nacos_endpoint, group, V2))
    pods.wait(lambda s: s.get("currentStepIndex") == 1 and len(pod_groups(arl, "canary")) == 1
              and len(pods.readers.pods()) == 4, 90, "canary paused, its pod reading")
    (new,) = pod_groups(arl, "canary")
    promoted_at = time.time()
    arl.cli("promote", "orders", "--full")
    pods.wait(lambda s: s.get("phase") == "Healthy" and pod_groups(arl, "stable") == {new}
              and not pod_groups(arl, "canary") and len(pods.readers.pods()) == 3, 120, "promoted, new pods reading")
    pods.readers.wait_until(lambda r: r.holding()[("person", "orders.yaml")].md5 == content_md5(V2), 60,
                            "the formal dataId's reader gets the new content")

    expected = {old: content_md5(V1), new: content_md5(V2)}
    reads = [r for r in pods.readers.reads() if r.pod != "person"]
    wrong = [r for r in reads if r.md5 != expected[r.group]]
    assert reads and not wrong, wrong  # 0 reads of the wrong content (none absent either)
    assert {r.group for r in reads} == {old, new}
    last_new = max(r.at for r in reads if r.group == new)
    formal_changed = pods.readers.holding()[("person", "orders.yaml")].at
    print(f"\n[{nacos_endpoint.major}.x] reads: {len(reads)}, wrong: {len(wrong)}; after promotion: last stable pod"
          f" on the new content {last_new - promoted_at:.1f} s, formal changed {formal_changed - promoted_at:.1f} s")
    assert not pods.readers.errors()


def test_blue_green_preview_reads_the_new_copy_active_the_old_until_the_switch(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
) -> None:
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    body = config_app(nacos_endpoint, group, V1)
    body["spec"]["strategy"] = {"blueGreen": {}}
    arl.apply(body)
    arl.wait_phase("orders", "Healthy", timeout=90)
    (old,) = pod_groups(arl, "stable")
    body["spec"]["config"]["nacos"]["items"][0]["content"] = V2
    arl.apply(body)
    arl.wait("orders", lambda s: s.get("phase") == "Paused" and len(pod_groups(arl, "preview")) == 1, 90,
             "the preview up, waiting for the switch")
    (new,) = pod_groups(arl, "preview")
    assert new != old and read(config_store, new) == V2
    assert pod_groups(arl, "stable") == {old} and read(config_store, group) == V1
    arl.cli("promote", "orders", "--full")
    arl.wait("orders", lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2
             and read(config_store, group) == V2, 120, "switched, formal = the new content")


def test_a_rolling_update_of_config_alone_moves_every_pod_to_its_copy_with_no_wrong_read(
    arl: AppReleases, nacos_endpoint: NacosEndpoint, endpoint_credentials: None, config_store: NacosConfigStore,
    config_readers: Any,
) -> None:
    """Only the content changes (same image): a new revision, rolled pod by pod; each pod, old
    or new, reads its own revision's content from its first read on."""
    group = f"ORDERS-{uuid.uuid4().hex[:6]}"
    body = config_app(nacos_endpoint, group, V1)
    body["spec"]["strategy"] = {"rolling": {}}
    arl.apply(body)
    arl.wait_phase("orders", "Healthy", timeout=90)
    pods = PodReaders(arl, config_readers(nacos_endpoint, jvm_per_pod=False), group)
    pods.wait(lambda s: len(pods.readers.pods()) == 3, 60, "two pods and the person read")
    (old,) = pod_groups(arl, "stable")

    body["spec"]["config"]["nacos"]["items"][0]["content"] = V2
    arl.apply(body)
    status = pods.wait(lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2
                       and len(pod_groups(arl, "stable")) == 1 and pod_groups(arl, "stable") != {old}
                       and len(pods.readers.pods()) == 3, 120, "every pod on revision 2")
    assert status["stableRevision"] == 2 and arl.get("orders")["spec"]["image"] == "registry.local/orders:v1"
    (new,) = pod_groups(arl, "stable")
    pods.readers.wait_until(lambda r: r.holding()[("person", "orders.yaml")].md5 == content_md5(V2), 60,
                            "the formal dataId follows the new stable")
    expected = {old: content_md5(V1), new: content_md5(V2)}
    reads = [r for r in pods.readers.reads() if r.pod != "person"]
    wrong = [r for r in reads if r.md5 != expected.get(r.group)]
    assert {r.group for r in reads} == {old, new} and not wrong, wrong
    assert not pods.readers.errors()
