"""Where a rollout is: one explicit type, stored in status.rollout and read back from it. Pure.

A canary is Stepping (working on a step, perhaps paused at it), Promoting (the stable
Deployment takes the canary's revision, with a registry in two phases) or Aborted. A
blue-green rollout is Previewing (the new revision runs beside the active one, without
traffic), Switched (traffic on the new revision; the old pods stay for an instant rollback
until the scale-down delay ends) or again Promoting/Aborted. Steady means no rollout runs.

status.rollout holds the state under the strategy that runs it, ``{canary: {phase: Stepping,
...}}`` or ``{blueGreen: {phase: Previewing, ...}}`` (``{}`` when Steady), so a canary state
cannot be a preview and a strategy change is visible (rollout/strategy_change.py). The old
top-level fields (currentStepIndex, ..., aborted, blueGreen) are derived from it for printer
columns, kstatus and older readers, and read only once: a status written by the previous
version, without status.rollout, is converted by their old precedence (``_from_old_fields``).
Every reader (planner, reconciler, CLI, console) goes through ``of``/``stored``/``of_wire``.
Each strategy has one transition function (rollout/canary.py, rollout/bluegreen.py,
rollout/direct.py) from a state to the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, assert_never

from pydantic import ValidationError

from ..api.status import (
    AppReleaseStatus,
    BlueGreenRolloutState,
    BlueGreenStatus,
    CanaryRolloutState,
    PromotionPhase,
    RolloutStatus,
)

# The strategies whose rollouts have a state of their own (rolling and recreate are Steady).
Progressive = Literal["canary", "blueGreen"]


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
    ``ready_since`` is when it was first fully ready (auto-promotion counts from there);
    ``taken_down_since`` when it was taken down (its clocks stop, and start again at bring-up)."""

    since: str
    ready_since: str | None = None
    taken_down_since: str | None = None


@dataclass(frozen=True)
class Switched:
    """Blue-green: traffic is on the new revision since ``at``; the old pods stay (idle) for
    an instant rollback until the scale-down delay ends."""

    at: str


RolloutState = Steady | Stepping | Promoting | Aborted | Previewing | Switched


@dataclass(frozen=True)
class Stored:
    """The state as status stores it, with the strategy it belongs to (None when Steady)."""

    state: RolloutState
    strategy: Progressive | None = None


def of(status: AppReleaseStatus) -> RolloutState:
    """The state status describes (an operator restart resumes exactly there)."""
    return stored(status).state


def stored(status: AppReleaseStatus) -> Stored:
    if status.rollout is None:
        return _from_old_fields(status)
    return _from_rollout(status.rollout)


def _from_rollout(rollout: RolloutStatus) -> Stored:
    if rollout.canary is not None:
        return Stored(_canary_state(rollout.canary), "canary")
    if rollout.blue_green is not None:
        return Stored(_blue_green_state(rollout.blue_green), "blueGreen")
    return Stored(Steady())


# The old fields a status written before status.rollout carries its state in.
_STATE_KEYS = (
    "strategy", "canaryRevisionHash", "currentStepIndex", "stepStartTime", "pauseStartTime",
    "promoting", "promotionPhase", "promoteFull", "aborted", "abortReason", "abortMessage", "blueGreen",
)


def of_wire(status: Mapping[str, Any] | None) -> Stored:
    """The stored state of a status as the API returns it (CLI, console); Steady if unreadable."""
    raw = status or {}
    try:
        if raw.get("rollout") is not None:
            return _from_rollout(RolloutStatus.model_validate(raw["rollout"]))
        return stored(AppReleaseStatus.model_validate({k: raw[k] for k in _STATE_KEYS if k in raw}))
    except ValidationError:
        return Stored(Steady())


def _canary_state(saved: CanaryRolloutState) -> RolloutState:
    step, start = saved.step, saved.step_start_time
    match saved.phase:
        case "Aborted":
            return Aborted(step, start, saved.reason or "Aborted", saved.message or "")
        case "Promoting":
            return Promoting(step, start, bool(saved.full), saved.promotion_phase)
    return Stepping(step, start, saved.pause_start_time)


def _blue_green_state(saved: BlueGreenRolloutState) -> RolloutState:
    match saved.phase:
        case "Aborted":
            return Aborted(0, saved.since, saved.reason or "Aborted", saved.message or "")
        case "Promoting":
            return Promoting(0, saved.since, bool(saved.full), saved.promotion_phase)
        case "Switched":
            return Switched(saved.since)
    return Previewing(saved.since, saved.ready_since, saved.taken_down_since)


def _from_old_fields(status: AppReleaseStatus) -> Stored:
    """A status written before status.rollout existed: the fields' old precedence, once (the
    next status write stores the state). Promoting and Aborted belong to the strategy the
    status names; the versions before blue-green knew only the canary."""
    if status.canary_revision_hash is None:
        return Stored(Steady())
    step = status.current_step_index or 0
    start = status.step_start_time or ""
    named: Progressive = "blueGreen" if status.strategy == "blueGreen" else "canary"
    if status.aborted:
        return Stored(Aborted(step, start, status.abort_reason or "Aborted", status.abort_message or ""), named)
    if status.promoting:
        return Stored(Promoting(step, start, status.promote_full, status.promotion_phase), named)
    blue_green = status.blue_green
    if blue_green is not None and blue_green.switched_at:
        return Stored(Switched(blue_green.switched_at), "blueGreen")
    if blue_green is not None and blue_green.preview_since:
        return Stored(Previewing(blue_green.preview_since, blue_green.preview_ready_since), "blueGreen")
    return Stored(Stepping(step, start, status.pause_start_time), "canary")


def to_status(state: RolloutState, *, running: str) -> RolloutStatus:
    """status.rollout for ``state``, which the ``running`` strategy produced: Stepping is the
    canary's, Previewing and Switched blue-green's, Promoting and Aborted the runner's."""
    match state:
        case Stepping(step, start, pause):
            return RolloutStatus(canary=CanaryRolloutState(
                phase="Stepping", step=step, step_start_time=start, pause_start_time=pause))
        case Previewing(since, ready_since, taken_down_since):
            return RolloutStatus(blue_green=BlueGreenRolloutState(
                phase="Previewing", since=since, ready_since=ready_since, taken_down_since=taken_down_since))
        case Switched(at):
            return RolloutStatus(blue_green=BlueGreenRolloutState(phase="Switched", since=at))
        case Promoting(step, start, full, phase) if running == "blueGreen":
            return RolloutStatus(blue_green=BlueGreenRolloutState(
                phase="Promoting", since=start, full=full or None, promotion_phase=phase))
        case Promoting(step, start, full, phase):
            return RolloutStatus(canary=CanaryRolloutState(
                phase="Promoting", step=step, step_start_time=start, full=full or None, promotion_phase=phase))
        case Aborted(step, start, reason, message) if running == "blueGreen":
            return RolloutStatus(blue_green=BlueGreenRolloutState(
                phase="Aborted", since=start, reason=reason, message=message))
        case Aborted(step, start, reason, message):
            return RolloutStatus(canary=CanaryRolloutState(
                phase="Aborted", step=step, step_start_time=start, reason=reason, message=message))
        case Steady():
            return RolloutStatus()
        case _:  # a state added without a stored form is a type error, not a lost rollout
            assert_never(state)


def status_fields(state: RolloutState, *, running: str) -> dict[str, Any]:
    """The status fields that carry ``state``, produced by the ``running`` strategy:
    status.rollout, and the old fields derived from it (for Steady: the finished-canary
    defaults)."""
    fields: dict[str, Any] = {
        "rollout": to_status(state, running=running),
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
        case Previewing(since, ready_since, _):
            fields.update(blue_green=BlueGreenStatus(preview_since=since, preview_ready_since=ready_since))
        case Switched(at):
            fields.update(blue_green=BlueGreenStatus(switched_at=at))
    return fields


def in_progress(state: RolloutState) -> bool:
    return not isinstance(state, Steady)


def canary_step(saved: Stored) -> int | None:
    """The canary step being worked on (0-based), or None when no canary runs."""
    if saved.strategy == "canary" and isinstance(saved.state, Stepping | Promoting | Aborted):
        return saved.state.step
    return None
