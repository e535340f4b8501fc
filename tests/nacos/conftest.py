"""Shared pieces of the tests that run the operator against a real Nacos server."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from apprelease.registry.config_store import NacosConfigStore
from tests.plugins.cluster import KubeCluster
from tests.plugins.nacos import AppInstanceSimulator, NacosEndpoint
from tests.plugins.nacos_apps import PodRegistrar

PORT = 8080
SECRET = "nacos-credentials"
DRAIN_SECONDS = 4
# The registrar sees an instance disabled up to this late (its 0.3 s poll plus Nacos applying
# the change); a pod's deletion it sees from a watch, within milliseconds.
SEEN_LATE = 1.0
T = TypeVar("T")

def nacos_app(endpoint_url: str, service: str, *, name: str = "orders", steps: list | None = None,
              registry: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    strategy = {"canary": {"steps": steps}} if steps is not None else {"rolling": {}}
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.local/orders:v1", "replicas": 3, "port": PORT,
            "strategy": strategy,
            "registry": {
                "nacos": {"serverAddr": endpoint_url, "serviceName": service,
                          "credentialsSecret": {"name": SECRET}},
                "drainSeconds": DRAIN_SECONDS, "gateTimeout": "2m", "deletionTimeout": "20s",
                **(registry or {}),
            },
            **spec,
        },
    }


@pytest.fixture
def credentials(kube_cluster: KubeCluster, namespace: str, nacos_server: NacosEndpoint) -> None:
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": namespace},
        "data": {"username": base64.b64encode((nacos_server.username or "").encode()).decode(),
                 "password": base64.b64encode((nacos_server.password or "").encode()).decode()},
    }
    kube_cluster.apply(secret)


@pytest.fixture
def endpoint_credentials(kube_cluster: KubeCluster, namespace: str, nacos_endpoint: NacosEndpoint) -> None:
    """The Secret for this test's Nacos (2.3.2 or 3.1.0: each has its own user)."""
    kube_cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": namespace},
                        "stringData": {"username": nacos_endpoint.username or "",
                                       "password": nacos_endpoint.password or ""}})


@pytest.fixture
def registrar(kube_cluster: KubeCluster, namespace: str, app_instances: Callable[..., AppInstanceSimulator]) -> Iterator[Callable[..., PodRegistrar]]:
    started: list[PodRegistrar] = []

    def make(endpoint: NacosEndpoint, service: str, app: str = "orders", **kwargs: Any) -> PodRegistrar:
        reg = PodRegistrar(str(kube_cluster.kubeconfig), namespace, app, endpoint, service, PORT,
                           app_instances, **kwargs)
        started.append(reg.__enter__())
        return reg

    yield make
    for reg in started:
        reg.__exit__()


def service() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def registered(status: dict[str, Any], summary: str) -> bool:
    reg = status.get("registration") or {}
    cond = {c["type"]: c for c in status.get("conditions", [])}.get("Registered", {})
    return reg.get("summary") == summary and cond.get("status") == "True"




def containers_ready(arl: Any, track: str, app: str = "orders") -> int:
    """Pods of a track whose containers are ready: with a registry, Ready also waits for the
    operator's readiness gate (the instance registered), so this is what 'started' means."""
    pods = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance={app},apprelease.io/track={track}")["items"]
    return sum(
        1 for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "ContainersReady" and c["status"] == "True" for c in p["status"].get("conditions", []))
    )


@pytest.fixture
def config_store(nacos_endpoint: NacosEndpoint) -> Iterator[NacosConfigStore]:
    """The operator's config store on the test's Nacos (both versions)."""
    store = NacosConfigStore(nacos_endpoint.settings(""))
    yield store
    store.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """A config store call from a test (the store's methods are coroutines)."""
    return asyncio.run(coroutine)
