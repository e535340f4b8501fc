"""The AppRelease status: kstatus conditions, rollout state, registration.

Everything the rollout needs to resume after a restart lives here (step index, pause start,
stable/canary revision), never only in the operator's memory.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .analysis import AnalysisStatus
from .base import ApiModel, cel, validations

Phase = Literal["Progressing", "Paused", "Healthy", "Degraded", "TakenDown"]
ConditionStatus = Literal["True", "False", "Unknown"]
Track = Literal["stable", "canary", "preview"]
PromotionPhase = Literal["ScaleCanary", "UpdateStable"]


class StatusModel(ApiModel):
    # Tolerate fields written by newer/older operator versions instead of failing to parse.
    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "ignore"})


class Condition(StatusModel):
    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class TrackStatus(StatusModel):
    """One Deployment's view: the revision it runs and its replica counts."""

    revision: int | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0


class RevisionRegistration(StatusModel):
    track: Track
    revision: int | None = None
    expected: int = 0
    registered: int = 0
    healthy: int = 0
    enabled: int = 0


class RegisteredInstance(StatusModel):
    ip: str
    port: int
    pod: str | None = None
    revision: int | None = None
    track: Track | None = None
    healthy: bool = False
    enabled: bool = True
    weight: float = 1.0
    ephemeral: bool = True
    cluster: str = ""
    warming: bool = Field(False, description="Its weight still ramps up (registry.warmup).")


class RegistrationStatus(StatusModel):
    provider: Literal["kubernetes", "nacos"] = "kubernetes"
    service: str = ""
    summary: str = Field("", description="Registered and healthy / expected, e.g. 3/3.")
    revisions: list[RevisionRegistration] = Field(default_factory=list)
    instances: list[RegisteredInstance] = Field(default_factory=list)
    instance_count: int = 0
    stale: list[RegisteredInstance] = Field(default_factory=list)
    stale_count: int = 0
    last_sync_time: str | None = None
    last_error: str | None = None


class DrainingInstance(StatusModel):
    """An instance taken offline before its pod leaves; listed until the pod is gone (Nacos drops
    the override of an instance that left by itself)."""

    pod: str
    ip: str
    port: int
    ephemeral: bool = True
    since: str
    offline_since: str | None = Field(
        None, description="When the registry first showed the instance offline; registry.drainSeconds counts from here."
    )
    reason: str = ""
    gone_since: str | None = Field(
        None, description="The pod is gone; the override stays tracked until a new pod takes the address or Nacos expires it."
    )


class HandledRequests(StatusModel):
    """Values of the request annotations already acted on (promote, abort, retry).

    Requests are annotations so they work from kubectl and Git alike; remembering the handled
    value makes a re-applied annotation a no-op instead of a second promotion.
    """

    promote: str | None = None
    abort: str | None = None
    retry: str | None = None


class CanaryRolloutState(StatusModel):
    """A canary in progress (status.canaryRevision is its revision)."""

    phase: Literal["Stepping", "Promoting", "Aborted"] = Field(
        description="Stepping: working on a step (perhaps paused at it). Promoting: the stable Deployment"
        " takes the canary's revision. Aborted: the canary is scaled away, traffic is on stable."
    )
    step: int = Field(
        ge=0, description="The step being worked on, 0-based (the number of steps once all are done)."
    )
    step_start_time: str = Field(
        description="When this step began; progressDeadlineSeconds and registry.gateTimeout count from here."
    )
    pause_start_time: str | None = Field(
        None, description="Stepping at a pause step: when the pause began (its duration counts from here)."
    )
    promotion_phase: PromotionPhase | None = Field(
        None,
        description="Promoting with a registry: the canary first grows to full size, then stable is drained and updated.",
    )
    full: bool | None = Field(None, description="Promoting on `promote --full`: the remaining steps are skipped.")
    reason: str | None = Field(None, description="Aborted: why, e.g. AbortedByUser, ProgressDeadlineExceeded.")
    message: str | None = Field(None, description="Aborted: what happened.")


class BlueGreenRolloutState(StatusModel):
    """A blue-green rollout in progress (status.canaryRevision is the preview revision)."""

    phase: Literal["Previewing", "Switched", "Promoting", "Aborted"] = Field(
        description="Previewing: the new revision runs beside the active one, without traffic. Switched: traffic"
        " is on it, the old pods stay for an instant rollback. Promoting: the stable Deployment takes it."
        " Aborted: the preview is scaled away, traffic is on stable."
    )
    since: str = Field(
        description="When this phase began: the preview started, traffic switched, the promotion began"
        " (Aborted: what the aborted phase counted from)."
    )
    ready_since: str | None = Field(
        None, description="Previewing: the preview was first fully ready; autoPromotionSeconds counts from here."
    )
    taken_down_since: str | None = Field(
        None,
        description="Previewing while the AppRelease is taken down (spec.takenDown): since when. The progress"
        " deadline and autoPromotionSeconds do not count meanwhile; both start again at bring-up.",
    )
    promotion_phase: PromotionPhase | None = Field(
        None, description="Promoting: the stage of the promotion (UpdateStable: the preview serves meanwhile)."
    )
    full: bool | None = Field(None, description="Promoting on `promote --full`: the scale-down delay is skipped.")
    reason: str | None = Field(None, description="Aborted: why, e.g. AbortedByUser, ProgressDeadlineExceeded.")
    message: str | None = Field(None, description="Aborted: what happened.")


class RolloutStatus(StatusModel):
    """Where the rollout is, under the strategy that runs it (rollout/state.py)."""

    model_config = StatusModel.model_config | {
        "json_schema_extra": validations(cel("!has(self.canary) || !has(self.blueGreen)",
                                             "at most one of canary and blueGreen")),
    }

    canary: CanaryRolloutState | None = None
    blue_green: BlueGreenRolloutState | None = None


class BlueGreenStatus(StatusModel):
    """Where a blue-green rollout is (status.canaryRevision is the preview revision). Derived
    from status.rollout.blueGreen for older readers; never read by the operator."""

    preview_since: str | None = Field(None, description="The preview Deployment was started.")
    preview_ready_since: str | None = Field(
        None, description="The preview was first fully ready (and registered); autoPromotionSeconds counts from here."
    )
    switched_at: str | None = Field(
        None, description="Traffic moved to the preview revision; the old pods stay until scaleDownDelaySeconds."
    )


class FailureStatus(StatusModel):
    """What blocks this AppRelease, since when, and when it counts as Stalled."""

    reason: str = Field(description="A named failure class, e.g. RegistryUnavailable, ChildRejected.")
    message: str = ""
    since: str = Field(description="When this failure was first seen (it persisted ever since).")
    stalled_at: str = Field(
        description="When it becomes (or became) Stalled: since + the failure's bound."
    )


class NacosConfigItemStatus(StatusModel):
    """One dataId: the formal copy (the item's own group) and each revision's copy we published."""

    data_id: str
    group: str
    md5: str | None = Field(None, description="What the formal dataId holds as we published it.")
    formal_hash: str | None = Field(None, description="The config hash whose content the formal dataId holds.")
    revisions: dict[str, str] = Field(
        default_factory=dict,
        description="Config hash → md5 of the copy in group <group>.rev-<hash>, verified by a read.",
    )


DriftState = Literal["Saving", "Saved"]


class NacosConfigDrift(StatusModel):
    """A dataId someone edited in Nacos: its content is saved before anything overwrites it."""

    group: str
    data_id: str
    md5: str
    saved_to: str = Field(description="Group the hand-edited content is saved to (same dataId).")
    state: DriftState = "Saving"
    since: str | None = None


class NacosConfigStatus(StatusModel):
    namespace: str = ""
    items: list[NacosConfigItemStatus] = Field(default_factory=list)
    drift: list[NacosConfigDrift] = Field(default_factory=list)
    last_drift: str | None = Field(None, description="The last hand edit seen and where it was saved.")

    def item(self, group: str, data_id: str) -> NacosConfigItemStatus | None:
        return next((i for i in self.items if i.group == group and i.data_id == data_id), None)


class ConfigStatus(StatusModel):
    nacos: NacosConfigStatus | None = None


class AppReleaseStatus(StatusModel):
    observed_generation: int | None = None
    phase: Phase | None = None
    message: str = ""
    strategy: Literal["rolling", "recreate", "canary", "blueGreen"] | None = None

    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    selector: str = ""
    ready: str = Field("", description="Ready pods / desired, for the READY column.")

    current_revision: int | None = Field(None, description="Revision the spec describes.")
    current_revision_hash: str | None = None
    stable_revision: int | None = None
    stable_revision_hash: str | None = None
    canary_revision: int | None = None
    canary_revision_hash: str | None = None

    rollout: RolloutStatus | None = Field(
        None,
        description="Where the rollout is: the record the operator resumes from. At most one strategy's state;"
        " empty while no rollout runs; absent only in a status written before it existed. currentStepIndex,"
        " stepStartTime, pauseStartTime, promoting, promotionPhase, promoteFull, aborted, abortReason,"
        " abortMessage and blueGreen are written from it for columns and older readers.",
    )
    analysis: AnalysisStatus | None = Field(
        None, description="The canary revision's analysis runs (the current step's, the background one): each"
        " metric's counts and last measurements. Absent while no canary runs.")
    current_step_index: int | None = None
    step_count: int = 0
    step: str = Field("", description="Canary step k/n for the STEP column.")
    set_weight: int | None = None
    actual_weight: int | None = None
    step_start_time: str | None = None
    pause_start_time: str | None = None
    promoting: bool = Field(False, description="The stable Deployment is taking the canary revision.")
    promotion_phase: PromotionPhase | None = Field(
        None,
        description="With a registry: the canary first grows to full size, then stable is drained and updated.",
    )
    promote_full: bool = False

    aborted: bool = False
    abort_reason: str | None = None
    abort_message: str | None = None

    stable: TrackStatus = Field(default_factory=TrackStatus)
    canary: TrackStatus = Field(default_factory=TrackStatus)
    handled_requests: HandledRequests = Field(default_factory=HandledRequests)
    registration: RegistrationStatus | None = None
    draining: Annotated[list[DrainingInstance], Field(max_length=1000)] = Field(default_factory=list)
    offline_pods: Annotated[list[str], Field(max_length=1000)] = Field(
        default_factory=list, description="Pods taken offline on request (apprelease offline)."
    )
    blue_green: BlueGreenStatus | None = None
    config: ConfigStatus | None = Field(None, description="Nacos config published for the revisions.")
    failure: FailureStatus | None = Field(
        None, description="Set while something blocks progress; see docs/failures.md."
    )
    conditions: Annotated[list[Condition], Field(max_length=32)] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
