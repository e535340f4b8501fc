"""Where a rollout is: one explicit type, parsed from status and written back to it. Pure.

A canary is Stepping (working on a step, perhaps paused at it), Promoting (the stable
Deployment takes the canary's revision, with a registry in two phases) or Aborted. A
blue-green rollout is Previewing (the new revision runs beside the active one, without
traffic), Switched (traffic on the new revision; the old pods stay for an instant rollback
until the scale-down delay ends) or again Promoting/Aborted. Steady means no rollout runs.

The canary's states are written to the same status fields as always (currentStepIndex,
stepStartTime, pauseStartTime, promoting, promotionPhase, promoteFull, aborted, ...); the
blue-green ones to status.blueGreen. Each strategy has one transition function
(rollout/canary.py, rollout/bluegreen.py, rollout/direct.py) from a state to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..api.status import AppReleaseStatus, BlueGreenStatus

PromotionPhase = Literal["ScaleCanary", "UpdateStable"]


@dataclass(frozen=True)
class Steady:
    """No rollout runs: the stable Deployment runs the revision it should."""


@dataclass(frozen=True)
class Stepping:
    """Canary: working on step ``step`` (0-based) since ``step_start``; ``pause_start`` once a
    pause step began."""

    step: int
    step_start: str
    pause_start: str | None = None


@dataclass(frozen=True)
class Promoting:
    """The stable Deployment takes the new revision. With a registry: first the canary grows
    to full size (ScaleCanary), then stable is drained and updated (UpdateStable)."""

    step: int
    step_start: str
    full: bool = False
    phase: PromotionPhase | None = None


@dataclass(frozen=True)
class Aborted:
    """The new revision is scaled away; traffic stays on stable until retry or a new spec."""

    step: int
    step_start: str
    reason: str
    message: str


@dataclass(frozen=True)
class Previewing:
    """Blue-green: the new revision runs at full size beside the active one, without traffic.
    ``ready_since`` is when it was first fully ready (auto-promotion counts from there)."""

    since: str
    ready_since: str | None = None


@dataclass(frozen=True)
class Switched:
    """Blue-green: traffic is on the new revision since ``at``; the old pods stay (idle) for
    an instant rollback until the scale-down delay ends."""

    at: str


RolloutState = Steady | Stepping | Promoting | Aborted | Previewing | Switched


def parse(status: AppReleaseStatus) -> RolloutState:
    """The state status describes (an operator restart resumes exactly there)."""
    if status.canary_revision_hash is None:
        return Steady()
    step = status.current_step_index or 0
    start = status.step_start_time or ""
    if status.aborted:
        return Aborted(step, start, status.abort_reason or "Aborted", status.abort_message or "")
    if status.promoting:
        return Promoting(step, start, status.promote_full, status.promotion_phase)
    blue_green = status.blue_green
    if blue_green is not None and blue_green.switched_at:
        return Switched(blue_green.switched_at)
    if blue_green is not None and blue_green.preview_since:
        return Previewing(blue_green.preview_since, blue_green.preview_ready_since)
    return Stepping(step, start, status.pause_start_time)


def status_fields(state: RolloutState, *, steps: int) -> dict[str, Any]:
    """The status fields that carry ``state`` (for Steady: the finished-canary defaults)."""
    fields: dict[str, Any] = {
        "current_step_index": None,
        "step_start_time": None,
        "pause_start_time": None,
        "promoting": False,
        "promotion_phase": None,
        "promote_full": False,
        "aborted": False,
        "abort_reason": None,
        "abort_message": None,
        "blue_green": None,
    }
    match state:
        case Stepping(step, start, pause):
            fields.update(current_step_index=step, step_start_time=start, pause_start_time=pause)
        case Promoting(step, start, full, phase):
            fields.update(current_step_index=step, step_start_time=start, promoting=True,
                          promote_full=full, promotion_phase=phase)
        case Aborted(step, start, reason, message):
            fields.update(current_step_index=step, step_start_time=start, aborted=True,
                          abort_reason=reason, abort_message=message)
        case Previewing(since, ready_since):
            fields.update(blue_green=BlueGreenStatus(preview_since=since, preview_ready_since=ready_since))
        case Switched(at):
            fields.update(blue_green=BlueGreenStatus(switched_at=at))
    return fields


def in_progress(state: RolloutState) -> bool:
    return not isinstance(state, Steady)
