"""Deleting an AppRelease that uses a registry: offline, drain, remove pods, clean up. Pure.

A finalizer holds the AppRelease while its instances go offline (drainSeconds), its
Deployments are deleted, and, once the pods are gone, the server-side overrides are reset.
If the registry stays unreachable past registry.deletionTimeout the finalizer is released
anyway with a Warning: deletion never wedges.

The bounds count from ``since``: the deletion request, or the operator run's first attempt at
the clean-up when that is later (the reconciler keeps it per run). An operator that was down
longer than deletionTimeout still reads the registry first and takes the instances offline;
only a registry that gives no answer for deletionTimeout of its own run is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.base import duration_text
from ..api.spec import AppRelease
from ..api.status import AppReleaseStatus, DrainingInstance
from ..domain import RegistryAction
from .drain import drain_ends, take_offline
from .instances import offline_write
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


# RegistryState.failure_reason of a registry not read yet (registry/registration.py).
NOT_READ_YET = "Pending"


def plan_deletion(
    app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime, since: datetime
) -> DeletionPlan:
    registry = app.spec.registry
    assert registry is not None
    timeout = timedelta(seconds=registry.deletion_timeout_seconds)
    drain = timedelta(seconds=registry.drain_seconds)
    registration = observed.registration
    if registration is None or not registration.state.reachable:
        return _registry_down(app, status, observed, now, since, timeout)
    plan = _offline_then_delete(app, status, observed, now)
    # Whatever keeps the plan from finishing (a drain that cannot start because writes fail,
    # pods that never stop), deletion goes on once deletionTimeout has passed beyond a drain.
    give_up_at = since + drain + timeout
    if plan.release:
        return plan
    if now >= give_up_at:
        plan.delete_workloads = plan.release = True
        skipped = plan.message.removeprefix("deleting: ")
        state = registration.state
        if state.write_error and plan.actions:
            refused = ", ".join(f"{a.ip}:{a.port} (pod {a.pod})" for a in plan.actions)
            verb = "refused" if state.write_error_reason == "RegistryRefused" else "failed"
            skipped = (f"the registry {verb} taking {refused} offline"
                       f" ({state.write_error_reason or 'RegistryWriteFailed'}: {state.write_error}); {skipped}")
        plan.events.append(Event(
            "Warning", "DeletionForced",
            f"deleted after registry.deletionTimeout ({duration_text(registry.deletion_timeout)}) beyond the drain:"
            f" {skipped}",
        ))
        return plan
    plan.requeue_after = min(plan.requeue_after or 5.0, max(0.5, (give_up_at - now).total_seconds()))
    return plan


def _registry_down(
    app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime, since: datetime,
    timeout: timedelta,
) -> DeletionPlan:
    plan = DeletionPlan()
    registration = observed.registration
    waited = now - since
    error = registration.state.error if registration else "no registry read"
    if waited >= timeout:
        plan.release = True
        bound = duration_text(app.spec.registry.deletion_timeout) if app.spec.registry else ""
        never_read = registration is None or registration.state.failure_reason == NOT_READ_YET
        why = (f"registry not read within registry.deletionTimeout ({bound}) of the operator's first attempt"
               if never_read else f"registry unreachable for {bound} ({error})")
        plan.events.append(Event("Warning", "RegistryUnreachable", f"deleted without taking instances offline: {why}"))
        return plan
    plan.draining = list(status.draining)
    plan.message = f"deleting: waiting for the registry to take instances offline ({error})"
    plan.requeue_after = min(5.0, (timeout - waited).total_seconds())
    return plan


def _offline_then_delete(app: AppRelease, status: AppReleaseStatus, observed: Observed, now: datetime) -> DeletionPlan:
    """Instances offline, drained, Deployments deleted, pods gone, overrides reset."""
    registry = app.spec.registry
    assert registry is not None and observed.registration is not None
    registration = observed.registration
    plan = DeletionPlan()
    live = [p for p in observed.pods if not p.deleting]
    previous = {d.pod: d for d in status.draining}
    entries: dict[str, DrainingInstance] = {}
    still_enabled = 0
    for pod in live:
        instance = registration.by_pod.get(pod.name)
        if instance is None:
            continue
        entries[pod.name] = take_offline(previous.get(pod.name), pod.name, instance, now, "AppRelease deleted")
        if instance.enabled:
            still_enabled += 1
            plan.actions.append(offline_write(pod.name, instance, "AppRelease deleted"))

    drain = timedelta(seconds=registry.drain_seconds)
    ready_at = max((drain_ends(e, drain, now) for e in entries.values()), default=now)
    plan.draining = sorted(entries.values(), key=lambda d: d.pod)
    if ready_at > now:
        pending = f"{still_enabled} instance(s) still enabled" if still_enabled else "draining"
        plan.message = f"deleting: instances offline until {format_time(ready_at)} (registry.drainSeconds; {pending})"
        plan.requeue_after = (ready_at - now).total_seconds()
        return plan
    plan.delete_workloads = True
    if live:
        plan.message = f"deleting: waiting for {len(live)} pod(s) to stop"
        plan.requeue_after = 2.0
        return plan
    plan.release = True
    plan.events.append(Event("Normal", "RegistryCleanedUp", "instances taken offline; deleting"))
    return plan
