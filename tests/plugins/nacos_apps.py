"""Plays the apps of an AppRelease in Nacos: KWOK pods run no code, so each pod's ip:port is
registered by a simulated app (gRPC, as Spring Cloud Alibaba apps do) once its containers are
ready, kept alive, and deregistered when its containers stop - under our KWOK stages, when
the pod is deleted after its preStop. Not when the pod is Ready: a readiness gate holds Ready
until the instance is registered. Also records a timeline of what Kubernetes and Nacos showed
and when, to assert the order of events of a lossless release."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.plugins.nacos import AppInstanceSimulator, NacosEndpoint
from tests.plugins.pod_timeline import PodRecord, PodTimeline, condition_status

SYNC_SECONDS = 0.05  # how often apps follow their pods (pod changes come from a watch)
POLL_SECONDS = 0.3  # how often Nacos is listed for disabled instances


@dataclass
class Timeline:
    """Per pod IP, in epoch seconds (time.time()): when things were first seen. KWOK gives a
    deleted pod's IP to a later pod: the IP's times then start again (the older pod's stay in
    PodRegistrar.pods, per pod name)."""

    disabled_at: dict[str, float] = field(default_factory=dict)  # listed enabled=false in Nacos
    enabled_at: dict[str, float] = field(default_factory=dict)  # listed enabled=true in Nacos
    registered_at: dict[str, float] = field(default_factory=dict)  # its app registered
    ready_at: dict[str, float] = field(default_factory=dict)  # pod Ready (from the watch)
    deleting_at: dict[str, float] = field(default_factory=dict)  # deletion requested (watch)
    gone_at: dict[str, float] = field(default_factory=dict)  # pod deleted: containers stopped
    deregistered_at: dict[str, float] = field(default_factory=dict)  # its app deregistered
    pod_of_ip: dict[str, str] = field(default_factory=dict)

    @property
    def deletion_requested_at(self) -> dict[str, float]:
        return self.deleting_at


class PodRegistrar:
    """Runs one simulated app per pod of `app` (label app.kubernetes.io/instance=app).

    hold(pod) -> True keeps a pod's app from registering (an app that is slow to start);
    linger=True keeps apps registered after their pods are gone (apps that crash without
    deregistering). `pods` is the underlying PodTimeline (every pod's record, by name).
    """

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
        selector: str | None = None,
    ):
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
        # An adopted app's pods carry only its own labels (selector), not ours.
        self.pods = PodTimeline(kubeconfig, namespace, selector or f"app.kubernetes.io/instance={app}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"registrar-{app}", daemon=True)
        self._registry = endpoint.registry(service_name)

    def __enter__(self) -> PodRegistrar:
        self.pods.start()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.pods.stop()
        self._registry.close()

    @property
    def all_errors(self) -> list[str]:
        return self.errors + self.pods.errors

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.wait(SYNC_SECONDS):
            try:
                self._sync_apps()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL_SECONDS
                    self._watch_registry()
            except Exception as exc:  # keep playing; the test reads errors on failure
                self.errors.append(repr(exc))

    def _sync_apps(self) -> None:
        for record in self.pods.snapshot():
            self._record_times(record)
            name = record.name
            if record.gone_at:
                if name in self.apps and not self.linger:
                    self.apps.pop(name).stop()  # the app stops with its containers: deregisters
                    if record.ip:
                        self.timeline.deregistered_at.setdefault(record.ip, time.time())
            elif name not in self.apps and self._should_register(record):
                assert record.ip is not None
                self.apps[name] = self.start_app(
                    self.endpoint, service_name=self.service_name, ip=record.ip, port=self.port
                )
                self.timeline.registered_at.setdefault(record.ip, time.time())

    def _should_register(self, record: PodRecord) -> bool:
        pod = record.last
        return (
            record.ip is not None
            and record.deletion_requested_at is None
            and condition_status(pod, "ContainersReady") == "True"
            and not self.hold(pod)
        )

    def _record_times(self, record: PodRecord) -> None:
        ip = record.ip
        if ip is None:
            return
        owner = self.timeline.pod_of_ip.get(ip)
        if owner != record.name:
            previous = self.pods.records.get(owner) if owner else None
            if previous is not None and not previous.gone_at:
                return  # an older pod's record seen after a new pod took its IP over
            # KWOK reuses the IPs of deleted pods: the times of the IP start again.
            self.timeline.pod_of_ip[ip] = record.name
            for times in self._per_ip_times():
                times.pop(ip, None)
        for times, at in (
            (self.timeline.ready_at, record.ready_at),
            (self.timeline.deleting_at, record.deletion_requested_at),
            (self.timeline.gone_at, record.gone_at),
        ):
            if at is not None:
                times.setdefault(record.ip, at)

    def _per_ip_times(self) -> list[dict[str, float]]:
        t = self.timeline
        return [t.disabled_at, t.enabled_at, t.registered_at, t.ready_at, t.deleting_at, t.gone_at, t.deregistered_at]

    def _watch_registry(self) -> None:
        try:
            instances = self._registry.list_instances()
        except Exception:
            return
        now = time.time()
        for instance in instances:
            seen = self.timeline.enabled_at if instance.enabled else self.timeline.disabled_at
            seen.setdefault(instance.ip, now)

    def listed(self) -> list[Any]:
        """The service's instances as Nacos lists them now (read directly, as the recorder does)."""
        return list(self._registry.list_instances())

    def registered_ips(self) -> set[str]:
        return {i.ip for i in self._registry.list_instances()}

    def instance(self, ip: str) -> Any:
        return next((i for i in self._registry.list_instances() if i.ip == ip), None)


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
