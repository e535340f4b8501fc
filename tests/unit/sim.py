"""A tiny pure simulation of the cluster for planner tests: Deployments roll out instantly
(or not, when told), history is stored, time is explicit."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apprelease.api.spec import AppRelease
from apprelease.api.status import AppReleaseStatus
from apprelease.registry.base import RegistryInstance
from apprelease.registry.registration import RegistryRead
from apprelease.registry.registration import summarize as summarize_registration
from apprelease.rollout.observed import (
    DeploymentState,
    Observed,
    PodState,
    RegistryState,
    RevisionRecord,
)
from apprelease.rollout.outcome import Plan
from apprelease.rollout.planner import plan

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def make_app(spec: dict[str, Any] | None = None, *, annotations: dict[str, str] | None = None) -> AppRelease:
    body: dict[str, Any] = {
        "metadata": {"name": "shop", "namespace": "ns", "uid": "uid-1", "generation": 1,
                     "annotations": annotations or {}},
        "spec": {"image": "registry/shop:v1", "replicas": 3, "port": 8080, **(spec or {})},
    }
    return AppRelease.model_validate(body)


CANARY = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50},
                                {"pause": {"duration": "30s"}}]}}


@dataclass
class Sim:
    """Holds the AppRelease, its status and a fake cluster; `tick` runs one reconcile."""

    app: AppRelease
    now: datetime = T0
    status: AppReleaseStatus = field(default_factory=AppReleaseStatus)
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)
    pods_ready: dict[str, bool] = field(default_factory=lambda: {"stable": True, "canary": True})
    restarts: dict[str, int] = field(default_factory=dict)
    registry: RegistryState | None = None
    # A simulated Nacos: (ip, port) → healthy; None when no Nacos is configured.
    nacos: dict[tuple[str, int], bool] | None = None
    nacos_up: bool = True
    overrides: dict[tuple[str | None, int | None], bool] = field(default_factory=dict)
    actions: list[tuple[datetime, Any]] = field(default_factory=list)
    pods: dict[str, list[PodState]] = field(default_factory=dict)
    serial: int = 0
    serial_ips: list[str] = field(default_factory=list)  # addresses to hand out again first
    events: list[tuple[str, str]] = field(default_factory=list)
    last: Plan | None = None

    def observed(self) -> Observed:
        pods = tuple(
            replace(p, ready=self.pods_ready[track], restarts=self.restarts.get(track, 0))
            for track in ("stable", "canary")
            for p in self.pods.get(track, [])
        )
        registration = None
        registry_state = self.registry
        if self.nacos is not None:
            revisions = {t: self._number(d.revision_hash) for t, d in self.deployments.items()}
            read = RegistryRead(tuple(self.nacos_instances()) if self.nacos_up else None,
                                None if self.nacos_up else "connection refused")
            registration = summarize_registration(
                provider="nacos", service="DEFAULT_GROUP@@shop", read=read, pods=pods, revisions=revisions)
            registry_state = registration.state
        return Observed(deployments=dict(self.deployments), pods=pods,
                        revisions=tuple(self.revisions.values()), registry=registry_state,
                        registration=registration)

    def nacos_instances(self) -> list[RegistryInstance]:
        """Every ready pod registers itself (as the app would); overrides live server-side."""
        assert self.nacos is not None
        found = []
        for (ip, port), extra in self.nacos.items():
            enabled = self.overrides.get((ip, port), True)
            found.append(RegistryInstance(ip, port, healthy=extra, enabled=enabled, weight=1.0,
                                          ephemeral=True, cluster="DEFAULT"))
        return found

    def _number(self, digest: str | None) -> int | None:
        record = self.revisions.get(digest or "")
        return record.number if record else None

    def tick(self, seconds: float = 0) -> Plan:
        self.now += timedelta(seconds=seconds)
        result = plan(self.app, self.status, self.observed(), self.now)
        self.last = result
        self.status = result.status
        self.events += [(e.reason, e.message) for e in result.events]
        for record in result.revisions_to_save:
            self.revisions[record.hash] = record
        for record in result.revisions_to_delete:
            self.revisions.pop(record.hash, None)
        self._apply(result)
        return result

    def _apply(self, result: Plan) -> None:
        for action in result.registry_actions:
            self.actions.append((self.now, action))
            key = (action.ip, action.port)
            if action.kind == "disable":
                self.overrides[key] = False
            elif action.kind == "clear":
                self.overrides.pop(key, None)
            elif action.kind == "deregister" and self.nacos is not None:
                self.nacos.pop(key, None)
        wanted = {t.track: t for t in result.desired.tracks}
        for track in list(self.deployments):
            if track not in wanted and track not in result.desired.untouched_tracks:
                del self.deployments[track]
                self.pods[track] = []
        for track, t in wanted.items():
            ready = self.pods_ready[track]
            self._roll_pods(track, t.revision, t.replicas, ready)
            n = t.replicas if ready else 0
            self.deployments[track] = DeploymentState(
                track=track, revision_hash=t.revision_hash, replicas=t.replicas,
                status_replicas=t.replicas, ready_replicas=n, updated_replicas=t.replicas,
                available_replicas=n,
            )
        if self.nacos is not None:
            live = {(p.ip, 8080) for ps in self.pods.values() for p in ps if p.ready}
            for key in list(self.nacos):
                if key not in live:
                    del self.nacos[key]  # the app stopped: its ephemeral instance goes
            for key in live:
                self.nacos.setdefault(key, True)

    def _roll_pods(self, track: str, revision: int, replicas: int, ready: bool) -> None:
        pods = [p for p in self.pods.get(track, []) if p.revision == revision]
        while len(pods) > replicas:
            pods.pop()  # the newest goes first
        while len(pods) < replicas:
            self.serial += 1
            pods.append(PodState(
                name=f"{track}-r{revision}-{self.serial}", track=track, revision=revision,  # type: ignore[arg-type]
                ready=ready, restarts=self.restarts.get(track, 0),
                ip=self.serial_ips.pop(0) if self.serial_ips else f"10.0.0.{self.serial}",
                created=f"2026-11-23T10:{self.serial // 60:02d}:{self.serial % 60:02d}Z",
            ))
        self.pods[track] = [replace(p, ready=ready, restarts=self.restarts.get(track, 0)) for p in pods]

    def settle(self, max_ticks: int = 10) -> Plan:
        """Reconcile until the status stops changing (the watch events would stop)."""
        for _ in range(max_ticks):
            before = copy.deepcopy(self.status)
            result = self.tick()
            if result.status == before:
                return result
        raise AssertionError(f"did not settle: {self.status.message}")

    def edit(self, **spec: Any) -> None:
        body = self.app.model_dump(by_alias=True, exclude_none=True)
        body["spec"].update(spec)
        body["metadata"]["generation"] = body["metadata"].get("generation", 1) + 1
        self.app = AppRelease.model_validate(body)

    def annotate(self, key: str, value: str) -> None:
        body = self.app.model_dump(by_alias=True, exclude_none=True)
        body["metadata"].setdefault("annotations", {})[key] = value
        self.app = AppRelease.model_validate(body)

    def canary_replicas(self) -> int:
        dep = self.deployments.get("canary")
        return dep.replicas if dep else 0

    def stable_image(self) -> str:
        return self.image_of("stable")

    def canary_image(self) -> str:
        return self.image_of("canary")

    def image_of(self, track: str) -> str:
        dep = self.deployments[track]
        return next(r.template.image for r in self.revisions.values() if r.hash == dep.revision_hash)

    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.events]


def with_replicas(dep: DeploymentState, **changes: Any) -> DeploymentState:
    return replace(dep, **changes)
