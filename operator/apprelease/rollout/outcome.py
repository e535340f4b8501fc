"""What one planning pass decided, and the plan handed to the I/O layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..api.analysis import AnalysisStatus
from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, HandledRequests
from ..domain import ConfigAction, RegistryAction, Track
from ..render import DesiredChildren
from . import requests
from .analysis import MeasurementRequest, Problem
from .observed import GateChange, Observed, RevisionRecord
from .state import RolloutState
from .timefmt import format_time


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
    # Readiness-gate conditions to write on pods (rollout/instances.py).
    pod_gates: tuple[GateChange, ...] = ()
    # Pods are joining or leaving the registry: read it often.
    registry_busy: bool = False
    # Nacos config publishes, saves and deletions (rollout/nacos_config.py).
    config_actions: tuple[ConfigAction, ...] = ()
    # Analysis measurements to take when due (controller/analysis_runner.py).
    measurements: tuple[MeasurementRequest, ...] = ()


@dataclass(frozen=True)
class Inputs:
    """Everything a strategy's transition function decides from (pure values)."""

    app: AppRelease
    observed: Observed
    now: datetime
    stable: RevisionRecord  # the stable revision before this pass
    current: RevisionRecord  # the revision the spec describes
    candidate: RevisionRecord | None  # the canary/preview revision before this pass
    handled: HandledRequests
    registry_drain: bool  # instances go offline before their pods leave
    analysis: AnalysisStatus | None = None  # status.analysis before this pass

    @property
    def stamp(self) -> str:
        return format_time(self.now)

    @property
    def pending(self) -> requests.PendingRequests:
        return requests.pending(self.app.annotations, self.handled)


@dataclass(frozen=True)
class Decision:
    """Where the rollout is after this pass, and what the tracks should run."""

    state: RolloutState
    stable: RevisionRecord  # the stable revision after this pass
    candidate: RevisionRecord | None = None  # canary / preview revision; None when steady
    # What the stable Deployment runs this pass: the candidate while a promotion updates it.
    stable_track: RevisionRecord | None = None
    candidate_replicas: int = 0
    set_weight: int | None = None
    # Canary: the share routers carry this pass (nginx, Gateway API, Nacos weights): the
    # step's weight only as far as ready canary pods can take it (canary.routed_weight).
    routed_weight: int = 0
    # Canary: some canary pod is ready, so a header match may send requests to it.
    canary_serving: bool = False
    events: tuple[Event, ...] = ()
    handled: HandledRequests = field(default_factory=HandledRequests)
    waiting_for: str = ""
    wake_at: tuple[datetime, ...] = ()
    promoted: str | None = None  # revision hash to mark promoted
    superseded: tuple[tuple[str, str], ...] = ()  # (hash, reason) to mark aborted
    candidate_track: Track = "canary"  # the Deployment the candidate runs in
    # Blue-green: the revision the active Service (and an HPA's selector) points at while
    # traffic is on the new revision; None: the stable Deployment's pods, whatever revision
    # they run (a restart or a known-good revision rolls there in place).
    active_revision: int | None = None
    # Revisions whose registry instances stay disabled in this state (a blue-green preview
    # before the switch, the old revision after it).
    idle_revisions: frozenset[int] = frozenset()
    # The analysis run of this rollout (status.analysis), what it asks to measure, and what
    # stops it from running as written (a missing template, an argument, a refused address).
    analysis: AnalysisStatus | None = None
    measurements: tuple[MeasurementRequest, ...] = ()
    analysis_problem: Problem | None = None

    @property
    def runs_on_stable(self) -> RevisionRecord:
        return self.stable_track or self.stable

    @property
    def updating_stable(self) -> bool:
        return self.stable_track is not None and self.stable_track.hash != self.stable.hash
