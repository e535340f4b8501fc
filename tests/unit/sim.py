"""A tiny pure simulation of the cluster for planner tests: Deployments roll out instantly
(or not, when told), history is stored, time is explicit."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apprelease.api.spec import AppRelease
from apprelease.api.status import AppReleaseStatus
from apprelease.registry.base import RegistryInstance
from apprelease.registry.config_sync import read_keys, run_actions
from apprelease.registry.registration import RegistryRead
from apprelease.registry.registration import summarize as summarize_registration
from apprelease.rollout.nacos_config import config_namespace, keys_to_read
from apprelease.rollout.observed import (
    DeploymentState,
    GateState,
    Observed,
    PodState,
    RegistryState,
    RevisionRecord,
)
from apprelease.rollout.outcome import Plan
from apprelease.rollout.planner import plan

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Override:
    """Nacos' server-side record for one ip:port: it outlives the instance, as in Nacos."""

    enabled: bool = True
    weight: float = 1.0
    metadata: tuple[tuple[str, str], ...] = ()


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
    pods_ready: dict[str, bool] = field(default_factory=lambda: {"stable": True, "canary": True, "preview": True})
    # Pods whose containers are not ready whatever their track's pods_ready says.
    unready_pods: set[str] = field(default_factory=set)
    # Revisions whose pods' containers are not ready (e.g. a rollback's new pods still starting).
    unready_revisions: set[int] = field(default_factory=set)
    # Roll as Kubernetes does with maxUnavailable 0: a Deployment's old pods go only as its new
    # ones turn ready (by default every change is instant).
    surge: bool = False
    restarts: dict[str, int] = field(default_factory=dict)
    registry: RegistryState | None = None
    # A simulated Nacos: (ip, port) → healthy; None when no Nacos is configured.
    nacos: dict[tuple[str, int], bool] | None = None
    nacos_up: bool = True
    # Tracks whose apps do not register although their containers are ready (a hung start).
    not_registering: set[str] = field(default_factory=set)
    nacos_down_reason: str = "RegistryUnavailable"  # the failure class of a read while it is down
    # Server-side instance state (Nacos' override record): (ip, port) → enabled, weight, metadata.
    overrides: dict[tuple[str | None, int | None], Override] = field(default_factory=dict)
    # The pods' readiness-gate conditions, as the operator wrote them.
    gates: dict[str, GateState] = field(default_factory=dict)
    actions: list[tuple[datetime, Any]] = field(default_factory=list)
    pods: dict[str, list[PodState]] = field(default_factory=dict)
    serial: int = 0
    serial_ips: list[str] = field(default_factory=list)  # addresses to hand out again first
    events: list[tuple[str, str]] = field(default_factory=list)
    last: Plan | None = None
    # A fake Nacos config store (tests/unit/fake_config_store.py): read before each pass, the
    # plan's config actions run on it after, as the operator's config monitor does.
    config_store: Any = None
    config_action_error: str | None = None
    # What the analysis runner found (templates, results); None: no analysis.
    analysis: Any = None

    def _pod(self, pod: PodState, track: str) -> PodState:
        """The pod as the API shows it: with a Nacos registry, Ready needs the gate too."""
        containers = (self.pods_ready[track] and pod.name not in self.unready_pods
                      and pod.revision not in self.unready_revisions)
        gate = self.gates.get(pod.name)
        # Adopted pods have no readiness gate: Ready is their containers'.
        ready = containers and (self.nacos is None or pod.adopted or (gate is not None and gate.status))
        return replace(pod, ready=ready, containers_ready=containers, gate=None if pod.adopted else gate,
                       restarts=self.restarts.get(track, 0))

    def observed(self) -> Observed:
        pods = tuple(
            self._pod(p, track)
            for track in ("stable", "canary", "preview")
            for p in self.pods.get(track, [])
        )
        registration = None
        registry_state = self.registry
        if self.nacos is not None:
            revisions = {t: self._number(d.revision_hash) for t, d in self.deployments.items()}
            read = RegistryRead(tuple(self.nacos_instances()) if self.nacos_up else None,
                                None if self.nacos_up else "connection refused",
                                reason=None if self.nacos_up else self.nacos_down_reason)
            registration = summarize_registration(
                provider="nacos", service="DEFAULT_GROUP@@shop", read=read, pods=pods, revisions=revisions)
            registry_state = registration.state
        config = None
        if self.config_store is not None:
            keys = keys_to_read(self.app, self.status.config, self.revisions.values())
            config = asyncio.run(read_keys(self.config_store, config_namespace(self.app), keys))
            if self.config_action_error is not None:
                config = replace(config, action_error=self.config_action_error)
        return Observed(deployments=dict(self.deployments), pods=pods,
                        revisions=tuple(self.revisions.values()), registry=registry_state,
                        registration=registration, config=config, analysis=self.analysis)

    def nacos_instances(self) -> list[RegistryInstance]:
        """Every pod whose containers are ready registers itself (as the app would); its
        enabled, weight and metadata come from the server-side override, if any."""
        assert self.nacos is not None
        found = []
        for (ip, port), healthy in self.nacos.items():
            state = self.overrides.get((ip, port), Override())
            found.append(RegistryInstance(ip, port, healthy=healthy, enabled=state.enabled,
                                          weight=state.weight, ephemeral=True, cluster="DEFAULT",
                                          metadata=dict(state.metadata)))
        return found

    def instance(self, ip: str | None) -> RegistryInstance | None:
        return next((i for i in self.nacos_instances() if i.ip == ip), None)

    def _number(self, digest: str | None) -> int | None:
        record = self.revisions.get(digest or "")
        return record.number if record else None

    def tick(self, seconds: float = 0) -> Plan:
        self.now += timedelta(seconds=seconds)
        result = plan(self.app, self.status, self.observed(), self.now)
        self.last = result
        # Through the wire, as the reconciler stores it: what resumes the next pass.
        self.status = AppReleaseStatus.model_validate(result.status.to_wire())
        assert self.status == result.status, "status does not survive being stored"
        self.events += [(e.reason, e.message) for e in result.events]
        for record in result.revisions_to_save:
            self.revisions[record.hash] = record
        for record in result.revisions_to_delete:
            self.revisions.pop(record.hash, None)
        self._apply(result)
        return result

    def _apply(self, result: Plan) -> None:
        if self.config_store is not None:
            self.config_action_error = asyncio.run(
                run_actions(self.config_store, config_namespace(self.app), result.config_actions))
        for action in result.registry_actions:
            self.actions.append((self.now, action))
            key = (action.ip, action.port)
            registered = self.nacos is not None and key in self.nacos
            if action.kind == "write" and (registered or not action.must_exist):
                self.overrides[key] = Override(action.enabled, action.weight, action.metadata)
            elif action.kind == "deregister" and self.nacos is not None:
                self.nacos.pop(key, None)
        for gate in result.pod_gates:
            self.gates[gate.pod] = GateState(gate.status, gate.reason, gate.since)  # as written (lastTransitionTime)
        wanted = {t.track: t for t in result.desired.tracks}
        for track in list(self.deployments):
            if track not in wanted and track not in result.desired.untouched_tracks:
                del self.deployments[track]
                self.pods[track] = []
        for track, t in wanted.items():
            ready = self.pods_ready[track]
            self._roll_pods(track, t.revision, t.replicas, ready)
            n = sum(1 for p in self.pods[track] if self._pod(p, track).ready)
            updated = sum(1 for p in self.pods[track] if p.revision == t.revision)
            self.deployments[track] = DeploymentState(
                track=track, revision_hash=t.revision_hash, replicas=t.replicas,
                status_replicas=len(self.pods[track]), ready_replicas=n, updated_replicas=updated,
                available_replicas=n,
            )
        if self.nacos is not None:
            # Apps register once their containers are ready, and leave with their pods.
            live = {(p.ip, 8080) for track, ps in self.pods.items() for p in ps
                    if self._pod(p, track).containers_ready and track not in self.not_registering}
            for key in list(self.nacos):
                if key not in live:
                    del self.nacos[key]  # the app stopped: its ephemeral instance goes
            for key in live:
                self.nacos.setdefault(key, True)

    def _roll_pods(self, track: str, revision: int, replicas: int, ready: bool) -> None:
        pods = [p for p in self.pods.get(track, []) if p.revision == revision]
        old = [p for p in self.pods.get(track, []) if p.revision != revision] if self.surge else []
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
        ready_new = sum(1 for p in pods if self._pod(p, track).ready)
        old = old[: max(0, replicas - ready_new)]  # maxUnavailable 0: an old pod per ready new one
        self.pods[track] = [replace(p, ready=ready, restarts=self.restarts.get(track, 0)) for p in old + pods]

    def settle(self, max_ticks: int = 10) -> Plan:
        """Reconcile until neither the status nor the Deployments change (the watch events
        would stop): a test's change to pod readiness shows in a Deployment only after a pass."""
        for _ in range(max_ticks):
            before = copy.deepcopy((self.status, self.deployments))
            result = self.tick()
            if (result.status, self.deployments) == before:
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
