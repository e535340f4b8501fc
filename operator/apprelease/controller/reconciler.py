"""One reconcile: read the caches, plan, apply what differs, write status if it changed.

Runs in a worker thread and never raises: every failure is classified (controller/failures.py)
into a named failure with a bound (rollout/failures.py), shown in status, and retried with
back-off. Every write goes through here, and each one is skipped when the cluster already
matches: an idle, converged operator makes no API writes at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from .. import metrics
from ..api.base import duration_text
from ..api.notifications import NotificationFacts, NotificationRule, Rules
from ..api.registry import Registry
from ..api.spec import API_VERSION, KIND, AppRelease
from ..api.status import AppReleaseStatus, ConfigStatus, RegistrationStatus
from ..domain import ConfigAction, RegistryAction
from ..k8s import drift
from ..k8s.client import FIELD_MANAGER, ApiError, Kube
from ..k8s.fence import NotLeading
from ..k8s.history import to_controller_revision
from ..k8s.observe import (
    DATA_HASH,
    AppKey,
    Children,
    adopted_pods_selector,
    data_hash,
    observe,
    owned_by,
    pod_state,
)
from ..render import Policy, render_children
from ..render.adoption import adoptable
from ..render.hashing import content_hash
from ..rollout import conditions as C
from ..rollout import failures as F
from ..rollout.analysis import MeasurementRequest
from ..rollout.deletion import FINALIZER, needs_finalizer, plan_deletion
from ..rollout.notifications import notifications_for
from ..rollout.observed import REGISTERED_GATE, GateChange, Observed
from ..rollout.outcome import Event
from ..rollout.planner import plan as make_plan
from ..rollout.state import Aborted, stored
from ..rollout.status_summary import material_change
from ..rollout.timefmt import parse_time_or
from .app_metrics import AppMetrics
from .events import EventRecorder
from .failures import ChildConflict, Failure, classify
from .logs import reconciling, set_revision

log = logging.getLogger("apprelease.reconcile")

PRUNABLE_KINDS = ("Deployment", "Service", "Ingress", "ConfigMap", "HTTPRoute")
# Count-only status changes of one AppRelease are written at most this often (phase, step,
# revision and condition changes at once). A rollout's pods pass through several states over
# ~10 s; at 1 s nearly each was a status write (8 per edit, measured at 1,000 apps).
STATUS_COALESCE_SECONDS = 3.0
# A failure that waits for a spec change (an invalid spec) is still looked at this often.
NOT_TRANSIENT_RETRY_SECONDS = 300.0
RULES: TypeAdapter[list[NotificationRule]] = TypeAdapter(Rules)


class ClusterCache(Protocol):
    def app(self, key: AppKey) -> dict[str, Any] | None: ...
    def children(self, key: AppKey) -> Children: ...
    def owner_of(self, kind: str, namespace: str, name: str) -> AppKey | None: ...
    def remember(self, obj: dict[str, Any]) -> None: ...
    def forget(self, obj: dict[str, Any]) -> None: ...


class ConfigSource(Protocol):
    def state_for(self, app: AppRelease, observed: Observed, status: ConfigStatus | None) -> Observed: ...
    def execute(self, app: AppRelease, actions: tuple[ConfigAction, ...]) -> None: ...
    def forget(self, key: AppKey) -> None: ...


class NotificationSink(Protocol):
    """Takes notifications over without waiting (controller/notifier.py)."""

    def submit(self, namespace: str, rules: Sequence[Any], facts: Sequence[NotificationFacts]) -> None: ...


class AnalysisSource(Protocol):
    """Analysis templates and measurements (controller/analysis_runner.py)."""

    def state_for(self, app: AppRelease, observed: Observed) -> Observed: ...
    def execute(self, app: AppRelease, requests: tuple[MeasurementRequest, ...]) -> None: ...
    def forget(self, key: AppKey) -> None: ...


class RegistrySource(Protocol):
    def state_for(
        self, app: AppRelease, observed: Observed, previous: RegistrationStatus | None = None
    ) -> Observed: ...
    def execute(self, app: AppRelease, actions: tuple[RegistryAction, ...], *, busy: bool = False) -> None: ...
    def forget(self, key: AppKey) -> None: ...


@dataclass
class Outcome:
    requeue_after: float | None
    phase: str | None
    writes: int
    # Retry with the queue's back-off (a failure that may heal by itself).
    retry: bool = False


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        cache: ClusterCache,
        *,
        registry: RegistrySource | None = None,
        config: ConfigSource | None = None,
        analysis: AnalysisSource | None = None,
        policy: Policy | None = None,
        notifier: NotificationSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kube = kube
        self.cache = cache
        self.registry = registry
        self.config = config
        self.analysis = analysis
        self.policy = policy or Policy()
        self.notifier = notifier
        self.clock = clock
        self.events = EventRecorder(kube)
        self.app_metrics = AppMetrics()
        self._status_written_at: dict[AppKey, float] = {}
        # Per deleting AppRelease (by uid), this run's first attempt at its registry clean-up.
        self._deletion_started: dict[AppKey, tuple[str | None, datetime]] = {}
        # Per AppRelease whose finalizer this run released: its uid and the resourceVersion the
        # release was written against. A copy at or below it is older than the release: the
        # watch has not caught up yet, and finalizing it again would report a second verdict.
        self._released: dict[AppKey, tuple[str | None, int]] = {}
        # Per app, what this run last applied (or found converged) per child: a child that
        # needs applying again although that did not change was changed by someone else.
        self._applied: dict[AppKey, dict[tuple[str, str], str]] = {}
        self._drifted: dict[AppKey, set[tuple[str, str]]] = {}  # reported, not converged since

    def forget(self, key: AppKey) -> None:
        """The app is gone: its bookkeeping and its metric series."""
        self._status_written_at.pop(key, None)
        if self.analysis is not None:
            self.analysis.forget(key)
        self._applied.pop(key, None)
        self._drifted.pop(key, None)
        self.app_metrics.forget(key)
        self._deletion_started.pop(key, None)
        self._released.pop(key, None)

    def reconcile(self, key: AppKey) -> Outcome:
        """Never raises: the worker only ever sees "done" or "retry"."""
        started = time.perf_counter()
        result = "error"
        with reconciling(key):  # every log line meanwhile names the app and its revision
            try:
                outcome = self._reconcile(key)
                result = "ok" if not outcome.retry else "retry"
                return outcome
            except NotLeading:  # stepping down (a finalizer release refused, say): not ours any more
                return Outcome(None, None, 0)
            except Exception as exc:  # the last line of defence; _reconcile classifies its own
                log.exception("%s/%s: reconcile failed", *key)
                return Outcome(None, None, 0, retry=True) if classify(exc).failure.transient else Outcome(
                    NOT_TRANSIENT_RETRY_SECONDS, None, 0
                )
            finally:
                metrics.RECONCILES.labels(result).inc()
                metrics.RECONCILE_SECONDS.labels(result).observe(time.perf_counter() - started)

    def _reconcile(self, key: AppKey) -> Outcome:
        body = self.cache.app(key)
        if body is None:
            return Outcome(None, None, 0)
        set_revision((body.get("status") or {}).get("currentRevision"))
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        try:
            app = AppRelease.model_validate(body)
        except ValidationError as exc:
            if deleting:
                held = FINALIZER in _finalizers(body) and not self._released_already(key, body)
                return self._release_finalizer(key, body) if held else Outcome(None, None, 0)
            return self._failed(key, body, Failure(F.INVALID_SPEC, _validation_message(exc)))
        if deleting:
            if FINALIZER in _finalizers(body) and not self._released_already(key, body):
                return self._finalize(body, app, key)
            return Outcome(None, None, 0)  # owner references let the garbage collector clean up
        try:
            return self._converge(key, body, app)
        except Exception as exc:
            failure = classify(exc)
            if failure.log_traceback:
                log.exception("%s/%s: %s", key[0], key[1], failure.detail)
            if failure.gone:
                return Outcome(None, None, 0)
            if failure.quiet:
                return Outcome(None, None, 0, retry=True)
            return self._failed(key, body, failure)

    def _converge(self, key: AppKey, body: dict[str, Any], app: AppRelease) -> Outcome:
        status = _parse_status(body.get("status"))
        children = self.cache.children(key)
        observed = self._observe(app, children, status)
        writes = self._ensure_finalizer(body, app)
        now = self.clock()
        plan = make_plan(app, status, observed, now)
        set_revision(plan.status.current_revision)
        desired = render_children(app, plan.desired, self.policy)
        if self.registry is not None:
            # Before the children: instances go offline before any pod may leave.
            self.registry.execute(app, plan.registry_actions, busy=plan.registry_busy)
        if self.config is not None:
            # Published and read back before a Deployment gets the revision (the plan holds it).
            self.config.execute(app, plan.config_actions)
        if self.analysis is not None:
            self.analysis.execute(app, plan.measurements)  # taken when due, off this path
        writes += self._write_gates(app, plan.pod_gates)
        # History before the Deployments that run it: whatever fails later in this pass, a
        # revision that reached a Deployment is on record.
        writes += self._save_revisions(app, plan.revisions_to_save)
        writes += self._apply(app, desired, children)
        writes += self._prune(app, desired, children, plan.revisions_to_delete,
                              keep=plan.desired.untouched_names(app.name))

        new_status = plan.status
        saved = stored(new_status)
        self.app_metrics.observe(key, new_status)
        requeue = plan.requeue_after
        hold = self._coalesce(key, body, new_status, plan.events)
        if hold is not None:
            # Only counts moved and we wrote a moment ago: write them a little later, once.
            requeue = hold if requeue is None else min(requeue, hold)
            return Outcome(requeue, new_status.phase, writes)
        if self._write_status(body, new_status):
            writes += 1
            self._status_written_at[key] = time.monotonic()
            for event in plan.events:
                metrics.TRANSITIONS.labels(event.reason).inc()
                if event.reason in ("Aborted", "RolledBack"):
                    aborted = saved.state.reason if isinstance(saved.state, Aborted) else None
                    metrics.ROLLBACKS.labels(aborted or event.reason).inc()
                self.events.post(body, event)
            self._notify(app.namespace, app.name, app.spec.image, app.spec.notifications, status, new_status,
                         plan.events, now)
        return Outcome(requeue, new_status.phase, writes)

    def _notify(self, namespace: str, name: str, image: str, rules: Sequence[Any], before: AppReleaseStatus,
                after: AppReleaseStatus, events: Sequence[Event], now: datetime) -> None:
        """After a status write only: what it changed is told once (a restart reads it back)."""
        if self.notifier is None or not rules:
            return
        facts = notifications_for(namespace, name, image, before, after, events, now)
        if facts:
            self.notifier.submit(namespace, rules, facts)

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
        adopt = app.spec.adopt
        if adopt is not None:
            # Listed on each pass (no watch of ours selects them): the adopted revision is a
            # revision like the others, its pods counted, registered, checked and drained.
            children.adopted_pods = [pod_state(p) for p in self.kube.list(
                "Pod", app.namespace, labelSelector=adopted_pods_selector(adopt.selector))]
        observed = observe(children, app.uid, app.name, adopt.revision_hash if adopt else None)
        if self.config is not None:
            observed = self.config.state_for(app, observed, status.config)
        if self.analysis is not None:
            observed = self.analysis.state_for(app, observed)
        if self.registry is None:
            return observed
        return self.registry.state_for(app, observed, status.registration)

    # Failures --------------------------------------------------------------------------------

    def _failed(self, key: AppKey, body: dict[str, Any], failure: Failure) -> Outcome:
        """Show the failure in status (Stalled once past its bound), post an Event when it
        starts or stalls, and say when to look again."""
        now = self.clock()
        previous = _parse_status(body.get("status"))
        recorded = F.record(previous.failure, failure.failure, failure.detail, now)
        generation = int(body["metadata"].get("generation") or 0)
        status = F.with_failure(previous, recorded, now, generation)
        self.app_metrics.observe(key, status)
        events = []
        was = previous.failure
        if was is None or was.reason != recorded.reason:
            events.append(Event("Warning", recorded.reason, recorded.message))
        shown = previous.condition(C.STALLED)
        was_stalled = shown is not None and shown.status == "True" and shown.reason == recorded.reason
        if F.is_stalled(recorded, now) and not was_stalled:
            events.append(Event("Warning", "Stalled", status.message))
        log.warning("%s/%s: %s: %s", key[0], key[1], recorded.reason, failure.detail)
        try:
            written = self._write_status(body, status)
        except NotLeading:
            written = False
        except Exception as exc:  # the apiserver may be what failed: the failure stays in the log
            log.warning("%s/%s: could not write the failure to status: %s", key[0], key[1], exc)
            written = False
        if written:
            self._status_written_at[key] = time.monotonic()
            for event in events:
                self.events.post(body, event)
            spec = body.get("spec") or {}
            self._notify(key[0], key[1], str(spec.get("image") or ""), _rules(spec), previous, status, events, now)
        until_stalled = F.seconds_until_stalled(recorded, now)
        if failure.failure.transient:
            return Outcome(until_stalled, "Degraded" if until_stalled is None else status.phase, int(written), retry=True)
        return Outcome(NOT_TRANSIENT_RETRY_SECONDS, "Degraded", int(written))

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

    def _release_finalizer(self, key: AppKey, body: dict[str, Any]) -> Outcome:
        """Only once the release is written does the registry forget the app: a refused
        release (a conflict) is retried with the registry's reads still at hand."""
        try:
            self._patch_finalizers(body, [f for f in _finalizers(body) if f != FINALIZER])
        except ApiError as exc:
            if not exc.not_found:
                log.warning("%s/%s: releasing the finalizer: %s", body["metadata"]["namespace"],
                            body["metadata"]["name"], exc)
                return Outcome(None, None, 0, retry=True)
        self._released[key] = (body["metadata"].get("uid"), _resource_version(body))
        if self.registry is not None:
            self.registry.forget(key)
        if self.config is not None:
            self.config.forget(key)
        return Outcome(None, None, 1)

    def _released_already(self, key: AppKey, body: dict[str, Any]) -> bool:
        released = self._released.get(key)
        return (released is not None and released[0] == body["metadata"].get("uid")
                and _resource_version(body) <= released[1])

    def _finalize(self, body: dict[str, Any], app: AppRelease, key: AppKey) -> Outcome:
        """Registry clean-up before the AppRelease goes; whatever fails, deletion proceeds
        once registry.deletionTimeout has passed since the deletion request, or since this
        operator run first tried if that is later: an operator that was down longer than
        deletionTimeout still reads the registry and takes the instances offline first."""
        now = self.clock()
        deleted_at = parse_time_or(body["metadata"].get("deletionTimestamp"), now)
        started = self._deletion_started.get(key)
        if started is None or started[0] != app.uid:
            started = self._deletion_started[key] = (app.uid, now)
        since = max(deleted_at, started[1])
        timeout = timedelta(seconds=(app.spec.registry or Registry()).deletion_timeout_seconds)
        try:
            return self._finalize_steps(body, app, key, now, since)
        except NotLeading:
            raise  # not a deletion failure: the new leader finishes it
        except Exception as exc:
            failure = classify(exc)
            if failure.gone:
                return Outcome(None, None, 0)
            if now - since < timeout:
                log.warning("%s/%s: deleting: %s; retrying", key[0], key[1], failure.detail)
                return Outcome(None, None, 0, retry=True)
            self.events.post(body, Event(
                "Warning", "DeletionForced",
                f"deleted without finishing the registry clean-up after registry.deletionTimeout"
                f" ({duration_text(app.spec.registry.deletion_timeout) if app.spec.registry else '0s'}):"
                f" {failure.failure.reason}: {failure.detail}",
            ))
            return self._release_finalizer(key, body)

    def _finalize_steps(
        self, body: dict[str, Any], app: AppRelease, key: AppKey, now: datetime, since: datetime
    ) -> Outcome:
        status = _parse_status(body.get("status"))
        children = self.cache.children(key)
        observed = self._observe(app, children, status)
        plan = plan_deletion(app, status, observed, now, since)
        writes = 0
        if self.registry is not None:
            self.registry.execute(app, tuple(plan.actions))
        if self.config is not None:
            self.config.execute(app, tuple(plan.config_actions))
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
            return self._release_finalizer(key, body)
        return Outcome(plan.requeue_after, None, writes)

    # Writes ------------------------------------------------------------------------------

    def _write_gates(self, app: AppRelease, gates: tuple[GateChange, ...]) -> int:
        """The pods' readiness-gate conditions (server-side apply of that one condition on
        pods/status: the kubelet's own conditions stay theirs)."""
        for gate in gates:
            condition = {
                "type": REGISTERED_GATE, "status": "True" if gate.status else "False",
                "reason": gate.reason, "message": gate.message, "lastTransitionTime": gate.since,
            }
            body = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": gate.pod, "namespace": app.namespace},
                    "status": {"conditions": [condition]}}
            try:
                self.kube.apply(body, subresource="status")
            except ApiError as exc:
                if not exc.not_found:
                    raise
        return len(gates)

    def _save_revisions(self, app: AppRelease, records: tuple) -> int:
        for record in records:
            self.cache.remember(self.kube.apply(to_controller_revision(app, record)))
        return len(records)

    def _apply(self, app: AppRelease, desired: list[dict[str, Any]], children: Children) -> int:
        writes = 0
        applied = self._applied.setdefault((app.namespace, app.name), {})
        drifted = self._drifted.setdefault((app.namespace, app.name), set())
        for obj in desired:
            kind, name = obj["kind"], obj["metadata"]["name"]
            live = children.get(kind, name)
            if obj["kind"] == "ConfigMap":
                # Immutable and content-named: present with the same data means done.
                if live is not None and live.get(DATA_HASH) == data_hash(obj.get("data") or {}):
                    continue
            elif not drift.needs_apply(obj, live):
                applied[(kind, name)] = content_hash(obj)
                drifted.discard((kind, name))
                continue
            adopting = False
            if live is None:
                adopting = self._check_name_is_free(app, kind, name)
            elif ((kind, name) not in drifted and applied.get((kind, name)) in (None, content_hash(obj))
                  and self._report_drift(app, obj, live, known=applied.get((kind, name)) is not None)):
                # Not a change of ours (this process applied it as it is, or, after a restart,
                # does not know) and someone else's. Once per drift: an apply that does not
                # converge (a list entry another manager owns) is retried without an Event each time.
                drifted.add((kind, name))
            result = self.kube.apply(obj)
            if adopting:
                result = self._take_sole_ownership(result)
            self.cache.remember(result)
            applied[(kind, name)] = content_hash(obj)
            writes += 1
        return writes

    def _report_drift(self, app: AppRelease, obj: dict[str, Any], live: dict[str, Any], *, known: bool) -> bool:
        """Another writer (Rancher's UI, kubectl edit) changed fields we own: say who, once per
        change, before the apply takes them back. Read off the object's managedFields (the
        cache keeps none: one GET, only when an apply is due anyway), so it holds after a
        restart: a field we set that another manager owns with another value. ``known``: this
        process applied the object as it is, so any difference is someone else's. True once
        reported."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            current: dict[str, Any] | None = self.kube.get(kind, app.namespace, name)
        except ApiError:
            current = None
        owners = drift.drifted_fields(current, obj, FIELD_MANAGER) if current else {}
        if not owners and not known:
            return False
        paths = [p for found in owners.values() for p in found] or drift.differing_paths(live, obj)
        writer = next(iter(owners), None) or (drift.last_other_writer(current, FIELD_MANAGER) if current else None)
        by = f"by {writer} " if writer else ""
        self.events.post({"metadata": app.metadata}, Event(
            "Warning", "DriftReverted",
            f"{kind} {name} was changed {by}outside the AppRelease ({', '.join(paths[:5]) or 'its fields'});"
            " the AppRelease's fields are applied again. Change the AppRelease instead (docs/adopt.md).",
        ))
        return True

    def _take_sole_ownership(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An adopted object keeps only our field manager (and the controllers' status): a
        field its old manager (kubectl, Rancher) also set would otherwise stay when a later
        revision leaves it out, as server-side apply removes only fields no one else owns.
        Their annotations (kubectl's last-applied) stay on the object, owned by no one."""
        meta = obj["metadata"]
        kept = [m for m in meta.get("managedFields") or []
                if m.get("manager") == FIELD_MANAGER or m.get("subresource")]
        if len(kept) == len(meta.get("managedFields") or []):
            return obj
        return dict(self.kube.merge_patch(obj["kind"], meta["namespace"], meta["name"],
                                          {"metadata": {"managedFields": kept}}))

    def _check_name_is_free(self, app: AppRelease, kind: str, name: str) -> bool:
        """Never apply over an object this AppRelease does not own: one field manager serves
        every AppRelease, so an apply would silently take the other's object over. True when
        the object is one the AppRelease adopts (spec.adopt)."""
        owner = self.cache.owner_of(kind, app.namespace, name)
        if owner is not None and owner != (app.namespace, app.name):
            raise ChildConflict(f"{kind} {name} belongs to AppRelease {owner[1]}")
        try:
            existing = self.kube.get(kind, app.namespace, name)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        if owned_by(existing, app.uid):
            return False
        if adoptable(app, existing):
            return True
        refs = existing.get("metadata", {}).get("ownerReferences") or []
        holder = next((f"{r.get('kind')} {r.get('name')}" for r in refs if r.get("controller")), None)
        raise ChildConflict(
            f"{kind} {name} already exists and is "
            + (f"controlled by {holder}" if holder else "not managed by this AppRelease")
        )

    def _prune(
        self, app: AppRelease, desired: list[dict[str, Any]], children: Children, revisions: tuple,
        *, keep: set[tuple[str, str]],
    ) -> int:
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired} | keep
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


def _resource_version(body: dict[str, Any]) -> int:
    """As the cache compares them (the apiserver's are etcd revisions)."""
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _rules(spec: dict[str, Any]) -> list[NotificationRule]:
    """spec.notifications of a spec that may not validate as a whole."""
    try:
        return RULES.validate_python(spec.get("notifications") or [])
    except ValidationError:
        return []


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
