"""What one planning pass decided, and the plan handed to the I/O layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..api.status import AppReleaseStatus, HandledRequests
from ..domain import RegistryAction
from ..render import DesiredChildren
from .canary import CanaryProgress
from .observed import RevisionRecord


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    status: AppReleaseStatus
    desired: DesiredChildren
    revisions_to_save: tuple[RevisionRecord, ...] = ()
    revisions_to_delete: tuple[RevisionRecord, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    registry_actions: tuple[RegistryAction, ...] = ()


@dataclass
class Rollout:
    """Decisions of one pass, filled in by the strategy functions."""

    stable: RevisionRecord
    canary: RevisionRecord | None = None
    canary_replicas: int = 0
    set_weight: int | None = None
    progress: CanaryProgress | None = None
    aborted: bool = False
    abort_reason: str | None = None
    abort_message: str | None = None
    events: list[Event] = field(default_factory=list)
    handled: HandledRequests = field(default_factory=HandledRequests)
    waiting_for: str = ""
    promotion_phase: str | None = None
