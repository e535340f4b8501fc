"""The failure model: every failure has a name, a bound, and advice. Pure.

A failure is classified once, where it happens (the registry layer, the apply, the parser),
into one of the classes below. Until its bound has passed, progress pauses and the status
says why (Reconciling=True with the failure's reason); once the bound has passed, or at once
for failures that cannot heal by themselves, the AppRelease is Stalled with the same reason
and an Event. "Since" survives operator restarts (it is in status), and a pass that succeeds
clears the failure. Deletion has its own bound: registry.deletionTimeout (rollout/deletion.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..api.status import AppReleaseStatus, FailureStatus
from . import conditions as C
from .timefmt import format_time, parse_time_or


@dataclass(frozen=True)
class FailureClass:
    reason: str
    # None: Stalled at once (it cannot heal by itself); else Stalled once it lasted this long.
    bound: timedelta | None
    advice: str
    # Does the rollout keep waiting (True), or is nothing left to do until something changes?
    transient: bool = True

    def describe(self, detail: str) -> str:
        return f"{detail}; {self.advice}" if self.advice else detail


# The spec passed admission but cannot be reconciled (render error, unparseable spec).
INVALID_SPEC = FailureClass("InvalidSpec", None, "fix the spec", transient=False)
# The operator's policy forbids part of the spec (an Ingress annotation, a Nacos server).
POLICY_VIOLATION = FailureClass(
    "PolicyViolation", None, "remove it from the spec or ask the platform team to allow it",
    transient=False,
)
# An analysis that cannot run as written: a template missing, an argument without a value, a
# condition that is not an expression. The rollout waits at the step.
ANALYSIS_INVALID = FailureClass(
    "AnalysisInvalid", None, "fix the analysis template or the step's args", transient=False,
)
# The apiserver rejected a child we rendered (400/422): the spec asks for something invalid.
CHILD_REJECTED = FailureClass("ChildRejected", None, "fix the spec", transient=False)
# A child's name is taken by an object this AppRelease does not own.
CHILD_CONFLICT = FailureClass(
    "ChildConflict", None, "delete or rename the other object, or rename this AppRelease",
    transient=False,
)
# 403 on our own writes: RBAC, a ResourceQuota, an admission policy. May heal (quota freed).
FORBIDDEN = FailureClass(
    "Forbidden", timedelta(minutes=2),
    "check the operator's RBAC, ResourceQuotas and admission policies of the namespace",
)
# 5xx, 429, timeouts, refused connections on our writes: retried with back-off.
API_UNAVAILABLE = FailureClass(
    "ApiUnavailable", timedelta(minutes=5), "retrying with back-off",
)
# The ReplicaSet cannot create pods (FailedCreate: PodSecurity, quota, a webhook).
POD_CREATION_FAILED = FailureClass(
    "PodCreationFailed", None,
    "fix the pod template or the namespace's policy (see the ReplicaSet's events)",
    transient=False,
)
# The registry cannot be reached or answers 5xx/timeouts: the rollout holds (it neither
# promotes nor removes registered pods blindly) and resumes when the registry is back.
REGISTRY_UNAVAILABLE = FailureClass(
    "RegistryUnavailable", None, "the rollout holds until the registry answers",
)
# The registry answers, but not what a Nacos server answers (HTML, missing fields).
REGISTRY_BAD_RESPONSE = FailureClass(
    "RegistryBadResponse", None,
    "check that spec.registry.nacos.serverAddr points at Nacos (not a proxy or a login page)",
)
# 401/403 from the registry: credentials or permissions. Does not heal by itself.
REGISTRY_REFUSED = FailureClass(
    "RegistryRefused", None,
    "check spec.registry.nacos.credentialsSecret and the Nacos user's permissions",
    transient=False,
)
# The registry settings cannot work (bad address, unreadable Secret or CA, not allowed).
REGISTRY_MISCONFIGURED = FailureClass(
    "RegistryMisconfigured", None, "fix spec.registry.nacos", transient=False,
)
# The registry is readable but our writes (enable, disable, weight) fail.
REGISTRY_WRITE_FAILED = FailureClass(
    "RegistryWriteFailed", None, "pods stay until their instances can be taken offline",
)
# A config content does not parse as its type says (yaml, json, properties): never published.
CONFIG_INVALID = FailureClass(
    "ConfigInvalid", None, "fix the content in spec.config (nothing was published)", transient=False,
)
# Nacos refused a config publish (4xx: content or name) or the copy does not read back as
# published: the revision's pods are not created until it is.
CONFIG_PUBLISH_FAILED = FailureClass(
    "ConfigPublishFailed", None, "the rollout holds until the revision's config is published",
)
# The Nacos config store cannot be reached while a revision's copies are still to publish.
CONFIG_STORE_UNAVAILABLE = FailureClass(
    "ConfigStoreUnavailable", None, "the rollout holds until Nacos answers",
)

# The stable revision's history is gone: a canary cannot start without it.
STABLE_REVISION_MISSING = FailureClass(
    "StableRevisionMissing", None,
    "restore its ControllerRevision, or `apprelease promote --full` to replace stable directly",
    transient=False,
)
# The pure core raised on this input: a bug. The message names the exception.
INTERNAL_ERROR = FailureClass(
    "InternalError", None, "this is a bug in the operator; please report it", transient=False,
)

# Registry failures hold a rollout; past progressDeadlineSeconds of holding, it is Stalled.
REGISTRY_CLASSES = {
    c.reason: c
    for c in (REGISTRY_UNAVAILABLE, REGISTRY_BAD_RESPONSE, REGISTRY_REFUSED,
              REGISTRY_MISCONFIGURED, REGISTRY_WRITE_FAILED)
}

ALL_CLASSES = (
    INVALID_SPEC, POLICY_VIOLATION, CHILD_REJECTED, CHILD_CONFLICT, FORBIDDEN, API_UNAVAILABLE,
    POD_CREATION_FAILED, REGISTRY_UNAVAILABLE, REGISTRY_BAD_RESPONSE, REGISTRY_REFUSED,
    REGISTRY_MISCONFIGURED, REGISTRY_WRITE_FAILED, STABLE_REVISION_MISSING, INTERNAL_ERROR,
    CONFIG_INVALID, CONFIG_PUBLISH_FAILED, CONFIG_STORE_UNAVAILABLE, ANALYSIS_INVALID,
)


def record(
    previous: FailureStatus | None,
    failure: FailureClass,
    detail: str,
    now: datetime,
    *,
    bound: timedelta | None = None,
) -> FailureStatus:
    """The failure as status keeps it: ``since`` is kept while the same reason persists.
    ``bound`` overrides the class's (a registry outage is bounded by the progress deadline)."""
    limit = bound if bound is not None else failure.bound
    since = previous.since if previous is not None and previous.reason == failure.reason else None
    since = since or format_time(now)
    start = parse_time_or(since, now)
    deadline = format_time(start + limit) if limit is not None else since
    return FailureStatus(
        reason=failure.reason, message=failure.describe(detail), since=since, stalled_at=deadline
    )


def is_stalled(failure: FailureStatus, now: datetime) -> bool:
    return now >= parse_time_or(failure.stalled_at, now)


def seconds_until_stalled(failure: FailureStatus, now: datetime) -> float | None:
    """When to look again so the Stalled condition turns True on time (None: it already is)."""
    remaining = (parse_time_or(failure.stalled_at, now) - now).total_seconds()
    return remaining if remaining > 0 else None


def with_failure(
    status: AppReleaseStatus, failure: FailureStatus, now: datetime, generation: int, *, context: str = ""
) -> AppReleaseStatus:
    """``status`` showing the failure: Stalled (phase Degraded) once past its bound, else
    Reconciling with the failure's reason. The message names the failure and when it began,
    then ``context`` (where the rollout is, what it holds)."""
    stalled = is_stalled(failure, now)
    if stalled:
        phase = "Degraded"
        message = f"{failure.reason} since {failure.since}: {failure.message}"
        message += f". {context}" if context else ""
    else:
        phase = status.phase if status.phase not in (None, "Healthy") else "Progressing"
        pending = f"{failure.reason} since {failure.since}; Stalled at {failure.stalled_at} if it lasts"
        message = f"{context} ({pending})" if context else f"{failure.reason} since {failure.since}: {failure.message} ({pending})"
    progressing = not stalled and phase == "Progressing"
    conds = [
        C.condition(C.READY, False, failure.reason, message),
        C.condition(C.RECONCILING, not stalled, failure.reason, "" if stalled else message),
        C.condition(C.STALLED, stalled, failure.reason if stalled else "", message if stalled else ""),
        C.condition(C.PROGRESSING, progressing, failure.reason, message if progressing else ""),
    ]
    replaced = {c.type for c in conds}
    kept = [c for c in status.conditions if c.type not in replaced]
    return status.model_copy(
        update={
            "observed_generation": generation,
            "phase": phase,
            "message": message,
            "failure": failure,
            "conditions": C.merge_conditions(
                status.conditions, conds + kept, now=format_time(now), generation=generation
            ),
        }
    )
