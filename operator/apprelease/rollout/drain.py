"""Graceful offline: which pods' instances go offline, and what is held until they have. Pure.

Which pods leave is read off the plan: a track that disappears or goes to zero (abort, end
of a promotion, take-down), a scale-down (the pods that will go are marked with a pod
deletion cost so the ReplicaSet removes exactly those), and the old stable pods when a
promotion updates the stable Deployment (by then the canary carries full capacity).

Each leaving pod's instance goes offline, and the change that removes it is held (the track
stays as observed) until drainSeconds have passed since the registry first showed it offline.
Pods someone else removes (a rolling update, `kubectl delete pod`, an eviction) go offline the
moment they start terminating, and their preStop hook keeps them serving for drainSeconds
(rollout/instances.py writes the instances; render/deployment.py adds the hook).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, DrainingInstance
from ..domain import OWNER_KEY, TRACKS, RegistryAction, RegistryInstance, Track
from ..render import TrackPlan
from . import requests
from .observed import Observed, PodState, Registration
from .revisions import History
from .timefmt import format_precise_time, format_time, parse_time

RELEASED = "no longer leaving: enabled again"


@dataclass
class DrainOutcome:
    tracks: list[TrackPlan]
    draining: list[DrainingInstance] = field(default_factory=list)
    offline_pods: list[str] = field(default_factory=list)
    # Pods whose instances must be offline now, and why (leaving, on request).
    offline: dict[str, str] = field(default_factory=dict)
    # Pods whose instances we disabled (offline on request, or drained for a change that was
    # then aborted or reverted) and that nothing keeps offline any more: their disabled
    # instances are ours to enable again, whatever gate the pod shows (adopted pods have none).
    released: set[str] = field(default_factory=set)
    # Kubernetes-side marks (mark-leaving) and stale clean-up (registry writes, deregistration).
    actions: list[RegistryAction] = field(default_factory=list)
    wake_at: list[datetime] = field(default_factory=list)
    holding: str = ""


def drain_enabled(app: AppRelease) -> bool:
    registry = app.spec.registry
    return bool(registry and registry.nacos and registry.drain_seconds > 0)


def take_offline(
    entry: DrainingInstance | None, pod: str, instance: RegistryInstance, now: datetime, reason: str
) -> DrainingInstance:
    """The drain entry of a leaving pod's instance. The drain is counted from when the registry
    first *shows* the instance offline, not from when we asked: a slow registry write (or a
    stale read) must not shorten it."""
    if entry is None:
        entry = DrainingInstance(
            pod=pod, ip=instance.ip, port=instance.port, ephemeral=instance.ephemeral,
            since=format_precise_time(now), reason=reason,
        )
    elif entry.reason != reason:
        entry = entry.model_copy(update={"reason": reason})  # released earlier, leaving again
    if instance.enabled and entry.offline_since is not None:
        return entry.model_copy(update={"offline_since": None})  # re-enabled behind our back: start over
    if not instance.enabled and not instance.disabling and entry.offline_since is None:
        return entry.model_copy(update={"offline_since": format_precise_time(now)})
    return entry


def drain_ends(entry: DrainingInstance, drain: timedelta, now: datetime) -> datetime:
    """When the pod may leave; not yet seen offline means the drain has not started."""
    if entry.offline_since is None:
        return now + drain
    return parse_time(entry.offline_since) + drain


def _leaving_by_scale(pods: list[PodState], keep: int) -> list[PodState]:
    """Which pods a scale-down removes: not-ready ones first, then the newest, as the
    ReplicaSet prefers; marking them with a low pod deletion cost makes it certain."""
    surplus = len(pods) - keep
    if surplus <= 0:
        return []
    not_ready = sorted((p for p in pods if not p.ready), key=lambda p: p.name)
    ready = sorted((p for p in pods if p.ready), key=lambda p: (p.created or "", p.name), reverse=True)
    return (not_ready + ready)[:surplus]


def leaving_pods(
    tracks: list[TrackPlan], observed: Observed, *, promoting_stable: bool
) -> dict[Track, tuple[list[PodState], bool]]:
    """Per track: the pods the plan removes, and whether they go by scale-down (need marks)."""
    desired = {t.track: t for t in tracks}
    result: dict[Track, tuple[list[PodState], bool]] = {}
    for track in TRACKS:
        pods = observed.pods_of(track)
        if not pods:
            continue
        plan = desired.get(track)
        dep = observed.deployments.get(track)
        if plan is None or plan.replicas == 0:
            result[track] = (pods, False)
        elif dep is not None and dep.revision_hash != plan.revision_hash:
            if track != "stable" or promoting_stable:
                result[track] = ([p for p in pods if p.revision != plan.revision], False)
        else:
            current = [p for p in pods if p.revision == plan.revision]
            leaving = _leaving_by_scale(current, plan.replicas)
            if leaving:
                result[track] = (leaving, True)
    return result


def _hold(track: Track, observed: Observed, history: History, fallback: TrackPlan | None) -> TrackPlan | None:
    """The track as it is now, so the Deployment does not change while instances drain."""
    dep = observed.deployments.get(track)
    record = history.get(dep.revision_hash) if dep else None
    if dep is None or record is None:
        return fallback
    return TrackPlan(
        track=track, revision=record.number, revision_hash=record.hash,
        template=record.template, replicas=dep.replicas,
    )


def plan_drain(
    app: AppRelease,
    tracks: list[TrackPlan],
    observed: Observed,
    history: History,
    previous: AppReleaseStatus,
    now: datetime,
    *,
    promoting_stable: bool,
) -> DrainOutcome:
    outcome = DrainOutcome(tracks=list(tracks))
    registration = observed.registration
    live = {p.name: p for p in observed.pods if not p.deleting}

    previous_draining = {d.pod: d for d in previous.draining if d.pod in live}
    nacos = bool(app.spec.registry and app.spec.registry.nacos)
    if not nacos or registration is None:
        outcome.offline_pods = [p for p in previous.offline_pods if p in live]
        return outcome
    _user_offline(app, live, outcome)
    wanted = set(outcome.offline_pods)
    outcome.released = {p for p in previous.offline_pods if p in live} - wanted
    # A pod put back online stays listed until the registry shows its instance enabled: Nacos
    # applies the enable late, and a pass that still reads it disabled must know it was ours.
    pending = {p for p in outcome.released
               if (instance := registration.by_pod.get(p)) is not None and not instance.enabled}
    outcome.offline_pods = sorted(wanted | pending)
    _stale_cleanup(app, registration, outcome)
    if not drain_enabled(app):
        return outcome

    if not registration.state.reachable:
        # Without the registry we cannot take instances down first: hold whatever would leave.
        leaving = leaving_pods(tracks, observed, promoting_stable=promoting_stable)
        for track in leaving:
            _replace_track(outcome, track, _hold(track, observed, history, None))
        if leaving:
            outcome.holding = f"registry unreachable: pods stay until their instances can be taken offline ({registration.state.error})"
        outcome.draining = list(previous_draining.values())
        return outcome

    drain = timedelta(seconds=app.spec.registry.drain_seconds)  # type: ignore[union-attr]
    still_draining: dict[str, DrainingInstance] = {}
    _bridge_adopted(app, observed, history, previous_draining, now, drain, outcome, still_draining)
    for track, (pods, by_scale) in leaving_pods(outcome.tracks, observed, promoting_stable=promoting_stable).items():
        ready_at = now
        for pod in pods:
            instance = registration.by_pod.get(pod.name)
            if instance is None:
                continue  # not registered: nothing to take offline
            reason = f"{track} pod leaving"
            entry = take_offline(previous_draining.get(pod.name), pod.name, instance, now, reason)
            still_draining[pod.name] = entry
            outcome.offline[pod.name] = reason
            ready_at = max(ready_at, drain_ends(entry, drain, now))
        if ready_at > now:
            _replace_track(outcome, track, _hold(track, observed, history, None))
            outcome.wake_at.append(ready_at)
            outcome.holding = f"taking {track} instances offline until {format_time(ready_at)} (registry.drainSeconds)"
        elif by_scale:
            outcome.actions += [RegistryAction("mark-leaving", p.name) for p in pods]
    _release_abandoned(previous_draining, still_draining, live, registration, outcome)
    _defer_offline_while_enabling(still_draining, registration, outcome)
    outcome.draining = sorted(still_draining.values(), key=lambda d: d.pod)
    return outcome


def _release_abandoned(
    previous_draining: dict[str, DrainingInstance],
    still_draining: dict[str, DrainingInstance],
    live: dict[str, PodState],
    registration: Registration,
    outcome: DrainOutcome,
) -> None:
    """A pod we took offline that stays after all (the release was aborted or reverted during
    the drain: its track runs its revision again, and the plan no longer removes it): its
    instance is ours to enable again. A pod of a revision its track no longer runs still leaves
    (its Deployment controller removes it): it stays offline and listed. The entry stays listed until the
    registry shows the instance enabled (Nacos applies the write late), so a pass that still
    reads it disabled knows it was ours: an adopted pod has no gate to say so."""
    plans = {t.track: t for t in outcome.tracks}
    for pod, entry in previous_draining.items():
        if pod in still_draining or pod in outcome.offline:
            continue
        state = live[pod]
        plan = plans.get(state.track) if state.track is not None else None
        if plan is None or plan.replicas == 0 or state.revision != plan.revision:
            # Still leaving, by its Deployment controller now: offline until it is gone.
            still_draining[pod] = entry
            outcome.offline[pod] = entry.reason
            continue
        outcome.released.add(pod)
        instance = registration.by_pod.get(pod)
        if instance is not None and not instance.enabled:
            still_draining[pod] = entry.model_copy(update={"reason": RELEASED})


def _bridge_adopted(
    app: AppRelease,
    observed: Observed,
    history: History,
    previous_draining: dict[str, DrainingInstance],
    now: datetime,
    drain: timedelta,
    outcome: DrainOutcome,
    still_draining: dict[str, DrainingInstance],
) -> None:
    """Replacing the adopted pods (rolling/recreate strategy) without a stopped instance in
    Nacos and without none. They have no preStop hook (the adopted template stays as it was),
    so a rolling update of the adopted Deployment would stop them at once. Instead, each pass:

    1. the new revision starts in the canary Deployment (the bridge), as many pods as stable;
       the stable Deployment stays on the adopted revision;
    2. once the bridge pods are ready, registered and healthy, the adopted instances go
       offline, and stay held until drainSeconds after Nacos shows them offline;
    3. then the stable Deployment rolls (its adopted pods are drained already), the bridge
       staying until stable has rolled out; then the bridge drains away like any leaving track.

    With the canary strategy the promotion already does this (the canary carries full
    capacity, the old stable pods are drained before the stable Deployment changes)."""
    if app.spec.adopt is None or app.spec.strategy.kind not in ("rolling", "recreate"):
        return
    registration = observed.registration
    stable = next((t for t in outcome.tracks if t.track == "stable"), None)
    if stable is None or registration is None:
        return
    adopted = [p for p in observed.pods_of("stable") if p.adopted and p.revision != stable.revision]
    bridge_dep = observed.deployments.get("canary")
    if not adopted:
        stable_dep = observed.deployments.get("stable")
        if bridge_dep is not None and (stable_dep is None or not stable_dep.rolled_out(stable.revision_hash, stable.replicas)):
            _replace_track(outcome, "canary", _hold("canary", observed, history, None))  # until stable carries it
        return
    bridge = TrackPlan(track="canary", revision=stable.revision, revision_hash=stable.revision_hash,
                       template=stable.template, replicas=stable.replicas)
    _replace_track(outcome, "canary", bridge)
    bridge_ready = len([p for p in observed.pods_of("canary") if p.ready and p.revision == stable.revision])
    if bridge_ready < stable.replicas or not registration.state.gate_open("canary", stable.replicas):
        _replace_track(outcome, "stable", _hold("stable", observed, history, None))
        outcome.holding = (f"starting {stable.replicas} pod(s) of revision {stable.revision} beside the adopted"
                           " ones before those go offline in Nacos")
        return
    ready_at = now
    for pod in adopted:
        instance = registration.by_pod.get(pod.name)
        if instance is None:
            continue  # not registered: nothing to take offline
        reason = "adopted pod leaving"
        entry = take_offline(previous_draining.get(pod.name), pod.name, instance, now, reason)
        still_draining[pod.name] = entry
        outcome.offline[pod.name] = reason
        ready_at = max(ready_at, drain_ends(entry, drain, now))
    if ready_at > now:
        _replace_track(outcome, "stable", _hold("stable", observed, history, None))
        outcome.wake_at.append(ready_at)
        outcome.holding = f"taking the adopted instances offline until {format_time(ready_at)} (registry.drainSeconds)"


def _defer_offline_while_enabling(
    still_draining: dict[str, DrainingInstance], registration: Registration, outcome: DrainOutcome
) -> None:
    """While instances we enable again are not yet seen enabled, no serving instance of ours
    goes offline: Nacos applies and pushes each write on its own, so a consumer could find
    none in between (an abort during a promotion's drain swaps all of them at once). The
    deferred ones are not yet offline, so their drain has not started and their tracks hold."""
    if not any(d.reason == RELEASED for d in still_draining.values()):
        return
    for pod, entry in still_draining.items():
        instance = registration.by_pod.get(pod)
        if entry.reason != RELEASED and entry.offline_since is None and instance is not None and instance.enabled:
            outcome.offline.pop(pod, None)
    outcome.holding = outcome.holding or "enabling the instances no longer leaving before others go offline"


def _replace_track(outcome: DrainOutcome, track: Track, held: TrackPlan | None) -> None:
    others = [t for t in outcome.tracks if t.track != track]
    outcome.tracks = others + ([held] if held else [t for t in outcome.tracks if t.track == track])
    outcome.tracks.sort(key=lambda t: t.track != "stable")


def _user_offline(app: AppRelease, live: dict[str, PodState], outcome: DrainOutcome) -> None:
    """`apprelease offline NAME --pod P` keeps P's instance disabled until `online`."""
    wanted = {p.strip() for p in app.annotations.get(requests.OFFLINE, "").split(",") if p.strip()}
    wanted &= set(live)
    for pod in sorted(wanted):
        outcome.offline[pod] = "offline on request"
    outcome.offline_pods = sorted(wanted)


def _stale_cleanup(app: AppRelease, registration: Registration, outcome: DrainOutcome) -> None:
    """Instances of this app's own pods that are gone but still listed. Only those carrying
    this app's owner mark: another team's instances of a shared service are never touched."""
    if not (app.spec.registry and app.spec.registry.cleanup_stale):
        return
    owner = f"{app.namespace}/{app.name}"
    for instance in registration.stale:
        if instance.metadata.get(OWNER_KEY) != owner:
            continue
        if not instance.ephemeral:
            outcome.actions.append(RegistryAction("deregister", None, instance.ip, instance.port, False,
                                                  cluster=instance.cluster))
        elif instance.enabled:
            outcome.actions.append(RegistryAction(
                "write", None, instance.ip, instance.port, True, cluster=instance.cluster, enabled=False,
                weight=instance.weight, metadata=tuple(sorted(instance.metadata.items())), reason="stale",
            ))
