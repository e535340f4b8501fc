"""The rollout planner: (AppRelease, status, observed cluster, now) → next status + actions.

A pure function. It never sleeps and never calls the API; the controller applies what it
returns and asks to be woken at ``requeue_after``. The same inputs always give the same
plan, which is what makes a SIGKILLed operator resume exactly where it was.
"""

from __future__ import annotations

from datetime import datetime

from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, HandledRequests
from ..render import DesiredChildren, TrackPlan
from . import requests
from .canary import CanaryProgress, advance, canary_replicas, crash_looping_pod, weight_at
from .drain import drain_enabled, plan_drain
from .observed import Observed, RevisionRecord
from .outcome import Event, Plan, Rollout
from .revisions import History, differs_only_by_restart
from .status_summary import summarize
from .timefmt import format_time


def plan(app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime) -> Plan:
    now = now.replace(microsecond=0)
    stamp = format_time(now)
    spec = app.spec
    history = History(observed.revisions)
    running = {h for h in (status.stable_revision_hash, status.canary_revision_hash) if h}
    current = history.ensure(spec.revision_template(), stamp, running=running)

    rollout = Rollout(stable=_stable_record(status, observed, history, current), handled=status.handled_requests)
    if spec.strategy.canary is None:
        _direct(rollout, current, status)
    else:
        _canary(rollout, app, status, observed, history, current, now)

    # History bookkeeping: promoted when the stable Deployment runs it fully.
    stable_dep = observed.deployments.get("stable")
    if stable_dep and stable_dep.rolled_out(rollout.stable.hash, spec.replicas):
        history.mark_promoted(rollout.stable.hash, stamp)
    if rollout.aborted and rollout.canary is not None:
        history.mark_aborted(rollout.canary.hash, stamp, rollout.abort_reason or "Aborted")
    keep = {current.hash, rollout.stable.hash} | ({rollout.canary.hash} if rollout.canary else set())
    dropped = history.prune(spec.revision_history_limit, keep)
    # Refresh the records: marks above may have replaced them.
    rollout.stable = history.get(rollout.stable.hash) or rollout.stable
    if rollout.canary is not None:
        rollout.canary = history.get(rollout.canary.hash) or rollout.canary

    drain = plan_drain(
        app, _desired(app, rollout, history), observed, history, status, now,
        promoting_stable=_updating_stable(app, rollout),
    )
    if drain.holding:
        # The hold is what actually stops the rollout; say so next to the step it blocks.
        rollout.waiting_for = f"{rollout.waiting_for}; {drain.holding}" if rollout.waiting_for else drain.holding
    desired = _children(app, rollout, history, drain.tracks)
    new_status = summarize(app, status, observed, rollout, current, stamp, drain)
    # Phase changes are Events, except the very first "Progressing" of a new AppRelease and
    # a change this pass already explains (RolloutStarted, Aborted, ...): one Event per cause.
    if new_status.phase != status.phase and status.phase is not None and not rollout.events:
        degraded = new_status.phase == "Degraded"
        rollout.events.append(
            Event("Warning" if degraded else "Normal", str(new_status.phase), new_status.message)
        )
    wake = (rollout.progress.wake_at if rollout.progress else []) + drain.wake_at
    requeue = max(0.0, (min(wake) - now).total_seconds()) if wake else None
    return Plan(
        status=new_status,
        desired=desired,
        revisions_to_save=tuple(history.changed()),
        revisions_to_delete=tuple(dropped),
        events=tuple(rollout.events),
        requeue_after=requeue,
        registry_actions=tuple(drain.actions),
    )


def _stable_record(
    status: AppReleaseStatus, observed: Observed, history: History, current: RevisionRecord
) -> RevisionRecord:
    """The revision the stable Deployment should run before this pass decides anything."""
    known = history.get(status.stable_revision_hash)
    if known:
        return known
    # Status lost or never written: trust what the stable Deployment runs, else start fresh.
    dep = observed.deployments.get("stable")
    adopted = history.get(dep.revision_hash) if dep else None
    return adopted or current


def _direct(rollout: Rollout, current: RevisionRecord, status: AppReleaseStatus) -> None:
    """rolling / recreate: the Deployment itself rolls to the newest revision."""
    if rollout.stable.hash != current.hash:
        rollout.events.append(
            Event("Normal", "RolloutStarted", f"rolling out revision {current.number} ({current.template.image})")
        )
    rollout.stable = current


def _canary(
    rollout: Rollout,
    app: AppRelease,
    status: AppReleaseStatus,
    observed: Observed,
    history: History,
    current: RevisionRecord,
    now: datetime,
) -> None:
    spec = app.spec
    stamp = format_time(now)
    previous_canary = history.get(status.canary_revision_hash)

    if current.hash == rollout.stable.hash:
        if previous_canary is not None and previous_canary.hash != current.hash:
            rollout.events.append(Event(
                "Normal", "RolledBack",
                f"spec returned to stable revision {current.number}; canary revision"
                f" {previous_canary.number} removed",
            ))
            if not status.aborted:
                history.mark_aborted(previous_canary.hash, stamp, "Superseded")
        return

    if current.promoted or differs_only_by_restart(rollout.stable.template, current.template):
        # Known-good revision (rollback) or a restart: no steps, straight to the stable track.
        reason = "Restarted" if not current.promoted else "RolledBack"
        rollout.events.append(Event(
            "Normal", reason,
            f"revision {current.number} goes to all pods without canary steps",
        ))
        rollout.stable = current
        return

    rollout.canary = current
    pending = requests.pending(app.annotations, status.handled_requests)
    if previous_canary is None or previous_canary.hash != current.hash:
        if previous_canary is not None and not status.aborted:
            history.mark_aborted(previous_canary.hash, stamp, "Superseded")
        rollout.events.append(Event(
            "Normal", "CanaryRestarted" if previous_canary else "CanaryStarted",
            f"canary of revision {current.number} ({current.template.image}) starts at step 1",
        ))
        progress = CanaryProgress(step_index=0, step_start=stamp)
        aborted = False
        rollout.handled = requests.all_handled(app.annotations)
        pending = requests.PendingRequests()
    else:
        progress = CanaryProgress(
            step_index=status.current_step_index or 0,
            step_start=status.step_start_time or stamp,
            pause_start=status.pause_start_time,
            promoting=status.promoting,
            promote_full=status.promote_full,
        )
        aborted = status.aborted
        rollout.abort_reason, rollout.abort_message = status.abort_reason, status.abort_message
    rollout.progress = progress
    handled = rollout.handled.model_dump()

    if pending.abort:
        handled["abort"] = pending.abort
        if not aborted:
            aborted = True
            rollout.abort_reason, rollout.abort_message = "AbortedByUser", "aborted on request"
            rollout.events.append(Event("Warning", "Aborted", f"canary revision {current.number} aborted on request"))
    if pending.retry:
        handled["retry"] = pending.retry
        if aborted:
            aborted = False
            rollout.abort_reason = rollout.abort_message = None
            progress.step_index, progress.step_start, progress.pause_start = 0, stamp, None
            progress.promoting = progress.promote_full = False
            rollout.events.append(Event("Normal", "Retried", f"canary revision {current.number} restarts at step 1"))
    if pending.promote and not aborted:
        handled["promote"] = pending.promote
        if pending.promote_full:
            progress.promote_full = True
            rollout.events.append(Event("Normal", "PromotedFull", "promoting without the remaining steps"))
        elif not progress.promoting and progress.step_index < len(spec.strategy.canary.steps):  # type: ignore[union-attr]
            progress.step_index += 1
            progress.step_start, progress.pause_start = stamp, None
            rollout.events.append(Event("Normal", "Promoted", f"moved on to step {progress.step_index + 1}"))
    rollout.handled = HandledRequests(**handled)

    if not aborted:
        crasher = crash_looping_pod(
            [p for p in observed.pods_of("canary") if p.revision == current.number], spec.strategy.canary.max_restarts)  # type: ignore[union-attr]
        if crasher is not None:
            aborted = True
            rollout.abort_reason = "CrashLoop"
            rollout.abort_message = f"canary pod {crasher.name} restarted {crasher.restarts} times"
        elif not spec.paused:
            before = progress.step_index
            advance(progress, spec, observed, current.hash, now)
            for note in progress.completed:
                rollout.events.append(Event("Normal", "StepCompleted", note))
            if progress.abort_reason:
                aborted = True
                rollout.abort_reason, rollout.abort_message = progress.abort_reason, progress.abort_message
            elif progress.promoting and before != progress.step_index:
                rollout.events.append(Event("Normal", "Promoting", f"revision {current.number} goes to the stable Deployment"))
        if aborted:
            rollout.events.append(Event("Warning", "Aborted", f"canary revision {current.number}: {rollout.abort_message}"))

    rollout.aborted = aborted
    steps = list(spec.strategy.canary.steps)  # type: ignore[union-attr]
    if aborted:
        rollout.set_weight = 0
    elif not steps:
        rollout.set_weight = 100
    else:
        rollout.set_weight = weight_at(steps, min(progress.step_index, len(steps) - 1))
    rollout.canary_replicas = 0 if aborted else canary_replicas(rollout.set_weight, spec.replicas)
    rollout.waiting_for = progress.waiting_for

    if progress.promoting and not aborted:
        if drain_enabled(app):
            # With a registry, old stable instances go offline before their pods are replaced;
            # so the canary first grows to full size and carries the traffic meanwhile.
            rollout.canary_replicas = spec.replicas
            rollout.promotion_phase = status.promotion_phase or "ScaleCanary"
            if rollout.promotion_phase == "ScaleCanary":
                canary_dep = observed.deployments.get("canary")
                registry = observed.registry
                grown = canary_dep is not None and canary_dep.rolled_out(current.hash, spec.replicas)
                if not (grown and (registry is None or registry.gate_open("canary", spec.replicas))):
                    rollout.waiting_for = (
                        "promotion: canary growing to full size before stable instances go offline"
                    )
                    return
                rollout.promotion_phase = "UpdateStable"
        stable_dep = observed.deployments.get("stable")
        if stable_dep and stable_dep.rolled_out(current.hash, spec.replicas):
            registry = observed.registry
            if registry is None or registry.gate_open("stable", spec.replicas):
                history.mark_promoted(current.hash, stamp)
                rollout.events.append(Event("Normal", "PromotionCompleted", f"revision {current.number} is stable"))
                rollout.stable = history.get(current.hash) or current
                rollout.canary = None
                rollout.progress = None
                return
            rollout.waiting_for = "promotion: waiting for stable instances to be registered and healthy"
        else:
            rollout.waiting_for = f"promotion: stable Deployment rolling to revision {current.number}"


def _updating_stable(app: AppRelease, rollout: Rollout) -> bool:
    """The stable Deployment takes the canary's revision (promotion, past its first phase)."""
    promoting = bool(rollout.progress and rollout.progress.promoting and not rollout.aborted)
    if not promoting or rollout.canary is None:
        return False
    return not drain_enabled(app) or rollout.promotion_phase == "UpdateStable"


def _desired(app: AppRelease, rollout: Rollout, history: History) -> list[TrackPlan]:
    spec = app.spec
    stable_source = rollout.canary if _updating_stable(app, rollout) and rollout.canary else rollout.stable
    tracks = [
        TrackPlan(
            track="stable",
            revision=stable_source.number,
            revision_hash=stable_source.hash,
            template=stable_source.template,
            replicas=spec.replicas,
            paused=spec.paused,
        )
    ]
    if rollout.canary is not None:
        tracks.append(
            TrackPlan(
                track="canary",
                revision=rollout.canary.number,
                revision_hash=rollout.canary.hash,
                template=rollout.canary.template,
                replicas=rollout.canary_replicas,
            )
        )
    return tracks


def _children(app: AppRelease, rollout: Rollout, history: History, tracks: list[TrackPlan]) -> DesiredChildren:
    canary = app.spec.strategy.canary
    nginx = canary is not None and canary.traffic_routing == "nginx"
    has_canary = any(t.track == "canary" for t in tracks)
    weight = (rollout.set_weight or 0) if nginx and has_canary else None
    retained = tuple(r.template.config for r in history.records() if r.template.config is not None)
    return DesiredChildren(tracks=tuple(tracks), retained_configs=retained, nginx_canary_weight=weight)
