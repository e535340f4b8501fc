"""The canary strategy: one pure transition from a rollout state to the next.

    Steady ──new revision──► Stepping(0) ──steps done / promote --full──► Promoting ──► Steady
                  ▲              │  ▲                                         │
                  │       abort, deadline, gate timeout, crash loop ──► Aborted ◄──┘
                  └──────────── spec back on stable ◄───── retry ──────────┘

Time is an argument; deadlines are absolute times kept in status, so a pause or a progress
deadline survives operator restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..api.analysis import AnalysisStatus
from ..api.base import duration_text
from ..api.status import HandledRequests
from ..api.strategy import CanaryStep
from . import requests
from .analysis import MeasurementRequest, Problem
from .analysis_step import Verdict, carried, run_background, run_step, with_run
from .observed import PodState, RevisionRecord
from .outcome import Decision, Event, Inputs
from .revisions import differs_only_by_restart
from .state import Aborted, Promoting, RolloutState, Steady, Stepping
from .timefmt import format_time, parse_time_or

# Registry failures that will not heal by themselves: the gate counts against gateTimeout.

# The message while canary pods wait for the registry's gate (a notification is derived from it).
GATE_WAITING = "waiting for canary instances to be registered and healthy"


def canary_replicas(weight: int, replicas: int) -> int:
    """Pods for a weight: rounded up, so any weight above 0 gets at least one pod.

    3 replicas at 20% → 1 canary pod (0.6 rounds up). Stable stays at full size, so the
    traffic share of that pod is 1/(3+1) = 25%: status.actualWeight reports that.
    """
    if weight <= 0 or replicas <= 0:
        return 0
    return min(replicas, math.ceil(weight * replicas / 100))


def routed_weight(weight: int, replicas: int, ready: int) -> int:
    """The share a router may send the canary when ``ready`` of its pods are ready: no share
    to what cannot serve. The step's weight was meant for ``canary_replicas`` pods; fewer ready
    pods get proportionally less, so none carries more than the step meant for it (60 % of 5
    replicas is 3 pods at 20 % each: 1 ready pod → 20 %). Rounded down; 0 with none ready.
    Argo Rollouts likewise routes nothing to a canary ReplicaSet without available pods and
    keeps the previous step's weight until the step's pods are available."""
    want = canary_replicas(weight, replicas)
    if want == 0 or ready <= 0:
        return 0
    return weight * min(ready, want) // want


def weight_at(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at step ``index``: the last setWeight at or before it."""
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def crash_looping_pod(pods: list[PodState], max_restarts: int) -> PodState | None:
    return next((p for p in pods if p.restarts > max_restarts), None)


@dataclass
class _Pass:
    """What this pass says besides the state: events, wake-ups, why it waits."""

    events: list[Event] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    waiting_for: str = ""
    superseded: list[tuple[str, str]] = field(default_factory=list)
    analysis: AnalysisStatus | None = None
    measurements: list[MeasurementRequest] = field(default_factory=list)
    analysis_problem: Problem | None = None
    attempt: str = ""  # the handled retry request: a retried analysis is a new run
    promoted: str = ""  # the promote request handled this pass

    def record(self, verdict: Verdict) -> None:
        self.measurements += verdict.outcome.requests
        self.events += [verdict.event] if verdict.event is not None else []
        self.wake_at += [verdict.outcome.wake_at] if verdict.outcome.wake_at is not None else []
        if verdict.outcome.problem is not None:
            self.analysis_problem = verdict.outcome.problem
        if verdict.phase in ("Running", "Blocked", "Inconclusive") and not self.waiting_for:
            self.waiting_for = verdict.waiting_for


def transition(state: RolloutState, inp: Inputs) -> Decision:
    if inp.current.hash == inp.stable.hash:
        return _back_on_stable(state, inp)
    if inp.current.promoted or differs_only_by_restart(inp.stable.template, inp.current.template):
        return _straight_to_stable(inp)
    log = _Pass(analysis=carried(inp))
    candidate = inp.current
    state, handled, pending = _begin(state, inp, log)
    state, handled = _requests(state, pending, handled, inp, log)
    log.attempt = handled.retry or ""
    log.promoted = pending.promote if pending.promote and handled.promote == pending.promote else ""
    state = _progress(state, inp, log)
    if isinstance(state, Promoting):
        return _routed(_promote(state, inp, handled, log), inp)
    weight = _weight(state, inp)
    return _routed(Decision(
        state=state,
        stable=inp.stable,
        candidate=candidate,
        candidate_replicas=0 if isinstance(state, Aborted) else canary_replicas(weight, inp.app.spec.replicas),
        set_weight=weight,
        events=tuple(log.events),
        handled=handled,
        waiting_for=log.waiting_for,
        wake_at=tuple(log.wake_at),
        superseded=tuple(log.superseded),
        analysis=log.analysis,
        measurements=tuple(log.measurements),
        analysis_problem=log.analysis_problem,
    ), inp)


def _routed(decision: Decision, inp: Inputs) -> Decision:
    """What routers may send the canary this pass: weight follows readiness (the registry
    gate's rule), so no share and no header match reach a canary Service without ready
    endpoints, while its pods start or for good when they never become ready."""
    candidate = decision.candidate
    if candidate is None or isinstance(decision.state, Aborted):
        return decision
    ready = sum(1 for p in inp.observed.pods_of("canary") if p.revision == candidate.number and p.ready)
    weight = routed_weight(decision.set_weight or 0, inp.app.spec.replicas, ready)
    return replace(decision, routed_weight=weight, canary_serving=ready > 0)


def _back_on_stable(state: RolloutState, inp: Inputs) -> Decision:
    """The spec describes the stable revision again: any canary goes (a rollback). During a
    promotion the stable Deployment may run (part of) the canary's revision already, and with
    a registry its old instances are offline: the rollback goes the way a promotion does, the
    canary serving on until the stable Deployment is back at full ready size on the stable
    revision, and only then is the canary drained and removed."""
    log = _Pass()
    previous = inp.candidate
    if previous is not None and previous.hash != inp.current.hash and isinstance(state, Promoting):
        waiting = _stable_side_back(state, inp, previous)
        if waiting is not None:
            return waiting
    if previous is not None and previous.hash != inp.current.hash:
        log.events.append(Event(
            "Normal", "RolledBack",
            f"spec returned to stable revision {inp.current.number}; canary revision"
            f" {previous.number} removed",
        ))
        log.superseded.append((previous.hash, "Superseded"))
    return Decision(state=Steady(), stable=inp.stable, events=tuple(log.events),
                    handled=inp.handled, superseded=tuple(log.superseded))


def _stable_side_back(state: Promoting, inp: Inputs, serving: RevisionRecord) -> Decision | None:
    """Rolling back mid-promotion: the canary (at its promotion size) while the stable
    Deployment is not yet back on the stable revision at full ready size (and registered),
    or None when the canary may go."""
    spec = inp.app.spec
    stable = inp.stable
    dep = inp.observed.deployments.get("stable")
    registry = inp.observed.registry
    if dep is not None and dep.rolled_out(stable.hash, spec.replicas) and (
            registry is None or registry.gate_open("stable", spec.replicas)):
        return None
    return _routed(Decision(
        state=state, stable=stable, candidate=serving, candidate_replicas=_promotion_canary_replicas(state, inp),
        set_weight=_weight(state, inp), handled=inp.handled,
        waiting_for=(f"rolling back to revision {stable.number}: waiting for its {spec.replicas} pod(s) to be"
                     f" ready; canary revision {serving.number} serves meanwhile"),
    ), inp)


def _straight_to_stable(inp: Inputs) -> Decision:
    """A revision known to be good (it was promoted before), or a restart: no steps."""
    reason = "Restarted" if not inp.current.promoted else "RolledBack"
    event = Event("Normal", reason, f"revision {inp.current.number} goes to all pods without canary steps")
    return Decision(state=Steady(), stable=inp.current, events=(event,), handled=inp.handled)


def _begin(
    state: RolloutState, inp: Inputs, log: _Pass
) -> tuple[RolloutState, HandledRequests, requests.PendingRequests]:
    """A new canary starts at step 1 (requests made before it are ignored); else carry on."""
    previous = inp.candidate
    if previous is not None and previous.hash == inp.current.hash and not isinstance(state, Steady):
        return state, inp.handled, inp.pending
    if previous is not None and not isinstance(state, Aborted):
        log.superseded.append((previous.hash, "Superseded"))
    log.events.append(Event(
        "Normal", "CanaryRestarted" if previous else "CanaryStarted",
        f"canary of revision {inp.current.number} ({inp.current.template.image}) starts at step 1",
    ))
    return Stepping(0, inp.stamp), requests.all_handled(inp.app.annotations), requests.PendingRequests()


def _requests(
    state: RolloutState, pending: requests.PendingRequests, handled: HandledRequests, inp: Inputs, log: _Pass
) -> tuple[RolloutState, HandledRequests]:
    """abort, retry and promote (step or full), each handled once."""
    number = inp.current.number
    if pending.abort:
        handled = handled.model_copy(update={"abort": pending.abort})
        if not isinstance(state, Aborted):
            step, start = _position(state)
            state = Aborted(step, start, "AbortedByUser", "aborted on request")
            log.events.append(Event("Warning", "Aborted", f"canary revision {number} aborted on request"))
    if pending.retry:
        handled = handled.model_copy(update={"retry": pending.retry})
        if isinstance(state, Aborted):
            state = Stepping(0, inp.stamp)
            log.events.append(Event("Normal", "Retried", f"canary revision {number} restarts at step 1"))
    if pending.promote and inp.app.spec.taken_down and not isinstance(state, Aborted):
        # Nothing runs to observe at this step, and a promote kept for later would skip it
        # at bring-up before its new pods were seen: refused, and said so.
        handled = handled.model_copy(update={"promote": pending.promote})
        step, _ = _position(state)
        name = inp.app.name
        log.events.append(Event(
            "Warning", "PromoteRefused",
            f"promote refused: {name} is taken down (spec.takenDown), so canary revision {number}"
            f" stays at step {step + 1}; `apprelease bring-up {name}` resumes it there, then promote again",
        ))
    elif pending.promote and not isinstance(state, Aborted):
        handled = handled.model_copy(update={"promote": pending.promote})
        step, start = _position(state)
        if pending.promote_full:
            if not isinstance(state, Promoting):
                state = Promoting(step, start, full=True)
            log.events.append(Event("Normal", "PromotedFull", "promoting without the remaining steps"))
        elif isinstance(state, Stepping) and state.step < len(_steps(inp)):
            state = Stepping(state.step + 1, inp.stamp)
            log.events.append(Event("Normal", "Promoted", f"moved on to step {state.step + 1}"))
    return state, handled


def _progress(state: RolloutState, inp: Inputs, log: _Pass) -> RolloutState:
    """What the cluster allows: abort a crash-looping canary, else walk the steps."""
    if not isinstance(state, Stepping | Promoting):
        return state
    spec = inp.app.spec
    if spec.taken_down:
        # No pods, nothing to observe: the step waits, and its clocks (progress deadline,
        # pause) are stopped, to start again at bring-up (its pods start anew).
        return replace(state, step_start="", pause_start=None) if isinstance(state, Stepping) else state
    if isinstance(state, Stepping) and not state.step_start:
        state = replace(state, step_start=inp.stamp)  # brought up again: the clocks start now
    current = inp.current
    canary_pods = [p for p in inp.observed.pods_of("canary") if p.revision == current.number]
    crasher = crash_looping_pod(canary_pods, spec.strategy.canary.max_restarts)  # type: ignore[union-attr]
    if crasher is not None:
        return _abort(state, "CrashLoop", f"canary pod {crasher.name} restarted {crasher.restarts} times", inp, log)
    if isinstance(state, Promoting) or spec.paused:
        return state
    background = spec.strategy.canary.analysis  # type: ignore[union-attr]
    if background is not None and state.step >= background.starting_step:
        label = f"step {state.step + 1}/{len(_steps(inp))}"
        verdict = run_background(inp, background, label, log.attempt, promoted=log.promoted)
        log.analysis = with_run(log.analysis, background=verdict.outcome.status)
        log.record(verdict)
        if verdict.phase == "Failed":
            return _abort(state, "AnalysisFailed", verdict.waiting_for, inp, log)
        if verdict.phase in ("Inconclusive", "Blocked"):
            return state
        log.waiting_for = ""  # a running background analysis does not hold the steps
    return _advance(state, inp, log)


def _containers_ready(inp: Inputs, track: str) -> int:
    return sum(1 for p in inp.observed.pods
               if p.track == track and p.revision == inp.current.number and p.containers_ready and not p.deleting)


def _abort(state: Stepping | Promoting, reason: str, message: str, inp: Inputs, log: _Pass) -> Aborted:
    log.events.append(Event("Warning", "Aborted", f"canary revision {inp.current.number}: {message}"))
    step, start = _position(state)
    return Aborted(step, start, reason, message)


def _advance(state: Stepping, inp: Inputs, log: _Pass) -> RolloutState:
    """Walk the steps as far as the cluster allows; record why it stopped."""
    spec = inp.app.spec
    steps = _steps(inp)
    now = inp.now
    deadline = timedelta(seconds=spec.progress_deadline_seconds)
    gate_timeout = timedelta(seconds=spec.registry.gate_timeout_seconds) if spec.registry else None
    while True:
        if state.step >= len(steps):
            log.events.append(Event("Normal", "Promoting", f"revision {inp.current.number} goes to the stable Deployment"))
            return Promoting(state.step, state.step_start)
        step = steps[state.step]
        label = f"step {state.step + 1}/{len(steps)}"
        started = parse_time_or(state.step_start, now)
        if step.set_weight is not None:
            want = canary_replicas(step.set_weight, spec.replicas)
            dep = inp.observed.deployments.get("canary")
            pods_ready = dep is not None and dep.rolled_out(inp.current.hash, want)
            registry = inp.observed.registry
            gate_open = want == 0 or registry is None or registry.gate_open("canary", want)
            if pods_ready and gate_open:
                log.events.append(Event("Normal", "StepCompleted", f"{label}: setWeight {step.set_weight} reached"))
                state = Stepping(state.step + 1, inp.stamp)
                continue
            if registry is not None and registry.outage:
                # An outage pauses the rollout; it neither promotes nor aborts blindly. Pods
                # whose readiness gate waits on the registry are not ready because of it, so
                # the progress deadline does not apply: the outage's own bound does. The step's
                # clock restarts with the outage's last moment.
                log.waiting_for = f"{label}: registry unreachable ({registry.error})"
                return replace(state, step_start=inp.stamp)
            # With a registry the pods' readiness gate waits for their registration: pods
            # whose containers are ready wait on the registry (gateTimeout), not on startup.
            gated = registry is not None and _containers_ready(inp, "canary") >= want
            if not pods_ready and not gated:
                log.waiting_for = f"{label}: waiting for {want} canary pod(s) to be ready"
                if now - started >= deadline:
                    return _abort(state, "ProgressDeadlineExceeded",
                                  f"canary pods not ready within progressDeadlineSeconds"
                                  f" ({spec.progress_deadline_seconds}s) at {label}", inp, log)
                log.wake_at.append(started + deadline)
                return state
            assert registry is not None and gate_timeout is not None
            log.waiting_for = f"{label}: {GATE_WAITING}"
            if now - started >= gate_timeout:
                return _abort(state, "RegistryGateTimeout",
                              f"canary instances not registered and healthy within"
                              f" registry.gateTimeout ({duration_text(spec.registry.gate_timeout) if spec.registry else ''})",
                              inp, log)
            log.wake_at.append(started + gate_timeout)
            return state
        if step.analysis is not None:
            verdict = run_step(inp, step.analysis, state, label, log.attempt)
            log.analysis = with_run(log.analysis, step=verdict.outcome.status)
            log.record(verdict)
            if verdict.phase == "Successful":
                state = Stepping(state.step + 1, inp.stamp)
                continue
            if verdict.phase == "Failed":
                return _abort(state, "AnalysisFailed", verdict.waiting_for, inp, log)
            return state
        assert step.pause is not None
        if state.pause_start is None:
            state = replace(state, pause_start=inp.stamp)
        seconds = step.pause.seconds
        if seconds is None:
            log.waiting_for = f"paused at {label}: promote to continue"
            return state
        resume_at = parse_time_or(state.pause_start, now) + timedelta(seconds=seconds)
        if now >= resume_at:
            log.events.append(Event("Normal", "StepCompleted", f"{label}: pause {duration_text(step.pause.duration or 0)} elapsed"))
            state = Stepping(state.step + 1, inp.stamp)
            continue
        log.waiting_for = f"paused at {label} until {format_time(resume_at)}"
        log.wake_at.append(resume_at)
        return state


def _promote(state: Promoting, inp: Inputs, handled: HandledRequests, log: _Pass) -> Decision:
    """The stable Deployment takes the canary's revision. With a registry, old stable instances
    go offline before their pods are replaced, so the canary first grows to full size and
    carries the traffic meanwhile (ScaleCanary), then stable is updated (UpdateStable)."""
    spec = inp.app.spec
    candidate = inp.current
    registry = inp.observed.registry
    decision = Decision(
        state=state, stable=inp.stable, candidate=candidate, stable_track=candidate,
        candidate_replicas=_promotion_canary_replicas(state, inp), set_weight=_weight(state, inp),
        events=tuple(log.events), handled=handled, wake_at=tuple(log.wake_at),
        superseded=tuple(log.superseded), analysis=log.analysis,
    )
    if inp.registry_drain:
        if (state.phase or "ScaleCanary") == "ScaleCanary":
            canary_dep = inp.observed.deployments.get("canary")
            grown = canary_dep is not None and canary_dep.rolled_out(candidate.hash, spec.replicas)
            if not (grown and (registry is None or registry.gate_open("canary", spec.replicas))):
                return replace(
                    decision, state=replace(state, phase="ScaleCanary"), stable_track=None,
                    candidate_replicas=spec.replicas,
                    waiting_for="promotion: canary growing to full size before stable instances go offline",
                )
        state = replace(state, phase="UpdateStable")
        decision = replace(decision, state=state, candidate_replicas=spec.replicas)
    stable_dep = inp.observed.deployments.get("stable")
    if stable_dep is None or not stable_dep.rolled_out(candidate.hash, spec.replicas):
        return replace(decision, waiting_for=f"promotion: stable Deployment rolling to revision {candidate.number}")
    if registry is not None and not registry.gate_open("stable", spec.replicas):
        return replace(decision, waiting_for="promotion: waiting for stable instances to be registered and healthy")
    done = Event("Normal", "PromotionCompleted", f"revision {candidate.number} is stable")
    return Decision(
        state=Steady(), stable=candidate, events=(*decision.events, done), handled=handled,
        # Known good only if it ran: replicas 0 proves nothing about the revision.
        promoted=candidate.hash if spec.replicas > 0 else None, superseded=decision.superseded,
    )


def _promotion_canary_replicas(state: Promoting, inp: Inputs) -> int:
    if inp.registry_drain:
        return inp.app.spec.replicas
    return canary_replicas(_weight(state, inp), inp.app.spec.replicas)


def _weight(state: RolloutState, inp: Inputs) -> int:
    if isinstance(state, Aborted):
        return 0
    steps = _steps(inp)
    if not steps:
        return 100
    step, _ = _position(state)
    return weight_at(steps, min(step, len(steps) - 1))


def _steps(inp: Inputs) -> list[CanaryStep]:
    canary = inp.app.spec.strategy.canary
    return list(canary.steps) if canary else []


def _position(state: RolloutState) -> tuple[int, str]:
    if isinstance(state, Stepping | Promoting | Aborted):
        return state.step, state.step_start
    return 0, ""
