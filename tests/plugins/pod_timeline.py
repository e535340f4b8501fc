"""When each pod of a namespace started, became ready, was asked to go and was gone, from a watch.

Under our KWOK stages a pod's containers stop when its preStop has run, and the pod is deleted
at that moment: `gone_at` is "containers stopped". Times are this process's wall clock
(time.time()) when the watch delivered the change, so they compare with other clocks of the
test (the Java consumer's log, Nacos calls), unlike API timestamps (1 s resolution).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import watch

from apprelease.k8s.client import load_api_client
from tests.plugins.cluster import NotYet, wait_for

# Each watch request ends after this long (and is renewed): stop() waits at most this.
WATCH_SECONDS = 1
RETRY_SECONDS = 0.3


def condition_status(pod: dict[str, Any], kind: str) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


@dataclass
class PodRecord:
    name: str
    ip: str | None = None
    created_at: float | None = None  # first seen
    running_at: float | None = None  # first seen Running with a pod IP
    containers_ready_at: float | None = None  # first seen ContainersReady=True
    ready_at: float | None = None  # first seen Ready=True
    ready_changes: list[tuple[float, bool]] = field(default_factory=list)  # every Ready flip
    deletion_requested_at: float | None = None  # first seen with a deletionTimestamp
    gone_at: float | None = None  # deleted from the API: its containers have stopped
    last: dict[str, Any] = field(default_factory=dict)  # the pod as last seen
    # The pod as first seen terminating (deletionTimestamp, deletionGracePeriodSeconds as
    # requested: the final object of a deleted pod shows KWOK's grace period 0).
    terminating: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return bool(self.ready_changes) and self.ready_changes[-1][1]

    def ready_during(self, start: float, end: float) -> bool:
        """Whether the pod was seen Ready at any moment of [start, end]."""
        ready_at_start = False
        for at, ready in self.ready_changes:
            if at > end:
                break
            if at < start:
                ready_at_start = ready
            elif ready:
                return True
        return ready_at_start


class PodTimeline:
    """Watches the pods of `namespace` (optionally a label selector) in a background thread.

    `on_change(record, pod)` is called from the watch thread after each event is recorded
    (PodRegistrar starts and stops its apps there); `pod` is None once the pod is gone.
    """

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        label_selector: str | None = None,
        on_change: Callable[[PodRecord, dict[str, Any] | None], None] | None = None,
    ) -> None:
        self._api_client = load_api_client(kubeconfig, pool_size=2)
        self._core = k8s_client.CoreV1Api(self._api_client)
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_change = on_change
        self.records: dict[str, PodRecord] = {}  # pod name -> its record (kept once gone)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"pod-timeline-{namespace}", daemon=True
        )

    def __enter__(self) -> PodTimeline:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        if not self._synced.wait(timeout=30):
            raise AssertionError(f"the pod watch of {self.namespace} did not start: {self.errors}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WATCH_SECONDS + 5)
        self._api_client.close()

    # --- queries ---------------------------------------------------------------------------

    def record(self, name: str) -> PodRecord:
        with self._lock:
            return self.records[name]

    def by_ip(self, ip: str) -> list[PodRecord]:
        with self._lock:
            return [r for r in self.records.values() if r.ip == ip]

    def snapshot(self) -> list[PodRecord]:
        with self._lock:
            return list(self.records.values())

    def names(self) -> list[str]:
        with self._lock:
            return list(self.records)

    def wait_gone(self, name: str, timeout: float) -> PodRecord:
        def gone() -> PodRecord | NotYet:
            record = self.records.get(name)
            return record if record and record.gone_at else NotYet(record)

        result: PodRecord = wait_for(gone, timeout, interval=0.05, message=f"pod {name} gone")
        return result

    # --- watch -----------------------------------------------------------------------------

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self._synced.set()
                resource_version = self._watch(resource_version)
            except k8s_client.ApiException as error:
                if error.status == 410:  # our resourceVersion is too old: list again
                    resource_version = None
                else:
                    self.errors.append(f"{error.status} {error.reason}")
                self._stop.wait(RETRY_SECONDS)
            except Exception as error:  # keep watching; a test reads errors on failure
                self.errors.append(repr(error))
                self._stop.wait(RETRY_SECONDS)

    def _list(self) -> str:
        pods = self._core.list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, _request_timeout=30
        )
        seen = set()
        for pod in pods.items:
            raw = self._api_client.sanitize_for_serialization(pod)
            seen.add(raw["metadata"]["name"])
            self._observe(raw)
        with self._lock:  # pods deleted while we were not watching
            missing = [r for n, r in self.records.items() if n not in seen and not r.gone_at]
        for record in missing:
            self._gone(record.name)
        return str(pods.metadata.resource_version)

    def _watch(self, resource_version: str) -> str | None:
        stream = watch.Watch().stream(
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=self.label_selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 10,
        )
        for event in stream:
            if self._stop.is_set():
                return resource_version
            raw = self._api_client.sanitize_for_serialization(event["object"])
            if event["type"] == "ERROR":
                if raw.get("code") == 410:
                    return None
                self.errors.append(str(raw))
                continue
            resource_version = raw["metadata"].get("resourceVersion", resource_version)
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "DELETED":
                self._observe(raw)
                self._gone(raw["metadata"]["name"])
            else:
                self._observe(raw)
        return resource_version

    def _observe(self, pod: dict[str, Any]) -> None:
        now = time.time()
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        with self._lock:
            record = self.records.setdefault(name, PodRecord(name=name, created_at=now))
            record.last = pod
            if status.get("podIP"):
                record.ip = status["podIP"]
                if status.get("phase") == "Running" and record.running_at is None:
                    record.running_at = now
            if record.containers_ready_at is None and (
                condition_status(pod, "ContainersReady") == "True"
            ):
                record.containers_ready_at = now
            ready = condition_status(pod, "Ready") == "True"
            if ready != record.ready or not record.ready_changes:
                record.ready_changes.append((now, ready))
                if ready and record.ready_at is None:
                    record.ready_at = now
            if pod["metadata"].get("deletionTimestamp") and record.deletion_requested_at is None:
                record.deletion_requested_at = now
                record.terminating = pod
        if self.on_change is not None:
            self.on_change(record, pod)

    def _gone(self, name: str) -> None:
        now = time.time()
        with self._lock:
            record = self.records.get(name)
            if record is None or record.gone_at:
                return
            record.gone_at = now
            if record.ready:
                record.ready_changes.append((now, False))
        if self.on_change is not None:
            self.on_change(record, None)
