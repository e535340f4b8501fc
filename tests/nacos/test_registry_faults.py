"""Fault injection: the operator reaches a real Nacos through a proxy that refuses writes,
drips bytes, answers HTML or goes down, during a canary and during deletion. Nothing wedges
past its deadline, nothing is promoted or removed blindly, and other apps keep their latency.
The apps (simulated) register with Nacos directly; only the operator's calls go through the
proxy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.nacos.conftest import nacos_app, registered, service
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.fault_proxy import FaultProxy, fault_proxy
from tests.plugins.nacos import NacosEndpoint
from tests.plugins.nacos_apps import PodRegistrar
from tests.plugins.operator import AppReleases, OperatorProcess, hold_still

pytestmark = pytest.mark.nacos
STEPS = [{"setWeight": 34}, {"pause": {}}]


@pytest.fixture
def proxy(nacos_server: NacosEndpoint) -> Iterator[FaultProxy]:
    with fault_proxy(nacos_server.base_url.removesuffix("/nacos")) as running:
        yield running


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


def stalled_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        stalled = conditions(status).get("Stalled", {})
        return stalled.get("status") == "True" and stalled.get("reason") == reason
    return check


def pods_of_revision(arl: AppReleases, app: str, revision: int) -> set[str]:
    pods = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance={app},apprelease.io/revision={revision}")
    return {p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")}


def start_registered(arl: AppReleases, proxy: FaultProxy, nacos: NacosEndpoint, registrar: Callable[..., PodRegistrar],
                     name: str = "orders", **spec: Any) -> str:
    svc = service()
    arl.apply(nacos_app(proxy.address, svc, name=name, **spec))
    registrar(nacos, svc, app=name)  # before Healthy: the readiness gate waits for registration
    arl.wait_phase(name, "Healthy", timeout=90)
    total = spec.get("replicas", 3)
    arl.wait(name, lambda s: registered(s, f"{total}/{total}"), 60, f"{total}/{total} registered")
    return svc


def test_refused_writes_stall_the_promotion_without_removing_pods_then_it_completes(
    arl: AppReleases, nacos_server: NacosEndpoint, credentials: None, proxy: FaultProxy,
    registrar: Callable[..., PodRegistrar],
) -> None:
    start_registered(arl, proxy, nacos_server, registrar, steps=STEPS, registry={"drainSeconds": 2})
    arl.patch("orders", {"spec": {"image": "registry.local/orders:v2"}})
    arl.wait_phase("orders", "Paused", timeout=90, currentStepIndex=1)
    proxy.set_mode("refuse-writes")
    arl.cli("promote", "orders", "--full")
    # The canary grows to full size, then stable's instances must go offline: refused.
    status = arl.wait("orders", stalled_with("RegistryRefused"), 90, "Stalled RegistryRefused")
    assert "credentialsSecret" in status["message"] and status["failure"]["reason"] == "RegistryRefused"
    stable_pods = pods_of_revision(arl, "orders", 1)
    assert len(stable_pods) == 3
    hold_still(lambda: pods_of_revision(arl, "orders", 1), 6)  # nothing removed blindly
    proxy.set_mode("pass")
    status = arl.wait_phase("orders", "Healthy", timeout=120, stableRevision=2)
    assert "failure" not in status and conditions(status)["Stalled"]["status"] == "False"


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_a_dripping_registry_is_cut_off_and_other_apps_keep_their_latency(
    mode: str, arl: AppReleases, nacos_server: NacosEndpoint, credentials: None, proxy: FaultProxy,
    registrar: Callable[..., PodRegistrar], kube_cluster: KubeCluster, operator: OperatorProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """"drip-headers": every read returns within httpx's read timeout, so only a deadline
    around the whole call ends it; before, the lane was held for minutes while the last
    good read stayed current (Registered True) and liveness stayed green."""
    start_registered(arl, proxy, nacos_server, registrar, steps=STEPS)
    arl.apply({"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "neighbour"},
               "spec": {"image": "registry.local/neighbour:v1", "replicas": 1, "port": 8080}})
    arl.wait_phase("neighbour", "Healthy", timeout=60)
    proxy.set_mode(mode)  # type: ignore[arg-type]
    arl.patch("orders", {"spec": {"image": "registry.local/orders:v2"}})
    status = arl.wait("orders", lambda s: conditions(s).get("Registered", {}).get("reason") == "RegistryUnavailable",
                      90, "the dripping read cut off and reported")
    assert "no complete answer" in conditions(status)["Registered"]["message"]
    assert operator.process is not None and operator.process.poll() is None  # alive, not restarted
    latencies = []
    for tag in ("v2", "v3", "v4"):
        started = time.monotonic()
        arl.patch("neighbour", {"spec": {"image": f"registry.local/neighbour:{tag}"}})

        def rolled(tag: str = tag) -> bool:
            dep = arl.kubectl_json("deployment", "neighbour")
            return dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(tag)

        wait_for(rolled, 30, 0.05, f"neighbour's Deployment at {tag}")
        latencies.append(time.monotonic() - started)
    with capsys.disabled():
        print(f"\n[measured] edit → Deployment of another app while a registry drips: "
              f"{', '.join(f'{s:.2f}' for s in latencies)} s")
    assert max(latencies) < 5.0, latencies  # kubectl's own round trips included
    assert arl.status("orders").get("currentStepIndex") == 0  # not promoted blindly
    proxy.set_mode("pass")
    arl.wait_phase("orders", "Paused", timeout=120, currentStepIndex=1)


def test_html_instead_of_nacos_holds_the_canary_until_it_is_stalled(
    arl: AppReleases, nacos_server: NacosEndpoint, credentials: None, proxy: FaultProxy,
    registrar: Callable[..., PodRegistrar],
) -> None:
    start_registered(arl, proxy, nacos_server, registrar, steps=STEPS, progressDeadlineSeconds=20)
    proxy.set_mode("html")
    arl.patch("orders", {"spec": {"image": "registry.local/orders:v2"}})
    status = arl.wait("orders", stalled_with("RegistryBadResponse"), 120, "Stalled RegistryBadResponse")
    assert "serverAddr" in status["message"] and "Sign in" not in str(status)
    assert status["currentStepIndex"] == 0 and not status.get("aborted")
    assert any(e["reason"] == "RegistryBadResponse" and e["type"] == "Warning" for e in arl.events("orders"))
    proxy.set_mode("pass")
    status = arl.wait_phase("orders", "Paused", timeout=120, currentStepIndex=1)
    assert conditions(status)["Stalled"]["status"] == "False"


@pytest.mark.parametrize("mode", ["refuse-writes", "drip", "drip-headers", "html", "down"])
def test_deletion_goes_on_past_its_deadline_whatever_the_registry_does(
    mode: str, arl: AppReleases, nacos_server: NacosEndpoint, credentials: None, proxy: FaultProxy,
    registrar: Callable[..., PodRegistrar],
) -> None:
    start_registered(arl, proxy, nacos_server, registrar, replicas=1,
                     registry={"drainSeconds": 2, "deletionTimeout": "8s"})
    proxy.set_mode(mode)  # type: ignore[arg-type]
    started = time.monotonic()
    arl.cluster.kubectl("delete", "arl", "orders", "-n", arl.namespace, "--wait=false")
    wait_for(lambda: not arl.kubectl_json("appreleases")["items"], 90, 0.5, "the AppRelease gone")
    elapsed = time.monotonic() - started
    warnings = [e for e in arl.events("orders") if e["type"] == "Warning"
                and e["reason"] in ("DeletionForced", "RegistryUnreachable")]
    assert warnings, [e["reason"] for e in arl.events("orders")]
    assert elapsed < 60, elapsed
