"""Synthetic cluster states to run an admitted spec through the planner.

A small fake cluster (like tests/unit/sim.py, but safe for any replica count: at most
POD_CAP pods are listed per track) that applies each plan's desired tracks, optionally with
unready or crash-looping canary pods, a registry that is reachable or not, and time jumps
from seconds to years. ``Knobs`` are drawn by hypothesis; ``Timeline`` walks one app
through: empty cluster → converged stable → a new revision (canary mid-steps, or a rolling
update) → abort / promote requests → deletion with a registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from apprelease.api.spec import AppRelease
from apprelease.api.status import AppReleaseStatus
from apprelease.domain import RegistryInstance
from apprelease.registry.registration import RegistryRead
from apprelease.registry.registration import summarize as summarize_registration
from apprelease.rollout import requests
from apprelease.rollout.observed import DeploymentState, Observed, PodState, RevisionRecord
from apprelease.rollout.outcome import Plan

POD_CAP = 3
T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
# Seconds between reconciles: immediate, a pause's worth, past the default deadline, a year.
STEP_SECONDS = (0, 1, 30, 601, 3600, 86_400, 365 * 86_400, 10 * 365 * 86_400)


@dataclass(frozen=True)
class Knobs:
    stable_ready: bool = True
    canary_ready: bool = True
    canary_restarts: int = 0
    deadline_exceeded: bool = False
    registry_reachable: bool = True
    instances_healthy: bool = True
    stale_instance: bool = False
    steps: tuple[int, ...] = (0, 30, 3600)
    requests: tuple[str, ...] = ()


knobs = st.builds(
    Knobs,
    stable_ready=st.booleans(),
    canary_ready=st.booleans(),
    canary_restarts=st.sampled_from([0, 1, 4, 2**31]),
    deadline_exceeded=st.booleans(),
    registry_reachable=st.booleans(),
    instances_healthy=st.booleans(),
    stale_instance=st.booleans(),
    steps=st.lists(st.sampled_from(STEP_SECONDS), min_size=1, max_size=4).map(tuple),
    requests=st.lists(st.sampled_from(["promote", "promote-full", "abort", "retry"]),
                      max_size=2).map(tuple),
)


@dataclass
class FakeCluster:
    app: AppRelease
    knobs: Knobs
    now: datetime = T0
    status: AppReleaseStatus = field(default_factory=AppReleaseStatus)
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)
    pods: dict[str, list[PodState]] = field(default_factory=dict)

    def observed(self) -> Observed:
        pods = tuple(p for track in ("stable", "canary") for p in self.pods.get(track, []))
        base = Observed(deployments=dict(self.deployments), pods=pods,
                        revisions=tuple(self.revisions.values()))
        revisions = {t: self._number(d.revision_hash) for t, d in self.deployments.items()}
        registry = self.app.spec.registry
        if registry is None or registry.nacos is None:
            registration = summarize_registration(
                provider="kubernetes", service=f"{self.app.namespace}/{self.app.name}",
                read=RegistryRead(self._instances(pods)), pods=pods, revisions=revisions,
                previous=self.status.registration)
            return replace(base, registration=registration)
        read = (RegistryRead(self._instances(pods)) if self.knobs.registry_reachable
                else RegistryRead(None, "connection refused"))
        registration = summarize_registration(
            provider="nacos", service=f"{registry.nacos.group}@@{registry.nacos.service_name}",
            read=read, pods=pods, revisions=revisions, previous=self.status.registration)
        return replace(base, registry=registration.state, registration=registration)

    def _instances(self, pods: tuple[PodState, ...]) -> tuple[RegistryInstance, ...]:
        ports = self.app.spec.container_ports()
        port = ports[0].container_port if ports else 8080
        found = [
            RegistryInstance(p.ip or "", port, healthy=self.knobs.instances_healthy, enabled=True,
                             weight=1.0, ephemeral=True, cluster="DEFAULT")
            for p in pods if p.ready and p.ip
        ]
        if self.knobs.stale_instance:
            found.append(RegistryInstance("10.9.9.9", port, healthy=True, enabled=True,
                                          weight=1.0, ephemeral=False, cluster="DEFAULT"))
        return tuple(found)

    def _number(self, digest: str | None) -> int | None:
        record = self.revisions.get(digest or "")
        return record.number if record else None

    def apply(self, result: Plan) -> None:
        self.status = result.status
        for record in result.revisions_to_save:
            self.revisions[record.hash] = record
        for record in result.revisions_to_delete:
            self.revisions.pop(record.hash, None)
        wanted = {t.track: t for t in result.desired.tracks}
        for track in [t for t in self.deployments if t not in wanted]:
            del self.deployments[track]
            self.pods[track] = []
        for track, plan in wanted.items():
            ready = self.knobs.stable_ready if track == "stable" else self.knobs.canary_ready
            restarts = self.knobs.canary_restarts if track == "canary" else 0
            listed = min(plan.replicas, POD_CAP)
            self.pods[track] = [
                PodState(name=f"{self.app.name}-{track}-r{plan.revision}-{i}", track=track,  # type: ignore[arg-type]
                         revision=plan.revision, ready=ready, restarts=restarts,
                         ip=f"10.{1 if track == 'stable' else 2}.{plan.revision % 250}.{i + 1}",
                         phase="Running", created=self.status.step_start_time)
                for i in range(listed)
            ]
            available = plan.replicas if ready else 0
            self.deployments[track] = DeploymentState(
                track=track, revision_hash=plan.revision_hash, replicas=plan.replicas,  # type: ignore[arg-type]
                status_replicas=plan.replicas, ready_replicas=available,
                updated_replicas=plan.replicas, available_replicas=available,
                deadline_exceeded=self.knobs.deadline_exceeded and not ready,
            )


def with_spec_edit(app: AppRelease, **spec: Any) -> AppRelease:
    body = app.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["spec"].update(spec)
    body["metadata"]["generation"] = app.generation + 1
    return AppRelease.model_validate(body)


def with_annotation(app: AppRelease, key: str, value: str) -> AppRelease:
    body = app.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"].setdefault("annotations", {})[key] = value
    return AppRelease.model_validate(body)


def next_image(image: str) -> str:
    """Another valid image of the same length (the spec may sit at maxLength)."""
    return image[:-1] + ("x" if image[-1] != "x" else "y")


_REQUEST_ANNOTATIONS = {
    "promote": (requests.PROMOTE, lambda n: requests.request_value(False, n)),
    "promote-full": (requests.PROMOTE, lambda n: requests.request_value(True, n)),
    "abort": (requests.ABORT, str),
    "retry": (requests.RETRY, str),
}


def timeline(app: AppRelease, knobs: Knobs, tick: Callable[[str, FakeCluster], Plan]) -> FakeCluster:
    """Walk ``app`` through the scenarios; ``tick(label, cluster)`` plans (and checks) once."""
    cluster = FakeCluster(app, knobs)
    cluster.apply(tick("empty cluster", cluster))
    cluster.apply(tick("converging", cluster))
    cluster.apply(tick("converged", cluster))
    cluster.app = with_spec_edit(app, image=next_image(app.spec.image))
    for index, seconds in enumerate(knobs.steps):
        cluster.now += timedelta(seconds=seconds)
        cluster.apply(tick(f"new revision, pass {index + 1} (+{seconds}s)", cluster))
    for counter, name in enumerate(knobs.requests, start=1):
        key, value = _REQUEST_ANNOTATIONS[name]
        cluster.app = with_annotation(cluster.app, key, value(f"fuzz-{counter}"))
        cluster.apply(tick(f"{name} requested", cluster))
    return cluster
