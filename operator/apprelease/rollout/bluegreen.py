"""The blue-green strategy: one pure transition from a rollout state to the next.

    Steady ──new revision──► Previewing ──promote / autoPromotionSeconds──► Switched
       ▲                        │  ▲                                          │ scaleDownDelaySeconds
       │                 abort, deadline                                      ▼
       │                        ▼  │ retry                               Promoting ──► Steady
       └── spec back on stable ◄ Aborted

Previewing: the new revision runs at full size in the preview Deployment ({app}-preview),
reached only through the preview Service (and Ingress); the active Service selects the stable
revision's pods. Switched: the active Service selects the new revision; the old pods stay,
idle, so going back to the stable revision is instant (no new pods) until the scale-down
delay ends. Promoting: the stable Deployment takes the new revision (its pods join as the
preview's serve), then the preview Deployment goes. With a Nacos registry the preview's
instances stay disabled until the switch, and the switch enables them before the old ones
are taken offline: there is never a moment without an enabled instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..api.analysis import AnalysisStatus
from ..api.status import HandledRequests
from ..api.strategy import BlueGreenStrategy
from ..domain import Track
from . import requests
from .analysis import MeasurementRequest, Problem
from .analysis_step import Verdict, carried, run_post_promotion, run_pre_promotion, with_run
from .observed import RevisionRecord
from .outcome import Decision, Event, Inputs
from .revisions import differs_only_by_restart
from .state import Aborted, Previewing, Promoting, RolloutState, Steady, Switched
from .timefmt import format_time, parse_time_or

TRACK: Track = "preview"


@dataclass
class _Pass:
    events: list[Event] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    waiting_for: str = ""
    superseded: list[tuple[str, str]] = field(default_factory=list)
    analysis: AnalysisStatus | None = None
    measurements: tuple[MeasurementRequest, ...] = ()
    analysis_problem: Problem | None = None
    attempt: str = ""  # the handled retry request: a retried analysis is a new run

    def record(self, verdict: Verdict) -> None:
        self.analysis = with_run(self.analysis, step=verdict.outcome.status)
        self.measurements = verdict.outcome.requests
        self.analysis_problem = verdict.outcome.problem
        self.events += [verdict.event] if verdict.event is not None else []
        self.wake_at += [verdict.outcome.wake_at] if verdict.outcome.wake_at is not None else []


def transition(state: RolloutState, inp: Inputs) -> Decision:
    if inp.current.hash == inp.stable.hash:
        return _back_on_stable(state, inp)
    if inp.current.promoted or differs_only_by_restart(inp.stable.template, inp.current.template):
        reason = "Restarted" if not inp.current.promoted else "RolledBack"
        event = Event("Normal", reason, f"revision {inp.current.number} goes to all pods without a preview")
        return Decision(state=Steady(), stable=inp.current, events=(event,), handled=inp.handled)
    log = _Pass(analysis=carried(inp))
    state, handled, pending = _begin(state, inp, log)
    state, handled = _requests(state, pending, handled, inp, log)
    log.attempt = handled.retry or ""
    state = _progress(state, inp, log)
    if isinstance(state, Steady):  # promotion completed
        done = Event("Normal", "PromotionCompleted", f"revision {inp.current.number} is stable")
        return Decision(
            state=state, stable=inp.current, events=(*log.events, done), handled=handled,
            promoted=inp.current.hash if inp.app.spec.replicas > 0 else None,
            superseded=tuple(log.superseded),
        )
    switched = isinstance(state, Switched | Promoting)
    return Decision(
        state=state,
        stable=inp.stable,
        candidate=inp.current,
        candidate_track=TRACK,
        stable_track=inp.current if isinstance(state, Promoting) else None,
        candidate_replicas=0 if isinstance(state, Aborted) else inp.app.spec.replicas,
        set_weight=100 if switched else 0,
        events=tuple(log.events),
        handled=handled,
        waiting_for=log.waiting_for,
        wake_at=tuple(log.wake_at),
        superseded=tuple(log.superseded),
        analysis=log.analysis,
        measurements=log.measurements,
        analysis_problem=log.analysis_problem,
        active_revision=inp.current.number if switched else None,
        idle_revisions=_idle(state, inp),
    )


def _strategy(inp: Inputs) -> BlueGreenStrategy:
    strategy = inp.app.spec.strategy.blue_green
    assert strategy is not None
    return strategy


def _back_on_stable(state: RolloutState, inp: Inputs) -> Decision:
    """The spec describes the stable revision again: the preview goes. Once the preview
    serves (switched, or promoting), going back is a switch the other way, in a promotion's
    order: the stable side first at full ready size (a promotion may have replaced its pods
    already), then the Service on it (with Nacos: its instances enabled), then the preview
    drained and removed. Within the scale-down delay the stable pods still run, so traffic
    is back on them at once."""
    events: tuple[Event, ...] = ()
    superseded: tuple[tuple[str, str], ...] = ()
    previous = inp.candidate
    if previous is not None and previous.hash != inp.current.hash:
        if isinstance(state, Switched | Promoting):
            waiting = _stable_side_back(state, inp, previous)
            if waiting is not None:
                return waiting
        events = (Event("Normal", "RolledBack",
                        f"spec returned to stable revision {inp.current.number}; revision"
                        f" {previous.number} removed"),)
        superseded = ((previous.hash, "Superseded"),)
    return Decision(state=Steady(), stable=inp.stable, events=events, handled=inp.handled,
                    superseded=superseded)


def _stable_side_back(state: Switched | Promoting, inp: Inputs, serving: RevisionRecord) -> Decision | None:
    """Going back from the serving preview to the stable revision: what still waits (the
    stable side's pods, then its instances), or None when the preview may go."""
    spec = inp.app.spec
    stable = inp.stable
    dep = inp.observed.deployments.get("stable")
    registry = inp.observed.registry
    ready = dep is not None and dep.rolled_out(stable.hash, spec.replicas) and (
        registry is None or registry.gate_open("stable", spec.replicas))
    if ready and _serving(inp, "stable", stable.number):
        return None
    if ready:  # switched back; the preview serves on until the stable instances are enabled
        active, idle, weight = None, frozenset[int](), 0
        waiting = (f"rolling back to revision {stable.number}: its instances are enabled before"
                   f" revision {serving.number}'s go offline")
    else:
        active, idle, weight = serving.number, frozenset({stable.number}), 100
        waiting = (f"rolling back to revision {stable.number}: waiting for its {spec.replicas} pod(s)"
                   f" to be ready before traffic returns to them; revision {serving.number} serves meanwhile")
    return Decision(
        state=state, stable=stable, candidate=serving, candidate_track=TRACK,
        candidate_replicas=spec.replicas, set_weight=weight, handled=inp.handled,
        waiting_for=waiting, active_revision=active, idle_revisions=idle,
    )


def _begin(
    state: RolloutState, inp: Inputs, log: _Pass
) -> tuple[RolloutState, HandledRequests, requests.PendingRequests]:
    previous = inp.candidate
    if previous is not None and previous.hash == inp.current.hash and not isinstance(state, Steady):
        return state, inp.handled, inp.pending
    if previous is not None and not isinstance(state, Aborted):
        log.superseded.append((previous.hash, "Superseded"))
    log.events.append(Event(
        "Normal", "PreviewStarted",
        f"revision {inp.current.number} ({inp.current.template.image}) starts beside the active one, without traffic",
    ))
    return Previewing(inp.stamp), requests.all_handled(inp.app.annotations), requests.PendingRequests()


def _requests(
    state: RolloutState, pending: requests.PendingRequests, handled: HandledRequests, inp: Inputs, log: _Pass
) -> tuple[RolloutState, HandledRequests]:
    number = inp.current.number
    if pending.abort:
        handled = handled.model_copy(update={"abort": pending.abort})
        if isinstance(state, Previewing | Switched):
            state = Aborted(0, inp.stamp, "AbortedByUser", "aborted on request")
            log.events.append(Event("Warning", "Aborted", f"preview of revision {number} aborted on request"))
    if pending.retry:
        handled = handled.model_copy(update={"retry": pending.retry})
        if isinstance(state, Aborted):
            state = Previewing(inp.stamp)
            log.events.append(Event("Normal", "Retried", f"preview of revision {number} starts again"))
    if pending.promote and inp.app.spec.taken_down and isinstance(state, Previewing | Switched):
        # No preview runs to be seen ready, and a promote kept for later would switch at
        # bring-up to pods nobody has seen yet: refused, and said so (as the canary does).
        handled = handled.model_copy(update={"promote": pending.promote})
        name = inp.app.name
        log.events.append(Event(
            "Warning", "PromoteRefused",
            f"promote refused: {name} is taken down (spec.takenDown), so revision {number} stays"
            f" where it is; `apprelease bring-up {name}` resumes it, then promote again",
        ))
    elif pending.promote and isinstance(state, Previewing) and state.ready_since is not None:
        # Only a ready preview takes traffic; until then the request stays pending.
        handled = handled.model_copy(update={"promote": pending.promote})
        state = _switch(inp, log, "Promoted", "promoted on request")
        if pending.promote_full:
            state = Promoting(0, inp.stamp, full=True, phase="UpdateStable")
    elif pending.promote and isinstance(state, Switched) and pending.promote_full:
        handled = handled.model_copy(update={"promote": pending.promote})
        state = Promoting(0, inp.stamp, full=True, phase="UpdateStable")
    return state, handled


def _switch(inp: Inputs, log: _Pass, reason: str, why: str) -> Switched:
    log.events.append(Event("Normal", reason,
                            f"traffic switched to revision {inp.current.number} ({why}); revision"
                            f" {inp.stable.number}'s pods stay for an instant rollback"))
    return Switched(inp.stamp)


def _progress(state: RolloutState, inp: Inputs, log: _Pass) -> RolloutState:
    if isinstance(state, Previewing):
        return _preview(state, inp, log)
    if isinstance(state, Switched):
        after = _strategy(inp).post_promotion_analysis
        if after is not None:
            verdict = run_post_promotion(inp, after, state.at, f"revision {inp.current.number} serving")
            log.record(verdict)
            if verdict.phase == "Failed":
                message = f"{verdict.waiting_for}; traffic back on revision {inp.stable.number}"
                log.events.append(Event("Warning", "Aborted", f"revision {inp.current.number}: {message}"))
                return Aborted(0, state.at, "AnalysisFailed", message)
            if verdict.phase != "Successful":  # the old pods stay until it passed
                log.waiting_for = verdict.waiting_for.replace(
                    "`apprelease promote", "`apprelease promote --full").replace("skips the analysis", "finishes")
                return state
        until = parse_time_or(state.at, inp.now) + timedelta(seconds=_strategy(inp).scale_down_delay_seconds)
        if inp.now >= until:
            return _update_stable(Promoting(0, inp.stamp, phase="UpdateStable"), inp, log)
        log.wake_at.append(until)
        log.waiting_for = (f"traffic on revision {inp.current.number}; revision {inp.stable.number}'s"
                           f" pods stay until {format_time(until)} for an instant rollback")
        return state
    if isinstance(state, Promoting):
        return _update_stable(state, inp, log)
    return state


def _preview(state: Previewing, inp: Inputs, log: _Pass) -> RolloutState:
    spec = inp.app.spec
    if spec.taken_down:
        # No preview pods: nothing to see ready, so neither the progress deadline nor the
        # auto-promotion counts; both start again at bring-up, as its pods start anew.
        return replace(state, ready_since=None, taken_down_since=state.taken_down_since or inp.stamp)
    if state.taken_down_since is not None:
        state = Previewing(inp.stamp)  # brought up again: the clocks start now
    dep = inp.observed.deployments.get(TRACK)
    registry = inp.observed.registry
    ready = dep is not None and dep.rolled_out(inp.current.hash, spec.replicas) and (
        registry is None or registry.gate_open(TRACK, spec.replicas))
    if not ready and registry is not None and registry.outage and state.ready_since is None:
        # The pods' readiness gates wait on the registry: hold, and restart the progress
        # clock with the outage's last moment (the outage has its own bound: Stalled).
        log.waiting_for = f"preview of revision {inp.current.number}: registry unreachable ({registry.error})"
        return replace(state, since=inp.stamp)
    if not ready:
        started = parse_time_or(state.since, inp.now)
        deadline = started + timedelta(seconds=spec.progress_deadline_seconds)
        if inp.now >= deadline and state.ready_since is None:
            message = (f"preview pods not ready within progressDeadlineSeconds"
                       f" ({spec.progress_deadline_seconds}s)")
            log.events.append(Event("Warning", "Aborted", f"preview of revision {inp.current.number}: {message}"))
            return Aborted(0, state.since, "ProgressDeadlineExceeded", message)
        if state.ready_since is None:
            log.wake_at.append(deadline)
        log.waiting_for = f"preview of revision {inp.current.number}: waiting for {spec.replicas} pod(s) to be ready"
        return state
    if state.ready_since is None:
        state = replace(state, ready_since=inp.stamp)
        log.events.append(Event("Normal", "PreviewReady", f"revision {inp.current.number} is ready in the preview"))
    gate = _strategy(inp).pre_promotion_analysis
    if gate is not None:
        assert state.ready_since is not None
        label = f"the preview of revision {inp.current.number}"
        verdict = run_pre_promotion(inp, gate, state.ready_since, label, log.attempt)
        log.record(verdict)
        if verdict.phase == "Failed":
            log.events.append(Event("Warning", "Aborted", f"preview of revision {inp.current.number}:"
                                    f" {verdict.waiting_for}"))
            return Aborted(0, state.since, "AnalysisFailed", verdict.waiting_for)
        if verdict.phase != "Successful":
            log.waiting_for = verdict.waiting_for
            return state
    auto = _strategy(inp).auto_promotion_seconds
    if auto is not None:
        at = parse_time_or(state.ready_since, inp.now) + timedelta(seconds=auto)
        if inp.now >= at:
            return _switch(inp, log, "AutoPromoted", f"autoPromotionSeconds {auto}")
        log.wake_at.append(at)
        log.waiting_for = f"paused at the preview of revision {inp.current.number}: switches at {format_time(at)}"
        return state
    log.waiting_for = f"paused at the preview of revision {inp.current.number}: promote to switch"
    return state


def _update_stable(state: Promoting, inp: Inputs, log: _Pass) -> RolloutState:
    """The stable Deployment takes the new revision; the preview serves meanwhile."""
    spec = inp.app.spec
    dep = inp.observed.deployments.get("stable")
    registry = inp.observed.registry
    if dep is not None and dep.rolled_out(inp.current.hash, spec.replicas) and (
            registry is None or registry.gate_open("stable", spec.replicas)):
        return Steady()
    log.waiting_for = f"stable Deployment rolling to revision {inp.current.number}; the preview serves meanwhile"
    return state


def _idle(state: RolloutState, inp: Inputs) -> frozenset[int]:
    """Revisions whose registry instances stay disabled (taken offline) in this state."""
    if isinstance(state, Previewing | Aborted):
        return frozenset({inp.current.number})
    if isinstance(state, Promoting):
        return frozenset({inp.stable.number})
    if isinstance(state, Switched) and _serving(inp, TRACK, inp.current.number):
        # Green serves (enabled in the registry): only now does blue go offline.
        return frozenset({inp.stable.number})
    return frozenset()


def _serving(inp: Inputs, track: Track, revision: int) -> bool:
    """Every pod of ``revision`` in ``track`` is enabled and healthy in Nacos (True without)."""
    pods = [p for p in inp.observed.pods_of(track) if p.revision == revision]
    registration = inp.observed.registration
    if registration is None or inp.app.spec.registry is None or inp.app.spec.registry.nacos is None:
        return True
    return bool(pods) and all(
        (instance := registration.by_pod.get(p.name)) is not None and instance.enabled and instance.healthy
        for p in pods
    )
