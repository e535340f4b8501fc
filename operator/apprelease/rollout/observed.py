"""What the planner sees of the cluster: small immutable summaries, not raw API objects.

The I/O layer builds these from its watch caches; tests build them by hand. Keeping them
small is also what keeps the operator's memory per AppRelease low.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api.spec import RevisionTemplate
from ..api.status import Condition, RegistrationStatus
from ..domain import RegistryInstance, Track
from .analysis import AnalysisObserved


@dataclass(frozen=True)
class DeploymentState:
    track: Track
    revision_hash: str | None
    generation: int = 1
    observed_generation: int = 1
    replicas: int = 0  # spec.replicas
    status_replicas: int = 0  # every pod, old and new
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    deadline_exceeded: bool = False
    # The ReplicaSet cannot create pods (ReplicaFailure, e.g. FailedCreate): its message.
    replica_failure: str | None = None

    def rolled_out(self, revision_hash: str, replicas: int) -> bool:
        """Every pod runs ``revision_hash`` and is available; no old pods left."""
        return (
            self.revision_hash == revision_hash
            and self.observed_generation >= self.generation
            and self.replicas == replicas
            and self.updated_replicas == replicas
            and self.available_replicas == replicas
            and self.ready_replicas == replicas
            and self.status_replicas == replicas
        )


# The readiness gate the operator owns on pods of apps with a Nacos registry: the pod is
# Ready only once Nacos lists its instance registered and healthy.
REGISTERED_GATE = "apprelease.io/registered"


@dataclass(frozen=True, slots=True)
class GateState:
    """The pod's REGISTERED_GATE condition as the pod shows it. The reason is the pod's own
    registration state: Registered (listed, kept disabled until the pod is Ready), Serving
    (enabled by us), Unregistered, Unhealthy, DisabledInRegistry (someone else disabled it)."""

    status: bool
    reason: str
    since: str | None = None


@dataclass(frozen=True)
class GateChange:
    """A pod's REGISTERED_GATE condition to write (the planner decides, the reconciler writes)."""

    pod: str
    status: bool
    reason: str
    message: str
    since: str  # lastTransitionTime: kept while the status stays the same


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    track: Track | None
    revision: int | None
    ready: bool
    restarts: int = 0
    crash_looping: bool = False
    deleting: bool = False
    ip: str | None = None
    phase: str = "Pending"
    node: str | None = None
    created: str | None = None
    containers_ready: bool = False
    gate: GateState | None = None
    # A pod of the adopted revision (spec.adopt): found by the adopted selector, it carries
    # none of our labels and no readiness gate, nor the preStop hook that drains ours.
    adopted: bool = False


@dataclass(frozen=True)
class HpaState:
    """A HorizontalPodAutoscaler that scales this app, or one of its Deployments."""

    name: str
    target_kind: str  # AppRelease (right) or Deployment (wrong: we reset its replicas)
    target_name: str
    min_replicas: int | None = None
    max_replicas: int = 0
    desired_replicas: int | None = None


@dataclass(frozen=True)
class RevisionRecord:
    """One entry of the history (a ControllerRevision in the cluster)."""

    number: int
    hash: str
    template: RevisionTemplate
    created: str
    promoted: str | None = None
    aborted: str | None = None
    abort_reason: str | None = None


@dataclass(frozen=True)
class TrackRegistration:
    expected: int = 0
    registered: int = 0
    healthy: int = 0
    enabled: int = 0

    @property
    def all_healthy(self) -> bool:
        return self.registered >= self.expected and self.healthy >= self.expected


# Registry failure classes (rollout/failures.py) that need a person to act.
_UNHEALING = ("RegistryRefused", "RegistryMisconfigured")


@dataclass(frozen=True)
class RegistryState:
    """The registry's view, summarised per track by the registry layer."""

    reachable: bool
    tracks: Mapping[Track, TrackRegistration] = field(default_factory=dict)
    error: str | None = None
    # Why it is not reachable: a failure class reason (rollout/failures.py) or "Pending".
    failure_reason: str | None = None
    # Reachable, but our last write failed (e.g. 403 on writes, a Raft group without leader).
    write_error: str | None = None
    write_error_reason: str | None = None

    @property
    def outage(self) -> bool:
        """Unreadable for a reason that may heal (down, 5xx, timeouts, not a Nacos answer):
        a rollout holds without promoting or aborting, and its clocks wait for the registry.
        Refused credentials or impossible settings do not heal by themselves."""
        return not self.reachable and self.failure_reason not in _UNHEALING

    def gate_open(self, track: Track, want: int) -> bool:
        """``want`` pods of the track are ready, registered and healthy: the count the step
        asks for, not merely the pods visible so far (none visible is not "all healthy")."""
        if not self.reachable:
            return False
        counts = self.tracks.get(track, TrackRegistration())
        return counts.expected >= want and counts.all_healthy


@dataclass(frozen=True)
class Registration:
    """What the registry says about one AppRelease: status rows, condition, gate, pod map."""

    status: RegistrationStatus
    condition: Condition
    state: RegistryState
    by_pod: Mapping[str, RegistryInstance] = field(default_factory=dict)
    stale: tuple[RegistryInstance, ...] = ()
    # Pods with an instance at their IP in a read older than they are: not theirs yet.
    unconfirmed: tuple[str, ...] = ()


# What a read found for one (group, dataId): its md5, or None when Nacos has no such config.
ConfigKeyRead = tuple[str, str]


@dataclass(frozen=True)
class ConfigRead:
    """What the Nacos config store holds for the keys an app's config needs (the registry
    layer reads them: rollout/nacos_config.keys_to_read), and how its last calls went."""

    # (group, dataId) → md5, None when absent; a key not here was not read (yet).
    md5: Mapping[ConfigKeyRead, str | None] = field(default_factory=dict)
    # The last read failed (md5 is then the last good read): why, and a failure class reason.
    error: str | None = None
    error_reason: str | None = None
    # The last publish / save / delete failed: which dataId and why.
    action_error: str | None = None


@dataclass(frozen=True)
class Observed:
    deployments: Mapping[Track, DeploymentState] = field(default_factory=dict)
    pods: tuple[PodState, ...] = ()
    revisions: tuple[RevisionRecord, ...] = ()
    # None when no registry is configured: nothing gates the rollout.
    registry: RegistryState | None = None
    # The registration status (EndpointSlices by default, Nacos when configured).
    registration: Registration | None = None
    hpas: tuple[HpaState, ...] = ()
    # None: the app has no Nacos config, or no read was made yet.
    config: ConfigRead | None = None
    # Analysis templates and measurements (controller/analysis_runner.py); None: none runs.
    analysis: AnalysisObserved | None = None

    def pods_of(self, track: Track) -> list[PodState]:
        return [p for p in self.pods if p.track == track and not p.deleting]
