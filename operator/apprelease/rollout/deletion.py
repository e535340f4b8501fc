"""Deleting an AppRelease that uses a registry: offline, drain, remove pods, clean up. Pure.

A finalizer holds the AppRelease while its instances go offline (drainSeconds), its
Deployments are deleted, and, once the pods are gone, the server-side overrides are reset.
If the registry stays unreachable past registry.deletionTimeout the finalizer is released
anyway with a Warning: deletion never wedges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, DrainingInstance
from ..domain import RegistryAction
from .drain import drain_ends, take_offline
from .observed import Observed
from .outcome import Event
from .timefmt import format_time

FINALIZER = "apprelease.io/registry-offline"


@dataclass
class DeletionPlan:
    actions: list[RegistryAction] = field(default_factory=list)
    draining: list[DrainingInstance] = field(default_factory=list)
    delete_workloads: bool = False
    release: bool = False
    events: list[Event] = field(default_factory=list)
    message: str = ""
    requeue_after: float | None = None


def needs_finalizer(app: AppRelease) -> bool:
    return bool(app.spec.registry and app.spec.registry.nacos)


def plan_deletion(
    app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime, deleted_at: datetime
) -> DeletionPlan:
    registry = app.spec.registry
    assert registry is not None
    plan = DeletionPlan()
    registration = observed.registration
    live = [p for p in observed.pods if not p.deleting]
    live_names = {p.name for p in live}
    previous = {d.pod: d for d in status.draining}

    if registration is None or not registration.state.reachable:
        waited = now - deleted_at
        timeout = timedelta(seconds=registry.deletion_timeout_seconds)
        error = registration.state.error if registration else "no registry read"
        if waited >= timeout:
            plan.release = True
            plan.events.append(Event(
                "Warning", "RegistryUnreachable",
                f"deleted without taking instances offline: registry unreachable for"
                f" {registry.deletion_timeout} ({error})",
            ))
            return plan
        plan.draining = list(status.draining)
        plan.message = f"deleting: waiting for the registry to take instances offline ({error})"
        plan.requeue_after = min(5.0, (timeout - waited).total_seconds())
        return plan

    entries: dict[str, DrainingInstance] = {}
    for pod in live:
        instance = registration.by_pod.get(pod.name)
        if instance is None:
            continue
        entries[pod.name] = take_offline(previous.get(pod.name), pod.name, instance, now, "AppRelease deleted")
        if instance.enabled:
            plan.actions.append(RegistryAction("disable", pod.name, instance.ip, instance.port, instance.ephemeral))
    # Pods gone: reset their overrides so a new pod on the same address starts clean.
    for name, entry in previous.items():
        if name not in live_names:
            plan.actions.append(RegistryAction("clear", name, entry.ip, entry.port, entry.ephemeral))

    drain = timedelta(seconds=registry.drain_seconds)
    ready_at = max((drain_ends(e, drain, now) for e in entries.values()), default=now)
    if ready_at > now:
        plan.draining = sorted(entries.values(), key=lambda d: d.pod)
        plan.message = f"deleting: instances offline until {format_time(ready_at)} (registry.drainSeconds)"
        plan.requeue_after = (ready_at - now).total_seconds()
        return plan
    plan.delete_workloads = True
    plan.draining = sorted(entries.values(), key=lambda d: d.pod)
    if live:
        plan.message = f"deleting: waiting for {len(live)} pod(s) to stop"
        plan.requeue_after = 2.0
        return plan
    plan.release = True
    plan.events.append(Event("Normal", "RegistryCleanedUp", "instances taken offline and reset; deleting"))
    return plan
