"""What a reconcile pass tells people: notifications derived from what the planner already
decided (its Events) and from the status transition the pass writes. Pure.

No second decision path: a notification exists only where an Event reason or a phase change
says so. Both come from comparing the written status with the one before, so an operator
that restarts (or a new leader) reads the same status and tells nothing again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..api.notifications import NotificationFacts
from ..api.status import AppReleaseStatus
from .canary import GATE_WAITING
from .outcome import Event
from .pipeline import Notification

# Event reason (rollout/*.py) → notification kind. The one place this mapping lives.
KIND_OF_REASON: dict[str, str] = {
    "RolloutStarted": "Started",
    "CanaryStarted": "Started",
    "CanaryRestarted": "Started",
    "PreviewStarted": "Started",
    "Retried": "Started",
    "StepCompleted": "StepReached",
    "Promoted": "StepReached",  # canary: a `promote` moved on one step
    "PromotionCompleted": "Promoted",
    "Aborted": "Aborted",
    "RolledBack": "RolledBack",
    "Stalled": "Degraded",
    "AnalysisFailed": "AnalysisFailed",
}


def notifications_for(
    namespace: str, name: str, image: str, previous: AppReleaseStatus, new: AppReleaseStatus,
    events: Iterable[Event], now: datetime,
) -> list[NotificationFacts]:
    """The notifications of one written status change, in the order things happened."""
    found: list[tuple[str, str, str]] = []  # (kind, reason, message)
    for event in events:
        kind = KIND_OF_REASON.get(event.reason)
        if kind is not None:
            found.append((kind, event.reason, event.message))
    kinds = {kind for kind, _, _ in found}
    if new.phase != previous.phase and previous.phase is not None:
        if new.phase == "Paused" and "Paused" not in kinds:
            found.append(("Paused", _reason(new, "Paused"), new.message))
        elif new.phase == "Degraded" and not kinds & {"Aborted", "RolledBack", "Degraded", "AnalysisFailed"}:
            found.append(("Degraded", _reason(new, "Degraded"), new.message))
        elif (new.phase == "Healthy" and previous.phase == "Progressing" and new.strategy in ("rolling", "recreate")
              and "Promoted" not in kinds):
            # Rolling and recreate have no promotion step: the revision is out once Healthy.
            found.append(("Promoted", "Available", new.message))
    if GATE_WAITING in new.message and GATE_WAITING not in previous.message:
        found.append(("RegistryGateWaiting", "RegistryGateWaiting", new.message))
    revision = new.canary_revision or new.current_revision
    in_canary = new.canary_revision is not None and new.step_count > 0
    return [
        NotificationFacts(
            kind=kind, namespace=namespace, name=name, reason=reason, message=message, at=now,
            revision=revision, image=image, step=new.step if in_canary else "",
            weight=new.set_weight if in_canary else None, phase=str(new.phase or ""),
        )
        for kind, reason, message in found
    ]


def _reason(status: AppReleaseStatus, default: str) -> str:
    """The reason of the condition that explains the phase (CanaryPauseStep, ProgressDeadlineExceeded)."""
    for condition in status.conditions:
        if condition.type in ("Paused", "Stalled", "Ready") and condition.reason and condition.status in ("True", "False"):
            if condition.type == "Ready" and condition.status == "True":
                continue
            return condition.reason
    return default


# ReleasePipeline notes (rollout/pipeline.py's Notification kinds) → notification kind.
KIND_OF_PIPELINE_NOTE: dict[str, str] = {
    "WaitingForApproval": "WaitingForApproval",
    "Promoted": "StagePromoted",
    "Rejected": "Rejected",
    "Refused": "ApprovalRefused",
    "Failed": "PromotionFailed",
    "AnalysisFailed": "AnalysisFailed",
}


def pipeline_notification(namespace: str, name: str, note: Notification, now: datetime) -> NotificationFacts | None:
    kind = KIND_OF_PIPELINE_NOTE.get(note.kind)
    if kind is None:
        return None
    return NotificationFacts(
        kind=kind, namespace=namespace, name=name, reason=note.kind, message=note.message, at=now,
        subject="ReleasePipeline", stage=note.stage,
        actor=note.actor,
    )
