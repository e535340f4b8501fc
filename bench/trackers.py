"""What the watches feed: small, incrementally updated views the scenarios wait on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.watch import WatchEvent


class Timeout(AssertionError):
    """A scenario waited longer than its deadline: the operator did not do its job."""


def _wait(
    condition: threading.Condition, ready: Callable[[], bool], timeout: float, what: Callable[[], str]
) -> None:
    with condition:
        if not condition.wait_for(ready, timeout):
            raise Timeout(f"timed out after {timeout:g} s waiting for {what()}")


@dataclass
class AppState:
    generation: int = 0
    observed_generation: int | None = None
    phase: str | None = None
    stable_revision: int | None = None
    converged_at: float | None = None  # when observedGeneration last caught up

    @property
    def converged(self) -> bool:
        return self.observed_generation == self.generation


class AppStatuses:
    """AppReleases by name: generation vs observedGeneration, phase."""

    def __init__(self) -> None:
        self._apps: dict[str, AppState] = {}
        self._converged: set[str] = set()
        self._healthy: set[str] = set()
        self._condition = threading.Condition()

    def handle(self, event: WatchEvent) -> None:
        meta = event.obj.get("metadata", {})
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._condition:
            if event.type == "DELETED":
                self._apps.pop(name, None)
                self._converged.discard(name)
                self._healthy.discard(name)
            else:
                status = event.obj.get("status") or {}
                state = self._apps.setdefault(name, AppState())
                was_converged = state.converged and state.observed_generation is not None
                state.generation = int(meta.get("generation") or 0)
                state.observed_generation = status.get("observedGeneration")
                state.phase = status.get("phase")
                state.stable_revision = status.get("stableRevision")
                if state.converged:
                    if not was_converged:
                        state.converged_at = event.at
                    self._converged.add(name)
                else:
                    self._converged.discard(name)
                if state.converged and state.phase == "Healthy":
                    self._healthy.add(name)
                else:
                    self._healthy.discard(name)
            self._condition.notify_all()

    def wait_converged(self, count: int, timeout: float) -> float:
        """Wait until `count` AppReleases are converged; return when the last one got there."""
        _wait(
            self._condition, lambda: len(self._converged) >= count, timeout,
            lambda: f"{count} AppReleases with a current observedGeneration (have"
            f" {len(self._converged)}; not yet: {', '.join(self.unconverged())})",
        )
        with self._condition:
            return max(self._apps[n].converged_at or 0.0 for n in self._converged)

    def wait_healthy(self, count: int, timeout: float) -> None:
        _wait(
            self._condition, lambda: len(self._healthy) >= count, timeout,
            lambda: f"{count} AppReleases Healthy (have {len(self._healthy)})",
        )

    def wait_for(self, name: str, ready: Callable[[AppState], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            state = self._apps.get(name)
            return state is not None and ready(state)

        _wait(self._condition, check, timeout, lambda: f"{name}: {what} (now {self._apps.get(name)})")

    def unconverged(self, limit: int = 5) -> list[str]:
        """A few AppReleases whose status lags (called with the condition held)."""
        return [n for n, s in self._apps.items() if not s.converged][:limit]


def container_image(deployment: dict[str, Any]) -> str | None:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return containers[0].get("image") if containers else None


class DeploymentImages:
    """When each (Deployment, image) pair was first seen."""

    def __init__(self) -> None:
        self._first_seen: dict[tuple[str, str], float] = {}
        self._condition = threading.Condition()

    def handle(self, event: WatchEvent) -> None:
        if event.type == "DELETED":
            return
        image = container_image(event.obj)
        if image is None:
            return
        key = (event.obj["metadata"]["name"], image)
        with self._condition:
            if key not in self._first_seen:
                self._first_seen[key] = event.at
                self._condition.notify_all()

    def wait_for(self, name: str, image: str, timeout: float) -> float:
        _wait(
            self._condition, lambda: (name, image) in self._first_seen, timeout,
            lambda: f"Deployment {name} with image {image}",
        )
        return self._first_seen[(name, image)]


@dataclass(frozen=True)
class Sample:
    at: float
    kind: str  # "Deployment" or "Pod"
    name: str
    fields: dict[str, Any]


@dataclass
class Timeline:
    """Every event of a namespace's Deployments and Pods, reduced to the fields that matter."""

    samples: list[Sample] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_deployment(self, event: WatchEvent) -> None:
        obj = event.obj
        fields = {
            "replicas": (obj.get("spec") or {}).get("replicas"),
            "image": container_image(obj),
            "labels": obj["metadata"].get("labels") or {},
            "deleted": event.type == "DELETED",
        }
        self._add(Sample(event.at, "Deployment", obj["metadata"]["name"], fields))

    def handle_pod(self, event: WatchEvent) -> None:
        obj = event.obj
        conditions = (obj.get("status") or {}).get("conditions") or []
        fields = {
            "labels": obj["metadata"].get("labels") or {},
            "ready": any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
            "gone": event.type == "DELETED" or bool(obj["metadata"].get("deletionTimestamp")),
        }
        self._add(Sample(event.at, "Pod", obj["metadata"]["name"], fields))

    def _add(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def since(self, start: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.at >= start]
