"""The rollout planner: (AppRelease, status, observed cluster, now) → next status + actions.

A pure function. It never sleeps and never calls the API; the controller applies what it
returns and asks to be woken at ``requeue_after``. The same inputs always give the same
plan, which is what makes a SIGKILLed operator resume exactly where it was.

One pass: the history knows the spec's revision; the state is read from status.rollout (a
strategy change first finishes or abandons the old strategy's state: strategy_change.py); the
strategy's transition function decides the next state (rollout/canary.py, direct.py); the
history is marked and pruned; graceful offline may hold what would remove registered pods
(drain.py); failures that block progress get their bound (failures.py); status is summarised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, FailureStatus
from ..domain import Track
from ..render import DesiredChildren, TrackPlan
from . import bluegreen, canary, direct, requests
from . import conditions as C
from . import failures as F
from .drain import DrainOutcome, drain_enabled, plan_drain
from .instances import plan_instances
from .nacos_config import CONFIG_DRIFT, CONFIG_PUBLISHED, ConfigOutcome, plan_config
from .observed import Observed, RevisionRecord
from .outcome import Decision, Event, Inputs, Plan
from .revisions import History
from .state import Aborted, RolloutState, Steady, in_progress, stored
from .status_summary import summarize
from .strategy_change import carry_over
from .timefmt import format_time

Transition = Callable[[RolloutState, Inputs], Decision]
STRATEGIES: dict[str, Transition] = {
    "rolling": direct.transition,
    "recreate": direct.transition,
    "canary": canary.transition,
    "blueGreen": bluegreen.transition,
}


def plan(app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime) -> Plan:
    now = now.replace(microsecond=0)
    stamp = format_time(now)
    spec = app.spec
    history = History(observed.revisions)
    deployed = {dep.revision_hash for dep in observed.deployments.values() if dep.revision_hash}
    running = deployed | {h for h in (status.stable_revision_hash, status.canary_revision_hash) if h}
    current = history.ensure(spec.revision_template(), stamp, running=running)

    stable = _stable_record(status, observed, history, current)
    inputs = Inputs(
        app=app, observed=observed, now=now, stable=stable or current, current=current,
        candidate=history.get(status.canary_revision_hash), handled=status.handled_requests,
        registry_drain=drain_enabled(app), analysis=status.analysis,
    )
    untouched: tuple[Track, ...] = ()
    if stable is None and spec.strategy.kind not in ("rolling", "recreate"):
        decision, untouched = _stable_missing(inputs)
    else:
        carried = carry_over(stored(status), inputs)
        decision = carried.finished or STRATEGIES[spec.strategy.kind](carried.state, carried.inputs)
        if carried.event is not None and carried.finished is None:
            decision = replace(decision, events=(carried.event, *decision.events))

    _mark_history(history, decision, observed, app, stamp)
    keep = {current.hash, decision.stable.hash, *deployed, *_pod_revisions(observed, history)}
    keep |= {decision.candidate.hash} if decision.candidate else set()
    dropped = history.prune(spec.revision_history_limit, keep)
    decision = _refreshed(decision, history)

    # A revision whose Nacos config copies are not published yet gets no pods (held here, before
    # the drain plans what the new templates would take offline).
    config = plan_config(app, status.config, observed, history.records(), _desired(app, decision, untouched),
                         decision.stable, now, stamp)
    drain = plan_drain(
        app, config.tracks, observed, history, status, now,
        promoting_stable=decision.updating_stable,
    )
    instances = plan_instances(app, observed, decision, drain, now)
    waiting_for = decision.waiting_for
    if config.waiting_for:
        waiting_for = f"{waiting_for}; {config.waiting_for}" if waiting_for else config.waiting_for
    if drain.holding:
        # The hold is what actually stops the rollout; say so next to the step it blocks.
        waiting_for = f"{waiting_for}; {drain.holding}" if waiting_for else drain.holding
    desired = _children(app, decision, history, drain.tracks, untouched)
    new_status = summarize(app, status, observed, decision, current, stamp, drain, waiting_for,
                           warming=instances.warming)
    new_status = _with_config(new_status, status, config, stamp, app.generation)
    if new_status.analysis != decision.analysis:
        new_status = new_status.model_copy(update={"analysis": decision.analysis})
    failure = _config_failure(app, status.failure, config, now) or _failure(
        app, status.failure, observed, decision, drain, new_status, now, missing=stable is None and bool(untouched))
    if failure is not None:
        new_status = F.with_failure(new_status, failure, now, app.generation, context=new_status.message)

    events = list(decision.events) + config.events
    # Phase changes are Events, except the very first "Progressing" of a new AppRelease and
    # a change this pass already explains (RolloutStarted, Aborted, ...): one Event per cause.
    if new_status.phase != status.phase and status.phase is not None and not events and failure is None:
        degraded = new_status.phase == "Degraded"
        events.append(Event("Warning" if degraded else "Normal", str(new_status.phase), new_status.message))
    if failure is not None and (status.failure is None or status.failure.reason != failure.reason):
        events.append(Event("Warning", failure.reason, failure.message))
    autoscaling = new_status.condition(C.AUTOSCALING)
    before = status.condition(C.AUTOSCALING)
    if autoscaling is not None and autoscaling.status == "False" and (before is None or before.reason != autoscaling.reason):
        events.append(Event("Warning", autoscaling.reason, autoscaling.message))
    wake = [*decision.wake_at, *drain.wake_at, *instances.wake_at, *config.wake_at]
    if failure is not None and (until := F.seconds_until_stalled(failure, now)) is not None:
        wake.append(now + timedelta(seconds=until))
    requeue = max(0.0, (min(wake) - now).total_seconds()) if wake else None
    return Plan(
        status=new_status,
        desired=desired,
        revisions_to_save=tuple(history.changed()),
        revisions_to_delete=tuple(dropped),
        events=tuple(events),
        requeue_after=requeue,
        registry_actions=(*drain.actions, *instances.writes),
        pod_gates=tuple(instances.gates),
        registry_busy=_registry_busy(observed),
        config_actions=tuple(config.actions),
        measurements=decision.measurements,
    )


def _with_config(new: AppReleaseStatus, previous: AppReleaseStatus, config: ConfigOutcome, stamp: str,
                 generation: int) -> AppReleaseStatus:
    """The config block and its conditions (gone with the config that had them)."""
    others = [c for c in new.conditions if c.type not in (CONFIG_PUBLISHED, CONFIG_DRIFT)]
    conditions = C.merge_conditions(previous.conditions, others + config.conditions, now=stamp, generation=generation)
    return new.model_copy(update={"config": config.status, "conditions": conditions})


def _config_failure(app: AppRelease, previous: FailureStatus | None, config: ConfigOutcome,
                    now: datetime) -> FailureStatus | None:
    if config.failure is None:
        return None
    cls, detail = config.failure
    bound = timedelta(seconds=app.spec.progress_deadline_seconds) if cls.transient else None
    return F.record(previous, cls, detail, now, bound=bound)


def _registry_busy(observed: Observed) -> bool:
    """Pods are joining or leaving: their registration is worth reading often."""
    return any(p.deleting or p.gate is None or p.gate.reason in ("Waiting", "Registered", "Offline")
               for p in observed.pods if p.ip)


def _stable_record(
    status: AppReleaseStatus, observed: Observed, history: History, current: RevisionRecord
) -> RevisionRecord | None:
    """The revision the stable Deployment should run before this pass decides anything; None
    when it runs a revision whose record is gone (then no canary may start blindly)."""
    known = history.get(status.stable_revision_hash)
    if known:
        return known
    dep = observed.deployments.get("stable")
    if dep is None or dep.revision_hash is None:
        return current  # nothing runs yet: the first revision goes straight to stable
    # Status lost or never written: trust what the stable Deployment runs.
    return history.get(dep.revision_hash)


def _stable_missing(inputs: Inputs) -> tuple[Decision, tuple[Track, ...]]:
    """The stable Deployment runs a revision we have no record of: it is left exactly as it
    is, and no canary starts, until the user says `promote --full` (the new revision goes to
    the stable Deployment at once) or restores the history."""
    pending = inputs.pending
    if pending.promote_full:
        handled = inputs.handled.model_copy(update={"promote": pending.promote})
        event = Event("Normal", "PromotedFull", f"revision {inputs.current.number} replaces the unrecorded stable revision")
        return Decision(state=Steady(), stable=inputs.current, events=(event,), handled=handled), ()
    handled = requests.all_handled(inputs.app.annotations) if inputs.candidate is None else inputs.handled
    return Decision(state=Steady(), stable=inputs.current, handled=handled,
                    waiting_for="the stable Deployment's revision has no history"), ("stable",)


def _mark_history(history: History, decision: Decision, observed: Observed, app: AppRelease, stamp: str) -> None:
    if decision.promoted:
        history.mark_promoted(decision.promoted, stamp)
    for digest, reason in decision.superseded:
        history.mark_aborted(digest, stamp, reason)
    if decision.candidate is not None and isinstance(decision.state, Aborted):
        history.mark_aborted(decision.candidate.hash, stamp, decision.state.reason)
    # Known good when the stable Deployment runs it fully, with at least one pod ready.
    stable_dep = observed.deployments.get("stable")
    replicas = app.spec.replicas
    if stable_dep and replicas > 0 and stable_dep.rolled_out(decision.stable.hash, replicas):
        history.mark_promoted(decision.stable.hash, stamp)


def _pod_revisions(observed: Observed, history: History) -> set[str]:
    """Revisions some live pod still runs: their config must outlive them (limit 0 too)."""
    numbers = {p.revision for p in observed.pods if p.revision is not None}
    return {r.hash for r in history.records() if r.number in numbers}


def _refreshed(decision: Decision, history: History) -> Decision:
    """The decision with records replaced by their marked versions."""

    def fresh(record: RevisionRecord | None) -> RevisionRecord | None:
        return history.get(record.hash) or record if record is not None else None

    return replace(
        decision,
        stable=fresh(decision.stable) or decision.stable,
        candidate=fresh(decision.candidate),
        stable_track=fresh(decision.stable_track),
    )


def _desired(app: AppRelease, decision: Decision, untouched: tuple[Track, ...]) -> list[TrackPlan]:
    spec = app.spec
    down = spec.taken_down  # every instance offline and drained first (drain.py), then no pods
    tracks = []
    if "stable" not in untouched:
        source = decision.runs_on_stable
        tracks.append(TrackPlan(
            track="stable", revision=source.number, revision_hash=source.hash,
            template=source.template, replicas=0 if down else spec.replicas, paused=spec.paused,
        ))
    if decision.candidate is not None:
        tracks.append(TrackPlan(
            track=decision.candidate_track, revision=decision.candidate.number, revision_hash=decision.candidate.hash,
            template=decision.candidate.template, replicas=0 if down else decision.candidate_replicas,
        ))
    return tracks


def _children(
    app: AppRelease, decision: Decision, history: History, tracks: list[TrackPlan], untouched: tuple[Track, ...]
) -> DesiredChildren:
    canary_spec = app.spec.strategy.canary
    routing = canary_spec.traffic_routing if canary_spec is not None else None
    has_canary = any(t.track == "canary" for t in tracks)
    # What the routers carry: the step's weight as far as ready canary pods can take it.
    weight = decision.routed_weight if has_canary else 0
    retained = tuple(r.template.config for r in history.records() if r.template.config is not None)
    preview = next((t for t in tracks if t.track == "preview"), None)
    return DesiredChildren(
        tracks=tuple(tracks), retained_configs=retained,
        nginx_canary_weight=weight if routing == "nginx" and has_canary else None,
        canary_weight=weight,
        canary_serving=has_canary and decision.canary_serving,
        untouched_tracks=untouched,
        active_revision=decision.active_revision if app.spec.strategy.blue_green else None,
        preview_revision=preview.revision if preview is not None else None,
    )


def _failure(
    app: AppRelease,
    previous: FailureStatus | None,
    observed: Observed,
    decision: Decision,
    drain: DrainOutcome,
    status: AppReleaseStatus,
    now: datetime,
    *,
    missing: bool,
) -> FailureStatus | None:
    """What blocks progress, if anything, with its bound (see failures.py)."""
    if missing:
        return F.record(previous, F.STABLE_REVISION_MISSING,
                        "the stable Deployment runs a revision whose ControllerRevision is gone", now)
    if decision.analysis_problem is not None:
        problem = decision.analysis_problem
        cls = F.POLICY_VIOLATION if problem.reason == "PolicyViolation" else F.ANALYSIS_INVALID
        return F.record(previous, cls, problem.message, now)
    for dep in observed.deployments.values():
        if dep.replica_failure:
            return F.record(previous, F.POD_CREATION_FAILED,
                            f"{dep.track} pods cannot be created: {dep.replica_failure}", now)
    registry = observed.registry
    if registry is None:
        return None
    blocked = in_progress(decision.state) or bool(drain.holding) or status.phase not in ("Healthy", None)
    progress_bound = timedelta(seconds=app.spec.progress_deadline_seconds)
    if not registry.reachable and registry.failure_reason in F.REGISTRY_CLASSES:
        cls = F.REGISTRY_CLASSES[registry.failure_reason]
        if cls.transient and not blocked:
            return None  # nothing waits on the registry now: Registered=Unknown says enough
        detail = f"registry unreachable: {registry.error}" if cls is F.REGISTRY_UNAVAILABLE else f"{registry.error}"
        return F.record(previous, cls, detail, now, bound=progress_bound if cls.transient else None)
    if registry.reachable and registry.write_error and (blocked or registry.write_error_reason != "RegistryWriteFailed"):
        cls = F.REGISTRY_CLASSES.get(registry.write_error_reason or "", F.REGISTRY_WRITE_FAILED)
        return F.record(previous, cls, f"registry write failed: {registry.write_error}", now,
                        bound=progress_bound if cls.transient else None)
    return None
