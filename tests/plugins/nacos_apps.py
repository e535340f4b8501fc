"""Plays the apps of an AppRelease in Nacos: KWOK pods run no code, so each Ready pod's
ip:port is registered by a simulated app (gRPC, as Spring Cloud Alibaba apps do), kept
alive, and deregistered when its pod goes. Also records a timeline of what Nacos showed and
when pods started leaving, to assert the order of graceful offline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import watch

from apprelease.k8s.client import ApiError, Kube, load_api_client
from tests.plugins.nacos import AppInstanceSimulator, NacosEndpoint

POLL_SECONDS = 0.3


@dataclass
class Timeline:
    disabled_at: dict[str, float] = field(default_factory=dict)  # ip → first seen enabled=false
    deleting_at: dict[str, float] = field(default_factory=dict)  # ip → pod seen being deleted
    pod_of_ip: dict[str, str] = field(default_factory=dict)


class PodRegistrar:
    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        app: str,
        endpoint: NacosEndpoint,
        service_name: str,
        port: int,
        start_app: Callable[..., AppInstanceSimulator],
        *,
        hold: Callable[[dict[str, Any]], bool] = lambda pod: False,
        linger: bool = False,
    ):
        self._api_client = load_api_client(kubeconfig, pool_size=2)
        self.kube = Kube(self._api_client)
        self.namespace = namespace
        self.app = app
        self.endpoint = endpoint
        self.service_name = service_name
        self.port = port
        self.start_app = start_app
        self.hold = hold
        self.linger = linger
        self.apps: dict[str, AppInstanceSimulator] = {}  # pod name → its app
        self.timeline = Timeline()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"registrar-{app}", daemon=True)
        self._deletions = threading.Thread(
            target=self._watch_deletions, name=f"registrar-{app}-deletions", daemon=True
        )
        self._registry = endpoint.registry(service_name)

    def __enter__(self) -> PodRegistrar:
        self._thread.start()
        self._deletions.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._deletions.join(timeout=30)
        self._registry.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._sync_pods()
                self._watch_registry()
            except Exception as exc:  # keep playing; the test reads errors on failure
                self.errors.append(repr(exc))

    def _watch_deletions(self) -> None:
        """Record when each pod is seen being deleted, from a watch: KWOK pods have no grace
        period, so a pod can be marked and gone between two polls. (Its deletionTimestamp is
        no use here: it is the deletion request plus the grace period, in the future.)"""
        core = k8s_client.CoreV1Api(self._api_client)
        selector = f"app.kubernetes.io/instance={self.app}"
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    core.list_namespaced_pod, self.namespace, label_selector=selector,
                    timeout_seconds=2, _request_timeout=10,
                ):
                    pod = event["object"]
                    ip = pod.status.pod_ip if pod.status else None
                    if pod.metadata.deletion_timestamp and ip:
                        self.timeline.deleting_at.setdefault(ip, time.time())
                    if self._stop.is_set():
                        return
            except Exception as exc:  # keep watching; the test reads errors on failure
                self.errors.append(repr(exc))
                self._stop.wait(POLL_SECONDS)

    def _sync_pods(self) -> None:
        selector = f"app.kubernetes.io/instance={self.app}"
        try:
            pods = self.kube.list("Pod", self.namespace, labelSelector=selector)
        except ApiError as exc:
            self.errors.append(str(exc))
            return
        present = set()
        for pod in pods:
            name = pod["metadata"]["name"]
            ip = (pod.get("status") or {}).get("podIP")
            deleting = pod["metadata"].get("deletionTimestamp")
            if deleting:
                continue
            present.add(name)
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            if ready and ip and name not in self.apps and not self.hold(pod):
                self.timeline.pod_of_ip[ip] = name
                self.apps[name] = self.start_app(
                    self.endpoint, service_name=self.service_name, ip=ip, port=self.port
                )
        for name in list(self.apps):
            if name not in present and not self.linger:
                self.apps.pop(name).stop()  # the app shuts down with its pod and deregisters

    def _watch_registry(self) -> None:
        try:
            instances = self._registry.list_instances()
        except Exception:
            return
        now = time.time()
        for instance in instances:
            if not instance.enabled:
                self.timeline.disabled_at.setdefault(instance.ip, now)

    def registered_ips(self) -> set[str]:
        return {i.ip for i in self._registry.list_instances()}

    def instance(self, ip: str) -> Any:
        return next((i for i in self._registry.list_instances() if i.ip == ip), None)


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
