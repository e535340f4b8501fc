"""Turn one pass's decisions into the status a person (and kstatus tooling) reads.

Messages name what is happening and what to do next, and contain no relative times
("30s left"), so recomputing an unchanged state yields an identical status: no write.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, Condition, Phase, RegistrationStatus, TrackStatus
from ..render import labels
from . import conditions as C
from .drain import DrainOutcome
from .observed import DeploymentState, Observed, RevisionRecord
from .outcome import Decision
from .state import Aborted, status_fields


def _track(dep: DeploymentState | None, planned: RevisionRecord, observed: Observed) -> TrackStatus:
    if dep is None:
        return TrackStatus(revision=planned.number)
    # What the Deployment runs, which differs from the plan while a change is held back.
    revision = planned.number
    if dep.revision_hash != planned.hash:
        revision = next((r.number for r in observed.revisions if r.hash == dep.revision_hash), revision)
    return TrackStatus(
        revision=revision,
        replicas=dep.status_replicas,
        ready_replicas=dep.ready_replicas,
        updated_replicas=dep.updated_replicas,
        available_replicas=dep.available_replicas,
    )


def _actual_weight(app: AppRelease, decision: Decision, stable: TrackStatus, canary: TrackStatus) -> int:
    if decision.candidate is None:
        return 100
    if app.spec.strategy.blue_green is not None:
        return decision.set_weight or 0  # all or nothing: the active Service's selector
    canary_strategy = app.spec.strategy.canary
    if canary_strategy is not None and canary_strategy.traffic_routing in ("nginx", "gatewayAPI", "nacos"):
        return decision.routed_weight  # what the router is told: no share before pods are ready
    total = stable.ready_replicas + canary.ready_replicas
    return round(100 * canary.ready_replicas / total) if total else 0


def _step_column(index: int | None, steps: int) -> str:
    """The step being worked on, 1-based like the messages ("step 2/4"); n/n when done."""
    if index is None or steps == 0:
        return f"{steps}/{steps}"
    return f"{min(index + 1, steps)}/{steps}"


def _phase(app: AppRelease, decision: Decision, observed: Observed, waiting_for: str) -> tuple[Phase, str, str]:
    """(phase, reason, message)."""
    spec = app.spec
    stable = decision.stable
    candidate = decision.candidate
    dep = observed.deployments.get("stable")
    state = decision.state
    if spec.taken_down:
        if not observed.pods:
            return ("TakenDown", "TakenDown",
                    f"taken down: no pods ({spec.replicas} replicas come back with"
                    f" `apprelease bring-up {app.name}`)")
        return ("Progressing", "TakingDown",
                f"taking down: {waiting_for or f'{len(observed.pods)} pod(s) stopping'}")
    kind = "preview" if spec.strategy.blue_green is not None else "canary"
    if isinstance(state, Aborted) and candidate is not None:
        return (
            "Degraded",
            state.reason,
            f"{kind} revision {candidate.number} aborted ({state.reason}):"
            f" {state.message}; traffic is on stable revision {stable.number}."
            f" Fix the spec, `apprelease retry {app.name}` or `apprelease rollback {app.name}`",
        )
    rolled_out = dep is not None and dep.rolled_out(stable.hash, spec.replicas)
    if candidate is None and dep is not None and dep.deadline_exceeded and not rolled_out:
        return (
            "Degraded",
            "ProgressDeadlineExceeded",
            f"revision {stable.number} did not become available within"
            f" progressDeadlineSeconds ({spec.progress_deadline_seconds}s)",
        )
    if spec.paused:
        return "Paused", "PausedBySpec", f"paused by spec.paused; `apprelease resume {app.name}` continues"
    if candidate is not None:
        waiting = waiting_for or f"{kind} of revision {candidate.number} in progress"
        if kind == "preview":
            if waiting.startswith("paused at"):
                reason = "AnalysisInconclusive" if "analysis inconclusive" in waiting.lower() else "PreviewReady"
                return "Paused", reason, f"blue-green: {waiting}"
            return "Progressing", "BlueGreenInProgress", f"blue-green revision {candidate.number}: {waiting}"
        if waiting.startswith("paused at"):
            reason = "AnalysisInconclusive" if "analysis inconclusive" in waiting.lower() else "CanaryPauseStep"
            return "Paused", reason, f"canary revision {candidate.number} {waiting}"
        return "Progressing", "CanaryInProgress", f"canary revision {candidate.number}: {waiting}"
    if rolled_out:
        return (
            "Healthy",
            "Available",
            f"revision {stable.number} ({stable.template.image}) available:"
            f" {spec.replicas}/{spec.replicas} ready",
        )
    if waiting_for:  # e.g. instances going offline before pods leave
        return "Progressing", "RollingOut", f"revision {stable.number}: {waiting_for}"
    updated = dep.updated_replicas if dep else 0
    ready = dep.ready_replicas if dep else 0
    return (
        "Progressing",
        "RollingOut",
        f"rolling out revision {stable.number}: {updated}/{spec.replicas} updated,"
        f" {ready}/{spec.replicas} ready",
    )


def summarize(
    app: AppRelease,
    previous: AppReleaseStatus,
    observed: Observed,
    decision: Decision,
    current: RevisionRecord,
    now: str,
    drain: DrainOutcome | None = None,
    waiting_for: str = "",
    *,
    warming: set[str] | frozenset[str] = frozenset(),
) -> AppReleaseStatus:
    spec = app.spec
    canary_spec = spec.strategy.canary
    blue_green = spec.strategy.blue_green is not None
    candidate = decision.candidate
    stable = _track(observed.deployments.get("stable"), decision.stable, observed)
    canary = (
        _track(observed.deployments.get(decision.candidate_track), candidate, observed)
        if candidate is not None
        else TrackStatus()
    )
    phase, reason, message = _phase(app, decision, observed, waiting_for)
    steps = len(canary_spec.steps) if canary_spec else 0
    state = status_fields(decision.state, running=spec.strategy.kind)
    if state["current_step_index"] is None and canary_spec:
        state["current_step_index"] = steps  # a finished (or no) canary: n/n
    step_index = state["current_step_index"]
    desired_pods = spec.replicas + (decision.candidate_replicas if candidate else 0)

    conds = [
        C.condition(C.READY, phase in ("Healthy", "TakenDown"), reason, message),
        C.condition(C.RECONCILING, phase in ("Progressing", "Paused"), reason,
                    message if phase in ("Progressing", "Paused") else ""),
        C.condition(C.STALLED, phase == "Degraded", reason if phase == "Degraded" else "",
                    message if phase == "Degraded" else ""),
        C.condition(C.PROGRESSING, phase == "Progressing", reason,
                    message if phase == "Progressing" else ""),
        C.condition(C.PAUSED, phase == "Paused", reason if phase == "Paused" else "",
                    message if phase == "Paused" else ""),
    ]
    registration = observed.registration
    if registration is not None:
        conds.append(registration.condition)
    autoscaling = _autoscaling(app, observed)
    if autoscaling is not None:
        conds.append(autoscaling)
    # Our own types are recomputed each pass; stale ones go when what they describe does.
    ours = {x.type for x in conds} | {C.REGISTERED, C.AUTOSCALING}
    kept = [c for c in previous.conditions if c.type not in ours]
    # What an HPA counts (the scale subresource's selector and replicas): the pods spec.replicas
    # sizes, those of the stable Deployment. A canary runs beside them, so counting it too would
    # have the HPA add the canary's size on top. Blue-green after the switch: the active revision.
    selector_labels = labels.track_selector_labels(app.name, "stable")
    serving = stable.replicas
    if decision.active_revision is not None:
        selector_labels = {**labels.selector_labels(app.name), labels.REVISION: str(decision.active_revision)}
        serving = len([p for p in observed.pods if not p.deleting and p.revision == decision.active_revision])
    selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels.items()))
    if app.spec.adopt is not None and decision.active_revision is None:
        # Adopted pods carry only the adopted selector's labels; canary pods carry them too.
        adopted = ",".join(f"{k}={v}" for k, v in sorted(app.spec.adopt.selector.items()))
        selector = f"{adopted},{labels.TRACK} notin (canary,preview)"

    return AppReleaseStatus(
        observed_generation=app.generation,
        phase=phase,
        message=message,
        strategy=spec.strategy.kind,
        replicas=serving,
        ready_replicas=stable.ready_replicas + canary.ready_replicas,
        updated_replicas=stable.updated_replicas + canary.updated_replicas,
        available_replicas=stable.available_replicas + canary.available_replicas,
        selector=selector,
        ready=f"{stable.ready_replicas + canary.ready_replicas}/{desired_pods}",
        current_revision=current.number,
        current_revision_hash=current.hash,
        stable_revision=decision.stable.number,
        stable_revision_hash=decision.stable.hash,
        canary_revision=candidate.number if candidate else None,
        canary_revision_hash=candidate.hash if candidate else None,
        step_count=steps,
        step=_step_column(step_index, steps) if canary_spec else "",
        set_weight=decision.set_weight if candidate else (100 if canary_spec or blue_green else None),
        actual_weight=_actual_weight(app, decision, stable, canary) if canary_spec or blue_green else None,
        **state,
        stable=stable,
        canary=canary,
        handled_requests=decision.handled,
        registration=_with_warming(registration.status, warming) if registration else None,
        draining=drain.draining if drain else [],
        offline_pods=drain.offline_pods if drain else [],
        conditions=C.merge_conditions(
            previous.conditions, kept + conds, now=now, generation=app.generation
        ),
    )


def _autoscaling(app: AppRelease, observed: Observed) -> Condition | None:
    """Which HPA chooses the replicas, or what to change when one targets our Deployment."""
    wrong = [h for h in observed.hpas if h.target_kind == "Deployment"]
    if wrong:
        hpa = wrong[0]
        return C.condition(
            C.AUTOSCALING, False, "HPATargetsDeployment",
            f"HPA {hpa.name} scales Deployment {hpa.target_name}, whose replicas this AppRelease"
            f" sets: change its scaleTargetRef to apiVersion apprelease.io/v1alpha1, kind"
            f" AppRelease, name {app.name}",
        )
    right = [h for h in observed.hpas if h.target_kind == "AppRelease"]
    if not right:
        return None
    hpa = right[0]
    bounds = f"{hpa.min_replicas if hpa.min_replicas is not None else 1}-{hpa.max_replicas}"
    return C.condition(C.AUTOSCALING, True, "HPA",
                       f"replicas chosen by HPA {hpa.name} ({bounds}): now {app.spec.replicas}")


def _with_warming(status: RegistrationStatus, warming: set[str] | frozenset[str]) -> RegistrationStatus:
    if not warming:
        return status
    rows = [r.model_copy(update={"warming": True}) if r.pod in warming else r for r in status.instances]
    return status.model_copy(update={"instances": rows})


# Counts and the prose that carries them change with every pod; the rest is state. The
# registration block and its Registered condition are observations too: a pod turns Ready a
# moment before the registry (EndpointSlice, Nacos) lists it, so every rollout flips
# Registered False and back within milliseconds. Held like counts, the flip is never written;
# a lasting change is, one coalescing period later.
_FLUID = {"replicas", "readyReplicas", "updatedReplicas", "availableReplicas", "ready",
          "message", "stable", "canary", "actualWeight", "conditions", "registration"}


def material_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Does the status change more than counts and messages (a phase, step, revision,
    request, condition status...)? Count-only changes may be coalesced; these may not."""
    if {k: v for k, v in old.items() if k not in _FLUID} != {k: v for k, v in new.items() if k not in _FLUID}:
        return True

    def gist(status: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (c.get("type"), c.get("status"), c.get("reason"))
            for c in status.get("conditions") or []
            if c.get("type") != C.REGISTERED
        ]

    return gist(old) != gist(new)
