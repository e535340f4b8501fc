"""An app deployed by hand and registered in Nacos, adopted, then released under the operator:
the Java consumer (nacos-client) never finds no instance and never picks a stopped one.

The adopted pods carry none of our labels, no readiness gate and no preStop hook. The operator
observes them by the adopted selector, counts them in the registration, and on the first
release starts the new revision beside them (the canary Deployment as a bridge), takes their
instances offline for drainSeconds, and only then rolls the stable Deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.nacos.conftest import PORT, SECRET, registered, service
from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.java_consumer import JavaConsumer
from tests.plugins.lossless import judge
from tests.plugins.nacos import NacosEndpoint
from tests.plugins.nacos_apps import PodRegistrar
from tests.plugins.operator import AppReleases, OperatorProcess

pytestmark = pytest.mark.nacos
NAME = "orders"
DRAIN = 2


def by_hand(namespace: str) -> dict[str, Any]:
    """The Deployment as kubectl applied it before the operator: only its own labels."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": NAME}},
            "template": {"metadata": {"labels": {"app": NAME}}, "spec": {"containers": [{
                "name": NAME, "image": "registry.local/orders:v1", "ports": [{"containerPort": PORT}],
                "readinessProbe": {"tcpSocket": {"port": PORT}},
            }]}},
        },
    }


def pod_names(arl: AppReleases) -> set[str]:
    return {p["metadata"]["name"] for p in arl.kubectl_json("pods", "-l", f"app={NAME}")["items"]
            if not p["metadata"].get("deletionTimestamp")}


def adopt_registered(
    arl: AppReleases, kube_cluster: KubeCluster, endpoint: NacosEndpoint,
    registrar: Callable[..., PodRegistrar], java_consumer: Callable[..., JavaConsumer],
    drain: int = DRAIN, **spec: Any,
) -> tuple[str, PodRegistrar, JavaConsumer, set[str]]:
    """The Deployment applied by hand, its apps registered and picked, then adopted with
    registry.nacos: (the Nacos service, the apps, the consumer, the adopted pods)."""
    svc = service()
    kube_cluster.apply(by_hand(arl.namespace))
    apps = registrar(endpoint, svc, selector=f"app={NAME}")  # the apps register themselves
    wait_for(lambda: len(apps.registered_ips()) == 3 or NotYet(apps.registered_ips()), 90, 0.3, "3 instances")
    consumer = java_consumer(endpoint, service_name=svc)
    consumer.wait_for_picks(lambda log: len(log.picks) > 100, 60, "the consumer picking")
    wait_for(lambda: (arl.kubectl_json("deployment", NAME).get("status") or {}).get("readyReplicas") == 3,
             60, 0.3, "the Deployment rolled out")
    adopted = pod_names(arl)

    arl.cli("adopt", f"deploy/{NAME}")
    arl.patch(NAME, {"spec": {"registry": {
        "nacos": {"serverAddr": endpoint.base_url, "serviceName": svc, "credentialsSecret": {"name": SECRET}},
        "drainSeconds": drain, "gateTimeout": "2m", "deletionTimeout": "20s"}, **spec}})
    # The adopted pods count: registered 3/3 without a restart.
    arl.wait(NAME, lambda s: registered(s, "3/3"), 90, "the adopted pods registered")
    arl.wait_phase(NAME, "Healthy", timeout=60)
    assert pod_names(arl) == adopted
    return svc, apps, consumer, adopted


def test_an_adopted_app_in_nacos_is_released_without_a_lost_pick(
    arl: AppReleases, kube_cluster: KubeCluster, endpoint_credentials: None, operator: OperatorProcess,
    nacos_endpoint: NacosEndpoint, registrar: Callable[..., PodRegistrar],
    java_consumer: Callable[..., JavaConsumer], capsys: pytest.CaptureFixture[str],
) -> None:
    _, apps, consumer, adopted = adopt_registered(arl, kube_cluster, nacos_endpoint, registrar, java_consumer)
    tree = arl.cli("get", NAME).stdout
    assert all(f"{pod}  Pod" in tree for pod in adopted), tree

    start = time.time()
    arl.patch(NAME, {"spec": {"image": "registry.local/orders:v2"}})
    arl.wait_phase(NAME, "Healthy", timeout=180, stableRevision=2)
    arl.wait(NAME, lambda s: registered(s, "3/3"), 60, "the new pods registered")
    wait_for(lambda: not (pod_names(arl) & adopted) and not arl.kubectl_json(
        "deployments", "-l", "apprelease.io/track=canary")["items"], 90, 0.3, "the adopted pods and the bridge gone")
    wait_for(lambda: all(r.gone_at for r in apps.pods.snapshot() if r.deletion_requested_at),
             60, 0.1, "every leaving pod gone")
    end = time.time()
    consumer.wait_for_picks(lambda log: log.picks and log.picks[-1].at > end + 1, 30, "picks after the release")
    verdict = judge(consumer.picks(), apps.pods.snapshot(), start, end + 1)
    with capsys.disabled():
        print(f"\n[measured] adopted app, first release under the operator (Nacos {nacos_endpoint.version}):"
              f" {verdict.summary()}")
    verdict.assert_lossless()
    disabled = apps.timeline.disabled_at
    assert all(apps.pods.record(p).ip in disabled for p in adopted), "each adopted instance went offline first"


def adopted_ips(arl: AppReleases, adopted: set[str]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in arl.kubectl_json("pods", "-l", f"app={NAME}")["items"]
            if p["metadata"]["name"] in adopted}


def test_an_abort_while_the_adopted_instances_drain_enables_them_again(
    arl: AppReleases, kube_cluster: KubeCluster, credentials: None, operator: OperatorProcess,
    nacos_server: NacosEndpoint, registrar: Callable[..., PodRegistrar],
    java_consumer: Callable[..., JavaConsumer],
) -> None:
    """The promotion of a canary takes the adopted instances offline before the stable
    Deployment changes; aborted in that window, the adopted pods stay and must serve again
    (they have no gate to remember they were disabled by us)."""
    _, apps, consumer, adopted = adopt_registered(
        arl, kube_cluster, nacos_server, registrar, java_consumer, drain=60,
        strategy={"rolling": None, "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    ips = adopted_ips(arl, adopted)
    arl.patch(NAME, {"spec": {"image": "registry.local/orders:v2"}})
    arl.wait_phase(NAME, "Paused", timeout=120)
    arl.cli("promote", NAME, "--full")

    def all_disabled() -> Any:
        listed = {i.ip: i.enabled for i in apps.listed()}
        return all(listed.get(ip) is False for ip in ips.values()) or NotYet(listed)

    wait_for(all_disabled, 90, 0.3, "the adopted instances offline for the promotion")
    aborted_at = time.time()
    arl.cli("abort", NAME)

    def all_enabled() -> Any:
        listed = {i.ip: (i.enabled, i.healthy) for i in apps.listed()}
        return all(listed.get(ip) == (True, True) for ip in ips.values()) or NotYet(listed)

    wait_for(all_enabled, 60, 0.3, "the adopted instances enabled again after the abort")
    assert adopted <= pod_names(arl), "the adopted pods stay after the abort"
    status = arl.wait(NAME, lambda s: not {d["pod"] for d in s.get("draining") or []} & adopted, 30,
                      "no adopted pod listed as draining")
    assert status.get("aborted"), status.get("phase")
    since = time.time()
    consumer.wait_for_picks(lambda log: set(ips.values()) <= {p.ip for p in log.between(since)}, 30,
                            "the consumer picking the adopted instances again")
    # The canary's instances went offline only once the adopted ones served again.
    assert not consumer.picks().unavailable(aborted_at), "the consumer found no instance after the abort"
