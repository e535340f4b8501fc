"""One reconcile: read the caches, plan, apply what differs, write status if it changed.

Runs in a worker thread. Every write goes through here, and each one is skipped when the
cluster already matches: an idle, converged operator makes no API writes at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from .. import metrics
from ..api.spec import API_VERSION, KIND, AppRelease
from ..api.status import AppReleaseStatus, RegistrationStatus
from ..domain import RegistryAction
from ..k8s import drift
from ..k8s.client import ApiError, Kube
from ..k8s.history import to_controller_revision
from ..k8s.observe import DATA_HASH, AppKey, Children, data_hash, observe, owned_by
from ..registry.base import RegistryUnavailable
from ..render import RenderError, render_children
from ..rollout import conditions as C
from ..rollout.deletion import FINALIZER, needs_finalizer, plan_deletion
from ..rollout.observed import Observed
from ..rollout.outcome import Event
from ..rollout.planner import plan as make_plan
from ..rollout.status_summary import material_change
from ..rollout.timefmt import format_time, parse_time
from .events import EventRecorder

log = logging.getLogger("apprelease.reconcile")

PRUNABLE_KINDS = ("Deployment", "Service", "Ingress", "ConfigMap")
# Count-only status changes of one AppRelease are written at most this often (phase, step,
# revision and condition changes at once). A rollout's pods pass through several states over
# ~10 s; at 1 s nearly each was a status write (8 per edit, measured at 1,000 apps).
STATUS_COALESCE_SECONDS = 3.0
# An invalid spec is not retried in a loop; a spec change (a watch event) retries at once.
INVALID_RETRY_SECONDS = 300.0


class ClusterCache(Protocol):
    def app(self, key: AppKey) -> dict[str, Any] | None: ...
    def children(self, key: AppKey) -> Children: ...
    def remember(self, obj: dict[str, Any]) -> None: ...
    def forget(self, obj: dict[str, Any]) -> None: ...


class RegistrySource(Protocol):
    def state_for(
        self, app: AppRelease, observed: Observed, previous: RegistrationStatus | None = None
    ) -> Observed: ...
    def execute(self, app: AppRelease, actions: tuple[RegistryAction, ...]) -> None: ...
    def forget(self, key: AppKey) -> None: ...


@dataclass
class Outcome:
    requeue_after: float | None
    phase: str | None
    writes: int


class TransientError(Exception):
    """Retry with back-off (apiserver unavailable, conflict, timeout)."""


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        cache: ClusterCache,
        *,
        registry: RegistrySource | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kube = kube
        self.cache = cache
        self.registry = registry
        self.clock = clock
        self.events = EventRecorder(kube)
        self._status_written_at: dict[AppKey, float] = {}

    def forget(self, key: AppKey) -> None:
        self._status_written_at.pop(key, None)

    def reconcile(self, key: AppKey) -> Outcome:
        started = time.perf_counter()
        result = "error"
        try:
            outcome = self._reconcile(key)
            result = "ok"
            return outcome
        finally:
            metrics.RECONCILES.labels(result).inc()
            metrics.RECONCILE_SECONDS.labels(result).observe(time.perf_counter() - started)

    def _reconcile(self, key: AppKey) -> Outcome:
        body = self.cache.app(key)
        if body is None:
            return Outcome(None, None, 0)
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        try:
            app = AppRelease.model_validate(body)
        except ValidationError as exc:
            if deleting:
                return self._release_finalizer(body) if FINALIZER in _finalizers(body) else Outcome(None, None, 0)
            return self._stalled(body, "InvalidSpec", _validation_message(exc))
        if deleting:
            if FINALIZER in _finalizers(body):
                return self._finalize(body, app, key)
            return Outcome(None, None, 0)  # owner references let the garbage collector clean up
        status = _parse_status(body.get("status"))
        children = self.cache.children(key)
        observed = self._observe(app, children, status)
        writes = self._ensure_finalizer(body, app)
        plan = make_plan(app, status, observed, self.clock())
        try:
            desired = render_children(app, plan.desired)
        except RenderError as exc:
            return self._stalled(body, "InvalidSpec", str(exc))

        try:
            if self.registry is not None:
                # Before the children: instances go offline before any pod may leave.
                self.registry.execute(app, plan.registry_actions)
            writes += self._apply(desired, children)
            # History after the children: an edit reaches its Deployment one round trip
            # sooner. If we stop in between, the next pass records the same revision again.
            writes += self._save_revisions(app, plan.revisions_to_save)
            writes += self._prune(app, desired, children, plan.revisions_to_delete)
        except RegistryUnavailable as exc:
            raise TransientError(f"registry: {exc}") from exc
        except ApiError as exc:
            if exc.namespace_terminating:
                return Outcome(None, None, writes)
            if exc.invalid:
                return self._stalled(body, "ApplyFailed", exc.message)
            raise TransientError(f"apiserver: {exc}") from exc

        new_status = plan.status
        requeue = plan.requeue_after
        hold = self._coalesce(key, body, new_status, plan.events)
        if hold is not None:
            # Only counts moved and we wrote a moment ago: write them a little later, once.
            requeue = hold if requeue is None else min(requeue, hold)
            return Outcome(requeue, new_status.phase, writes)
        try:
            status_written = self._write_status(body, new_status)
        except ApiError as exc:
            if exc.namespace_terminating or exc.not_found:
                return Outcome(None, None, writes)
            raise TransientError(f"apiserver: {exc}") from exc
        if status_written:
            writes += 1
            self._status_written_at[key] = time.monotonic()
            for event in plan.events:
                metrics.TRANSITIONS.labels(event.reason).inc()
                if event.reason in ("Aborted", "RolledBack"):
                    metrics.ROLLBACKS.labels(new_status.abort_reason or event.reason).inc()
                self.events.post(body, event)
        if new_status.current_step_index is not None and new_status.canary_revision:
            metrics.CANARY_STEP.labels(app.namespace, app.name).set(new_status.current_step_index)
        return Outcome(requeue, new_status.phase, writes)

    def _coalesce(
        self, key: AppKey, body: dict[str, Any], status: AppReleaseStatus, events: tuple[Event, ...]
    ) -> float | None:
        """Seconds to wait before writing this status, or None to write it now."""
        last = self._status_written_at.get(key)
        if last is None or events:
            return None
        remaining = STATUS_COALESCE_SECONDS - (time.monotonic() - last)
        if remaining <= 0 or material_change(body.get("status") or {}, status.to_wire()):
            return None
        return remaining

    def _observe(self, app: AppRelease, children: Children, status: AppReleaseStatus) -> Observed:
        observed = observe(children, app.uid, app.name)
        if self.registry is None:
            return observed
        return self.registry.state_for(app, observed, status.registration)

    # Deletion with a registry ----------------------------------------------------------------

    def _ensure_finalizer(self, body: dict[str, Any], app: AppRelease) -> int:
        present = FINALIZER in _finalizers(body)
        if present == needs_finalizer(app):
            return 0
        finalizers = [f for f in _finalizers(body) if f != FINALIZER]
        if not present:
            finalizers.append(FINALIZER)
        self._patch_finalizers(body, finalizers)
        return 1

    def _patch_finalizers(self, body: dict[str, Any], finalizers: list[str]) -> None:
        meta = body["metadata"]
        patched = self.kube.merge_patch(
            "AppRelease", meta["namespace"], meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}},
        )
        self.cache.remember(patched)

    def _release_finalizer(self, body: dict[str, Any]) -> Outcome:
        try:
            self._patch_finalizers(body, [f for f in _finalizers(body) if f != FINALIZER])
        except ApiError as exc:
            if not exc.not_found:
                raise TransientError(f"apiserver: {exc}") from exc
        return Outcome(None, None, 1)

    def _finalize(self, body: dict[str, Any], app: AppRelease, key: AppKey) -> Outcome:
        status = _parse_status(body.get("status"))
        children = self.cache.children(key)
        observed = self._observe(app, children, status)
        now = self.clock()
        deleted_at = parse_time(body["metadata"]["deletionTimestamp"])
        plan = plan_deletion(app, status, observed, now, deleted_at)
        writes = 0
        try:
            if self.registry is not None:
                self.registry.execute(app, tuple(plan.actions))
            if plan.delete_workloads:
                for dep in children.of_kind("Deployment"):
                    if owned_by(dep, app.uid) and not dep["metadata"].get("deletionTimestamp"):
                        self.kube.delete("Deployment", app.namespace, dep["metadata"]["name"],
                                         uid=dep["metadata"].get("uid"))
                        self.cache.forget(dep)
                        writes += 1
            if not plan.release:
                new_status = status.model_copy(update={"draining": plan.draining, "message": plan.message or status.message})
                writes += self._write_status(body, new_status)
            for event in plan.events:
                self.events.post(body, event)
            if plan.release:
                if self.registry is not None:
                    self.registry.forget(key)
                return self._release_finalizer(body)
        except RegistryUnavailable as exc:
            raise TransientError(f"registry: {exc}") from exc
        except ApiError as exc:
            if exc.not_found:
                return Outcome(None, None, writes)
            raise TransientError(f"apiserver: {exc}") from exc
        return Outcome(plan.requeue_after, None, writes)

    # Writes ------------------------------------------------------------------------------

    def _save_revisions(self, app: AppRelease, records: tuple) -> int:
        for record in records:
            self.cache.remember(self.kube.apply(to_controller_revision(app, record)))
        return len(records)

    def _apply(self, desired: list[dict[str, Any]], children: Children) -> int:
        writes = 0
        for obj in desired:
            live = children.get(obj["kind"], obj["metadata"]["name"])
            if obj["kind"] == "ConfigMap":
                # Immutable and content-named: present with the same data means done.
                if live is not None and live.get(DATA_HASH) == data_hash(obj.get("data") or {}):
                    continue
            elif not drift.needs_apply(obj, live):
                continue
            self.cache.remember(self.kube.apply(obj))
            writes += 1
        return writes

    def _prune(self, app: AppRelease, desired: list[dict[str, Any]], children: Children, revisions: tuple) -> int:
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        writes = 0
        for kind in PRUNABLE_KINDS:
            for live in list(children.of_kind(kind)):
                meta = live["metadata"]
                if (kind, meta["name"]) in wanted or not owned_by(live, app.uid):
                    continue
                if meta.get("deletionTimestamp"):
                    continue
                self.kube.delete(kind, app.namespace, meta["name"], uid=meta.get("uid"))
                self.cache.forget(live)
                writes += 1
        for record in revisions:
            name = f"{app.name}-{record.hash}"
            revision = children.get("ControllerRevision", name)
            if revision is not None:
                self.kube.delete("ControllerRevision", app.namespace, name, uid=revision["metadata"].get("uid"))
                self.cache.forget(revision)
                writes += 1
        return writes

    def _write_status(self, body: dict[str, Any], status: AppReleaseStatus) -> bool:
        wire = status.to_wire()
        previous = body.get("status") or {}
        if wire == previous:
            return False
        meta = body["metadata"]
        if log.isEnabledFor(logging.DEBUG):
            changed = sorted(k for k in wire.keys() | previous.keys() if wire.get(k) != previous.get(k))
            gist = {(c["type"], c["status"], c.get("reason")) for c in wire.get("conditions") or []}
            was = {(c["type"], c["status"], c.get("reason")) for c in previous.get("conditions") or []}
            log.debug("%s/%s: writing status (%s changed) %s", meta["namespace"], meta["name"], ", ".join(changed), sorted(gist - was))
        written = self.kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "status": wire,
            },
            subresource="status",
        )
        self.cache.remember(written)
        return True

    def _stalled(self, body: dict[str, Any], reason: str, message: str) -> Outcome:
        """Passed admission but cannot be reconciled: say what to fix, keep the rest as is."""
        previous = _parse_status(body.get("status"))
        generation = int(body["metadata"].get("generation") or 0)
        now = format_time(self.clock())
        conds = [
            C.condition(C.READY, False, reason, message),
            C.condition(C.RECONCILING, False, reason),
            C.condition(C.STALLED, True, reason, message),
        ]
        kept = [c for c in previous.conditions if c.type not in {x.type for x in conds}]
        status = previous.model_copy(
            update={
                "observed_generation": generation,
                "phase": "Degraded",
                "message": message,
                "conditions": C.merge_conditions(previous.conditions, conds + kept, now=now, generation=generation),
            }
        )
        try:
            written = self._write_status(body, status)
        except ApiError as exc:
            if exc.namespace_terminating:
                return Outcome(None, None, 0)
            raise TransientError(f"apiserver: {exc}") from exc
        if written:
            self.events.post(body, Event("Warning", reason, message))
            return Outcome(INVALID_RETRY_SECONDS, "Degraded", 1)
        return Outcome(INVALID_RETRY_SECONDS, "Degraded", 0)


def _finalizers(body: dict[str, Any]) -> list[str]:
    return list(body["metadata"].get("finalizers") or [])


def _parse_status(raw: dict[str, Any] | None) -> AppReleaseStatus:
    try:
        return AppReleaseStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("unreadable status, starting from an empty one")
        return AppReleaseStatus()


def _validation_message(exc: ValidationError) -> str:
    """pydantic errors as 'spec.x.y: message' (never echoing input values: they may be secret)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in error["loc"])
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts[:5])
