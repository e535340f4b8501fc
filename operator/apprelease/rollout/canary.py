"""The canary step machine: given where the canary is and what the cluster shows, move on.

Pure: time comes in as an argument; deadlines are absolute times kept in status, so a pause
or a progress deadline survives operator restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.spec import AppReleaseSpec
from ..api.strategy import CanaryStep
from .observed import Observed, PodState
from .timefmt import format_time, parse_time


def canary_replicas(weight: int, replicas: int) -> int:
    """Pods for a weight: rounded up, so any weight above 0 gets at least one pod.

    3 replicas at 20% → 1 canary pod (0.6 rounds up). Stable stays at full size, so the
    traffic share of that pod is 1/(3+1) = 25%: status.actualWeight reports that.
    """
    if weight <= 0 or replicas <= 0:
        return 0
    return min(replicas, math.ceil(weight * replicas / 100))


def weight_at(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at step ``index``: the last setWeight at or before it."""
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


@dataclass
class CanaryProgress:
    """Mutable state of one planning pass (mirrors the status fields it came from)."""

    step_index: int
    step_start: str
    pause_start: str | None = None
    promoting: bool = False
    promote_full: bool = False
    abort_reason: str | None = None
    abort_message: str | None = None
    completed: list[str] = field(default_factory=list)  # human-readable step completions
    wake_at: list[datetime] = field(default_factory=list)
    waiting_for: str = ""


def crash_looping_pod(pods: list[PodState], max_restarts: int) -> PodState | None:
    return next((p for p in pods if p.restarts > max_restarts), None)


def advance(
    progress: CanaryProgress,
    spec: AppReleaseSpec,
    observed: Observed,
    revision_hash: str,
    now: datetime,
) -> None:
    """Walk the steps as far as the cluster allows; record why it stopped."""
    canary = spec.strategy.canary
    assert canary is not None
    steps = list(canary.steps)
    deadline = timedelta(seconds=spec.progress_deadline_seconds)
    gate_timeout = timedelta(seconds=spec.registry.gate_timeout_seconds) if spec.registry else None

    while True:
        if progress.promote_full or progress.step_index >= len(steps):
            progress.promoting = True
            return
        step = steps[progress.step_index]
        label = f"step {progress.step_index + 1}/{len(steps)}"
        if step.set_weight is not None:
            want = canary_replicas(step.set_weight, spec.replicas)
            dep = observed.deployments.get("canary")
            pods_ready = dep is not None and dep.rolled_out(revision_hash, want)
            registry = observed.registry
            gate_open = want == 0 or registry is None or registry.gate_open("canary", want)
            if pods_ready and gate_open:
                progress.completed.append(f"{label}: setWeight {step.set_weight} reached")
                _next_step(progress, now)
                continue
            started = parse_time(progress.step_start)
            if not pods_ready:
                progress.waiting_for = f"{label}: waiting for {want} canary pod(s) to be ready"
                if now - started >= deadline:
                    progress.abort_reason = "ProgressDeadlineExceeded"
                    progress.abort_message = (
                        f"canary pods not ready within progressDeadlineSeconds"
                        f" ({spec.progress_deadline_seconds}s) at {label}"
                    )
                else:
                    progress.wake_at.append(started + deadline)
            elif registry is not None and not registry.reachable:
                # An outage pauses the rollout; it neither promotes nor aborts blindly.
                progress.waiting_for = f"{label}: registry unreachable ({registry.error})"
            else:
                progress.waiting_for = f"{label}: waiting for canary instances to be registered and healthy"
                assert gate_timeout is not None
                if now - started >= gate_timeout:
                    progress.abort_reason = "RegistryGateTimeout"
                    progress.abort_message = (
                        f"canary instances not registered and healthy within"
                        f" registry.gateTimeout ({spec.registry.gate_timeout if spec.registry else ''})"
                    )
                else:
                    progress.wake_at.append(started + gate_timeout)
            return
        assert step.pause is not None
        if progress.pause_start is None:
            progress.pause_start = format_time(now)
        seconds = step.pause.seconds
        if seconds is None:
            progress.waiting_for = f"paused at {label}: promote to continue"
            return
        resume_at = parse_time(progress.pause_start) + timedelta(seconds=seconds)
        if now >= resume_at:
            progress.completed.append(f"{label}: pause {step.pause.duration} elapsed")
            _next_step(progress, now)
            continue
        progress.waiting_for = f"paused at {label} until {format_time(resume_at)}"
        progress.wake_at.append(resume_at)
        return


def _next_step(progress: CanaryProgress, now: datetime) -> None:
    progress.step_index += 1
    progress.step_start = format_time(now)
    progress.pause_start = None
