"""One writer for every instance of ours: enabled, weight and metadata, and the readiness gate
that makes a pod Ready only once Nacos lists it. Pure.

A pod's registration state lives on the pod, as the reason of its REGISTERED_GATE condition
(a readiness gate: Ready = containers ready AND this condition True):

  Waiting (False)      its instance is written disabled ahead of the app's registration, so
                       it joins with no traffic
  Registered (True)    listed and healthy, still disabled: the pod turns Ready now, and its
                       Deployment (maxUnavailable, minReadySeconds) and Services waited for it
  Serving (True)       the pod is Ready, so we enabled it; Nacos shows it enabled
  Offline (True)       we took it offline (it leaves, or `apprelease offline`); still Ready
  Unregistered, Unhealthy, DisabledInRegistry (False)
                       joined before, but Nacos no longer lists it, lists it unhealthy, or
                       someone else disabled it (the console): theirs to undo, not ours

So no consumer picks a pod before it is Ready, and a terminating pod (whoever deletes it)
goes offline the moment it starts terminating while its preStop hook keeps it serving for
drainSeconds. Weights: the track's share with trafficRouting nacos (a weighted-random Nacos
client sends the canary exactly the step's weight), times the warm-up ramp of a new instance.
Every write carries the instance's whole state: Nacos replaces the three together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.spec import AppRelease
from ..domain import (
    OUR_METADATA_KEYS,
    OWNER_KEY,
    REVISION_KEY,
    TRACK_KEY,
    RegistryAction,
    RegistryInstance,
)
from .drain import DrainOutcome
from .observed import GateChange, GateState, Observed, PodState
from .outcome import Decision
from .timefmt import format_time, parse_time_or

# Nacos accepts weights up to 10000; 100 leaves room on both sides of a ratio.
BASE_WEIGHT = 100.0
MAX_WEIGHT = 10000.0
MIN_WEIGHT = 0.01
WARMUP_START = 0.1  # a new instance starts at a tenth of its weight
WARMUP_STEPS = 10  # the ramp is written in this many steps
WEIGHT_TOLERANCE = 0.005  # relative: Nacos rounds what it stores


@dataclass
class InstancePlan:
    writes: list[RegistryAction] = field(default_factory=list)
    gates: list[GateChange] = field(default_factory=list)
    warming: set[str] = field(default_factory=set)  # pods whose weight still ramps up
    wake_at: list[datetime] = field(default_factory=list)


def plan_instances(
    app: AppRelease, observed: Observed, decision: Decision, drain: DrainOutcome, now: datetime
) -> InstancePlan:
    result = InstancePlan()
    registry = app.spec.registry
    registration = observed.registration
    if registry is None or registry.nacos is None or registration is None or not registration.state.reachable:
        return result  # no Nacos, or no reliable read: change nothing
    weights = _track_weights(app, observed, decision)
    owner = f"{app.namespace}/{app.name}"
    ports = app.spec.container_ports()
    port = ports[0].container_port if ports else None
    for pod in observed.pods:
        if not pod.ip or pod.track is None or port is None:
            continue
        instance = registration.by_pod.get(pod.name)
        metadata = ((OWNER_KEY, owner), (REVISION_KEY, str(pod.revision or "")), (TRACK_KEY, pod.track))
        offline = pod.name in drain.offline or app.spec.taken_down or pod.revision in decision.idle_revisions
        reason, enabled = _pod_state(pod, instance, offline, released=pod.name in drain.released)
        if reason is not None and (pod.gate is None or (pod.gate.reason, pod.gate.status) != (reason, _READY[reason])):
            # The condition's time moves with its status, and also when the pod starts serving:
            # warm-up counts from there, not from the registration before Ready.
            kept = (pod.gate is not None and pod.gate.status == _READY[reason] and pod.gate.since
                    and reason != "Serving")
            since = pod.gate.since if kept and pod.gate is not None else format_time(now)
            result.gates.append(GateChange(pod.name, _READY[reason], reason, _MESSAGES[reason], since or format_time(now)))
        if instance is None:
            if reason == "Waiting":
                # Ahead of the app's registration, so it joins disabled: no traffic before Ready.
                result.writes.append(RegistryAction(
                    "write", pod.name, pod.ip, port, cluster=registry.nacos.cluster, enabled=False,
                    weight=BASE_WEIGHT, metadata=metadata, must_exist=False, reason="joining",
                ))
            continue
        weight = instance.weight
        if enabled:
            weight, next_step = _weight(app, pod, weights, now)
            if next_step is not None:
                result.warming.add(pod.name)
                result.wake_at.append(next_step)
        if _differs(instance, enabled, weight, metadata):
            result.writes.append(RegistryAction(
                "write", pod.name, instance.ip, instance.port, instance.ephemeral, cluster=instance.cluster,
                enabled=enabled, weight=weight, metadata=metadata,
                reason="offline" if offline or pod.deleting else ("serving" if enabled else "joining"),
            ))
    return result


def offline_write(pod: str, instance: RegistryInstance, reason: str) -> RegistryAction:
    """Take one instance offline, keeping its weight and metadata (Nacos replaces all three)."""
    return RegistryAction(
        "write", pod, instance.ip, instance.port, instance.ephemeral, cluster=instance.cluster,
        enabled=False, weight=instance.weight, metadata=tuple(sorted(instance.metadata.items())),
        reason=reason,
    )


_READY = {"Waiting": False, "Registered": True, "Serving": True, "Offline": True,
          "Unregistered": False, "Unhealthy": False, "DisabledInRegistry": False}
_MESSAGES = {
    "Waiting": "waiting for the instance to be registered and healthy in Nacos",
    "Registered": "registered and healthy in Nacos; enabled once the pod is Ready",
    "Serving": "registered, healthy and enabled in Nacos",
    "Offline": "taken offline in Nacos by AppRelease (leaving, or on request)",
    "Unregistered": "no instance in Nacos",
    "Unhealthy": "Nacos lists the instance unhealthy",
    "DisabledInRegistry": "disabled in Nacos, not by AppRelease: enable it there",
}


def _pod_state(
    pod: PodState, instance: RegistryInstance | None, offline: bool, *, released: bool = False
) -> tuple[str | None, bool]:
    """(the gate reason the pod should show, or None to leave it; whether the instance should
    be enabled). A terminating pod only goes offline: its gate no longer matters. ``released``:
    we had it offline on request until now, so a disabled instance is our own doing."""
    if pod.deleting:
        return None, False
    current = pod.gate.reason if pod.gate is not None and pod.gate.reason in _READY else "Waiting"
    if released and current in ("Serving", "DisabledInRegistry"):
        current = "Offline"  # the pod may not show our Offline gate yet
    listed = instance is not None and instance.healthy
    if current in ("Waiting", "Registered"):  # joining: disabled until the pod is Ready
        if not listed:
            return ("Waiting" if current == "Waiting" or instance is None else "Unhealthy"), False
        if offline or not pod.ready:
            return "Registered", False
        return ("Serving" if instance is not None and instance.enabled else "Registered"), True
    if not listed:
        return ("Unregistered" if instance is None else "Unhealthy"), bool(instance and instance.enabled) and not offline
    assert instance is not None
    if offline:
        return "Offline", False
    if current == "Serving" and not instance.enabled:
        return "DisabledInRegistry", False  # someone else disabled it: theirs to undo
    if current == "DisabledInRegistry":
        return ("Serving" if instance.enabled else "DisabledInRegistry"), instance.enabled
    # Serving, back from Offline (our own), or listed again after Unregistered/Unhealthy.
    return ("Serving" if instance.enabled else current), True


def _track_weights(app: AppRelease, observed: Observed, decision: Decision) -> dict[str, float]:
    """Per track, the weight each of its instances gets: equal by default; with trafficRouting
    nacos, so that the canary's ready instances together get exactly the share routed to them
    (the step's, or less while not all of its pods are ready: canary.routed_weight)."""
    canary_spec = app.spec.strategy.canary
    if canary_spec is None or canary_spec.traffic_routing != "nacos" or decision.candidate is None:
        return {"stable": BASE_WEIGHT, "canary": BASE_WEIGHT}
    share = decision.routed_weight / 100
    stable_n = len([p for p in observed.pods_of("stable") if p.ready])
    canary_n = len([p for p in observed.pods_of("canary") if p.ready])
    if canary_n == 0 or share <= 0:
        return {"stable": BASE_WEIGHT, "canary": MIN_WEIGHT}
    if stable_n == 0 or share >= 1:
        return {"stable": MIN_WEIGHT, "canary": BASE_WEIGHT}
    ratio = (share * stable_n) / ((1 - share) * canary_n)  # canary weight / stable weight
    if ratio >= 1:
        canary = min(MAX_WEIGHT, BASE_WEIGHT * ratio)
        return {"stable": max(MIN_WEIGHT, canary / ratio), "canary": canary}
    return {"stable": BASE_WEIGHT, "canary": max(MIN_WEIGHT, BASE_WEIGHT * ratio)}


def _weight(app: AppRelease, pod: PodState, weights: dict[str, float], now: datetime) -> tuple[float, datetime | None]:
    """The pod's weight now, and when it next changes while it warms up."""
    full = weights.get(pod.track or "stable", BASE_WEIGHT)
    warmup = app.spec.registry.warmup_seconds if app.spec.registry else 0.0
    if not warmup or pod.gate is None:
        return full, None
    if pod.gate.reason != "Serving" or not pod.gate.since:
        # Not serving yet: when it is enabled it starts at the bottom of the ramp (the ramp's
        # clock starts once the gate says Serving, at this same weight).
        return round(full * WARMUP_START, 2), None
    started = parse_time_or(pod.gate.since, now)
    elapsed = (now - started).total_seconds()
    if elapsed >= warmup:
        return full, None
    step = warmup / WARMUP_STEPS
    done = math.floor(max(0.0, elapsed) / step)
    factor = WARMUP_START + (1 - WARMUP_START) * done / WARMUP_STEPS
    return round(full * factor, 2), started + timedelta(seconds=step * (done + 1))


def _differs(instance: RegistryInstance, enabled: bool, weight: float, metadata: tuple[tuple[str, str], ...]) -> bool:
    if instance.enabled != enabled:
        return True
    if abs(instance.weight - weight) > WEIGHT_TOLERANCE * max(1.0, weight):
        return True
    return any(instance.metadata.get(k) != v for k, v in metadata if k in OUR_METADATA_KEYS)


__all__ = ["GateChange", "GateState", "InstancePlan", "offline_write", "plan_instances"]
