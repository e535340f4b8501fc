"""A tiny pure simulation of the cluster for planner tests: Deployments roll out instantly
(or not, when told), history is stored, time is explicit."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apprelease.api.spec import AppRelease
from apprelease.api.status import AppReleaseStatus
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
    events: list[tuple[str, str]] = field(default_factory=list)
    last: Plan | None = None

    def observed(self) -> Observed:
        pods = []
        for track, dep in self.deployments.items():
            for i in range(dep.replicas):
                pods.append(PodState(name=f"{track}-{i}", track=track,  # type: ignore[arg-type]
                                     revision=self._number(dep.revision_hash),
                                     ready=self.pods_ready[track], restarts=self.restarts.get(track, 0)))
        return Observed(deployments=dict(self.deployments), pods=tuple(pods),
                        revisions=tuple(self.revisions.values()), registry=self.registry)

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
        wanted = {t.track: t for t in result.desired.tracks}
        for track in list(self.deployments):
            if track not in wanted:
                del self.deployments[track]
        for track, t in wanted.items():
            ready = self.pods_ready[track]
            n = t.replicas if ready else 0
            self.deployments[track] = DeploymentState(
                track=track, revision_hash=t.revision_hash, replicas=t.replicas,
                status_replicas=t.replicas, ready_replicas=n, updated_replicas=t.replicas,
                available_replicas=n,
            )

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
        dep = self.deployments["stable"]
        return next(r.template.image for r in self.revisions.values() if r.hash == dep.revision_hash)

    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.events]


def with_replicas(dep: DeploymentState, **changes: Any) -> DeploymentState:
    return replace(dep, **changes)
