"""ReleasePipelines: read the stages, decide (rollout/pipeline.py), promote, record.

Informers (k8s/informer.py) watch the ReleasePipelines, the ReleaseApprovals, the
AppReleases and the (Cluster)AnalysisTemplates, and wake a pipeline when something it reads
changes: its spec, an approval naming it, an app of one of its stages' namespaces (what the
pipeline reads of it: its artifact, labels and settled status), a template a stage's analysis
names. A pipeline whose artifact soaks or whose promotion
failed is passed every PASS_SECONDS until that ends; every pipeline at least every
RESYNC_SECONDS. A pass reads fresh from the apiserver (a cache a moment behind our own
status write could promote twice); the caches only say when to pass. Promotions are server-side applies of exactly the artifact's fields
(image, config files) under one field manager, dry-run for every app first: all apps or none.
Writes go through the operator's fenced client, so only the leader promotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import kopf
from pydantic import ValidationError

from ..api.analysis_template import CLUSTER_TEMPLATE_KIND, TEMPLATE_KIND
from ..api.pipeline import (
    APPROVAL_KIND,
    PIPELINE_KIND,
    ReleasePipelineSpec,
    ReleasePipelineStatus,
)
from ..api.spec import API_VERSION, GROUP, KIND
from ..k8s.client import RESOURCES, ApiError, Kube, apply_patch_body, load_api_client
from ..k8s.informer import Informers, Source
from ..render.hashing import content_hash
from ..rollout.analysis import TemplateKey
from ..rollout.outcome import Event
from ..rollout.pipeline import (
    AppObservation,
    ApprovalView,
    Artifact,
    ArtifactSet,
    Notification,
    Promotion,
    apply_body,
    artifact_store_data,
    artifact_store_name,
    decide,
    leftover_files,
    observe_app,
    promotion_done,
    stored_artifacts,
)
from ..rollout.timefmt import format_time
from .analysis_runner import AnalysisRunner
from .events import EventRecorder

log = logging.getLogger("apprelease.pipeline")

# The field manager of every promotion: `kubectl get arl -o yaml --show-managed-fields` names
# the pipeline as the writer of spec.image, spec.config.files and spec.config.nacos.items.
PIPELINE_MANAGER = "apprelease-pipeline"
PASS_SECONDS = 2.0  # while an artifact soaks, or a failed promotion waits for its retry
RESYNC_SECONDS = 60.0  # an idle pipeline, in case a wake was missed
PIPELINE_LABEL = f"{GROUP}/pipeline"
TEMPLATE_KINDS = (TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND)

# The notification hook: each callable gets every "what happened" record (promoted, waiting,
# rejected, refused, failed). The notification issue plugs its senders in here.
NOTIFIERS: list[Callable[[str, Notification], None]] = []


class PipelineController:
    """One pass over one pipeline; every API call is synchronous (run on a thread)."""

    def __init__(self, kube: Kube, analysis: AnalysisRunner | None = None):
        self.kube = kube
        self.events = EventRecorder(kube)
        self.analysis = analysis  # takes the stages' analysis measurements (None: none are taken)

    def reconcile(self, namespace: str, name: str, now: datetime | None = None) -> ReleasePipelineStatus | None:
        """One pass; the status it leaves (None: no pipeline, or no status to judge by)."""
        try:
            body = self.kube.get("ReleasePipeline", namespace, name)
        except ApiError as exc:
            if not exc.not_found:
                log.warning("pipeline %s/%s: %s", namespace, name, exc)
                raise
            self.forget(namespace, name)
            return None
        now = now or datetime.now(UTC)
        try:
            spec = ReleasePipelineSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._write_status(body, {"observedGeneration": body["metadata"].get("generation"),
                                      "message": f"invalid spec: {exc.errors()[0].get('msg')}"})
            return ReleasePipelineStatus()
        try:
            previous = ReleasePipelineStatus.model_validate(body.get("status") or {})
        except ValidationError:
            previous = ReleasePipelineStatus()  # edited by hand: start over rather than crash
        apps = self._app_names(spec)
        observed = [self._observe_stage(stage.namespace, apps) for stage in spec.stages]
        approvals = self._approvals(namespace, name, [stage.namespace for stage in spec.stages])
        stored = self._stored(namespace, name, approvals)
        analysed = {stage.name: (stage_key(namespace, name, stage.name), stage) for stage in spec.stages
                    if stage.analysis is not None}
        self.forget(namespace, name, keep_stages=analysed)
        measured = {stage_name: self.analysis.observe(runner_key, stage.namespace, [stage.analysis])
                    for stage_name, (runner_key, stage) in analysed.items()
                    if self.analysis is not None and stage.analysis}
        decision = decide(spec, observed, previous, approvals, stored, now,
                          generation=body["metadata"].get("generation"), pipeline=name, analysis=measured)
        if self.analysis is not None:
            for stage_name, (runner_key, _) in analysed.items():
                self.analysis.execute_for(runner_key, decision.analysis_requests.get(stage_name, ()), wake=False)
        for digest, artifacts in decision.to_store.items():
            self._store(body, digest, artifacts)
        if decision.to_store:
            self._prune_store(body, {p.digest for stage in decision.status.stages for p in stage.passed})
        status = decision.status
        events = list(decision.events)
        notes = list(decision.notifications)
        outcomes = dict(decision.approval_outcomes)
        for promotion in decision.promotions:
            failure = self._promote(promotion)
            result = promotion_done(status, promotion, failure, now)
            if failure is None:
                self._tell_apps(promotion, name, result.events[0].message)
            status, events, notes = result.status, events + list(result.events), notes + list(result.notifications)
            if result.approval_outcome and promotion.approval:
                outcomes[promotion.approval] = result.approval_outcome
        wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        if wire != body.get("status"):
            self._write_status(body, wire)
        for key, (outcome, message) in outcomes.items():
            self._record_approval(key, outcome, message, now)
        for event in events:
            self.events.post(body, event)
        for note in notes:
            for notify in NOTIFIERS:
                notify(f"{namespace}/{name}", note)
        return status

    def forget(self, namespace: str, name: str, keep_stages: Iterable[str] = ()) -> None:
        """Drop the analysis runner's measurements of the pipeline's stages but ``keep_stages``
        (none kept: the pipeline is gone); a deleted pipeline or stage never asks again."""
        if self.analysis is None:
            return
        namespace_of, prefix = stage_key(namespace, name, "")
        kept = {stage_key(namespace, name, stage) for stage in keep_stages}
        self.analysis.forget_matching(
            lambda key: key[0] == namespace_of and key[1].startswith(prefix) and key not in kept)

    # Reads ---------------------------------------------------------------------------------

    def _app_names(self, spec: ReleasePipelineSpec) -> list[str]:
        if spec.apps.names is not None:
            return list(spec.apps.names)
        labels = spec.apps.selector.match_labels if spec.apps.selector else {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        items = self.kube.list("AppRelease", spec.stages[0].namespace, labelSelector=selector)
        return sorted(item["metadata"]["name"] for item in items)

    def _observe_stage(self, namespace: str, apps: list[str]) -> list[AppObservation]:
        bodies = {item["metadata"]["name"]: item for item in self.kube.list("AppRelease", namespace)}
        return [observe_app(app, bodies.get(app)) for app in apps]

    def _approvals(self, namespace: str, name: str, stage_namespaces: list[str]) -> list[ApprovalView]:
        """This pipeline's approvals in its stages' namespaces (one in the wrong stage's
        namespace is seen, and refused; elsewhere nobody may release anything)."""
        views = []
        items = [item for stage_namespace in stage_namespaces
                 for item in self.kube.list("ReleaseApproval", stage_namespace)]
        for item in items:
            spec = item.get("spec") or {}
            if spec.get("pipeline") != name or spec.get("pipelineNamespace") != namespace:
                continue
            meta = item["metadata"]
            views.append(ApprovalView(
                namespace=meta["namespace"], name=meta["name"], stage=str(spec.get("stage")),
                artifact=str(spec.get("artifact")), decision=spec.get("decision", "Reject"),
                approver=str(spec.get("approver")), created=meta.get("creationTimestamp", ""),
                handled=bool((item.get("status") or {}).get("outcome")),
            ))
        return views

    def _stored(self, namespace: str, name: str, approvals: list[ApprovalView]) -> dict[str, ArtifactSet]:
        """The stored content of the artifacts unhandled approvals name (older artifacts)."""
        stored: dict[str, ArtifactSet] = {}
        for digest in {a.artifact for a in approvals if not a.handled and a.decision == "Approve"}:
            try:
                data = self.kube.get("ConfigMap", namespace, artifact_store_name(name, digest)).get("data") or {}
                stored[digest] = stored_artifacts(data)
            except ApiError as exc:
                if not exc.not_found:
                    raise
                continue
            except ValueError:
                continue
        return stored

    # Writes --------------------------------------------------------------------------------

    def _store(self, pipeline: dict[str, Any], digest: str, artifacts: ArtifactSet) -> None:
        """Keep a passed artifact's content (an immutable ConfigMap the pipeline owns): an
        approval may promote it again later (a rollback, a hotfix)."""
        meta = pipeline["metadata"]
        config_map = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": artifact_store_name(meta["name"], digest), "namespace": meta["namespace"],
                "labels": {PIPELINE_LABEL: meta["name"]},
                "ownerReferences": [{"apiVersion": pipeline.get("apiVersion", API_VERSION), "kind": PIPELINE_KIND,
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "immutable": True,
            "data": artifact_store_data(artifacts),
        }
        try:
            self.kube.create(config_map)
        except ApiError as exc:
            if not exc.conflict:
                log.warning("could not store artifact %s of %s: %s", digest, meta["name"], exc)

    def _prune_store(self, pipeline: dict[str, Any], kept: set[str]) -> None:
        """Stored artifacts no stage lists as passed any more can never be approved again."""
        meta = pipeline["metadata"]
        wanted = {artifact_store_name(meta["name"], digest) for digest in kept}
        for config_map in self.kube.list("ConfigMap", meta["namespace"], labelSelector=f"{PIPELINE_LABEL}={meta['name']}"):
            if config_map["metadata"]["name"] not in wanted:
                self.kube.delete("ConfigMap", meta["namespace"], config_map["metadata"]["name"],
                                 uid=config_map["metadata"].get("uid"))

    def _apply_artifact(self, promotion: Promotion, app: str, artifact: Artifact, *, dry_run: bool) -> Any:
        obj = apply_body(app, promotion.namespace, artifact, API_VERSION, KIND)
        query = {"fieldManager": PIPELINE_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return self.kube.request("PATCH", RESOURCES["AppRelease"].path(promotion.namespace, app), query=query,
                                 body=apply_patch_body(obj), content_type="application/apply-patch+yaml",
                                 resource="AppRelease")

    def _promote(self, promotion: Promotion) -> str | None:
        """Apply the artifact to every app of the target stage, or to none: None when done,
        else which apps did not take it and why."""
        problems = []
        for app, artifact in sorted(promotion.artifacts.items()):
            try:
                result = self._apply_artifact(promotion, app, artifact, dry_run=True)
            except ApiError as exc:
                problems.append(f"{app}: {exc.message}")
                continue
            leftover = leftover_files(app, result.get("spec") or {}, artifact)
            if leftover:
                problems.append(leftover)
        if problems:
            return "; ".join(problems)
        applied: list[str] = []
        for app, artifact in sorted(promotion.artifacts.items()):
            try:
                self._apply_artifact(promotion, app, artifact, dry_run=False)
            except ApiError as exc:
                return (f"{app}: {exc.message} (after the dry run passed; already applied:"
                        f" {', '.join(applied) or 'none'})")
            applied.append(app)
        return None

    def _tell_apps(self, promotion: Promotion, pipeline: str, message: str) -> None:
        """An Event on each AppRelease that got the artifact: `kubectl describe` there says why."""
        for app in sorted(promotion.artifacts):
            target = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": app, "namespace": promotion.namespace}}
            self.events.post(target, Event("Normal", "PipelinePromoted", f"pipeline {pipeline}: {message}"))

    def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        meta = body["metadata"]
        patch = {"apiVersion": body.get("apiVersion", API_VERSION), "kind": PIPELINE_KIND,
                 "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": status}
        try:
            self.kube.apply(patch, subresource="status", manager=PIPELINE_MANAGER)
        except ApiError as exc:
            log.warning("could not write the status of pipeline %s/%s: %s", meta["namespace"], meta["name"], exc)

    def _record_approval(self, key: str, outcome: str, message: str, now: datetime) -> None:
        namespace, name = key.split("/", 1)
        path = RESOURCES["ReleaseApproval"].path(namespace, name, "status")
        patch = {"status": {"outcome": outcome, "message": message[:1024], "at": format_time(now)}}
        try:
            self.kube.request("PATCH", path, query={"fieldManager": PIPELINE_MANAGER}, body=patch,
                              content_type="application/merge-patch+json", resource="ReleaseApproval/status")
        except ApiError as exc:
            log.warning("could not record the outcome of approval %s: %s", key, exc)


def stage_key(namespace: str, pipeline: str, stage: str) -> tuple[str, str]:
    """The analysis runner's key for a pipeline stage's measurements (a '/' no app name has)."""
    return namespace, f"pipeline/{pipeline}/{stage}"


def log_notification(pipeline: str, note: Notification) -> None:
    log.info("pipeline %s: %s %s %s: %s", pipeline, note.kind, note.stage, note.digest, note.message)


NOTIFIERS.append(log_notification)


# Waking pipelines --------------------------------------------------------------------------

PipelineKey = tuple[str, str]  # (namespace, name)
# Pending reasons only time (or a measurement, folded on the next pass) moves on.
IN_MOTION = frozenset({"Soaking", "PromotionFailed", "Analyzing"})


class PipelineWakes:
    """Which pipelines are due for a pass: changed since their last pass, in motion (soaking,
    retrying) for PASS_SECONDS, or idle for RESYNC_SECONDS. Thread-safe: informers report
    changes on their threads, the loop takes what is due on its own. Times are monotonic."""

    def __init__(self, notify: Callable[[], None] = lambda: None):
        self._notify = notify
        self._lock = threading.Lock()
        self._dirty: set[PipelineKey] = set()
        self._due: dict[PipelineKey, float] = {}
        self._seen_apps: dict[tuple[str, str], Any] = {}
        self._seen_pipelines: dict[PipelineKey, Any] = {}

    def changed(self, key: PipelineKey, seen: Any = None) -> None:
        """The pipeline ``key`` (its watched form ``seen``; None: gone, or an approval naming
        it) changed: due now, unless ``seen`` is what its last change said."""
        with self._lock:
            if seen is not None and self._seen_pipelines.get(key) == seen:
                return
            if seen is None:
                self._seen_pipelines.pop(key, None)
            else:
                self._seen_pipelines[key] = seen
            self._dirty.add(key)
        self._notify()

    def app_changed(self, app: tuple[str, str], seen: Any,
                    stage_namespaces: Mapping[PipelineKey, Sequence[str]]) -> list[PipelineKey]:
        """An AppRelease's observed form (None: gone) changed: the pipelines with a stage in
        its namespace, now due."""
        with self._lock:
            if self._seen_apps.get(app) == seen and seen is not None:
                return []
            if seen is None:
                self._seen_apps.pop(app, None)
            else:
                self._seen_apps[app] = seen
            woken = sorted(key for key, namespaces in stage_namespaces.items() if app[0] in namespaces)
            self._dirty.update(woken)
        if woken:
            self._notify()
        return woken

    def take_due(self, pipelines: Iterable[PipelineKey], now: float) -> list[PipelineKey]:
        with self._lock:
            due = sorted(key for key in pipelines if key in self._dirty or self._due.get(key, 0.0) <= now)
            self._dirty.difference_update(due)
            known = set(pipelines)
            self._due = {key: at for key, at in self._due.items() if key in known}
            return due

    def passed(self, key: PipelineKey, status: ReleasePipelineStatus | None, now: float) -> None:
        """After a pass: ``status`` as it left the pipeline (None: the pass failed)."""
        moving = status is None or any(p.reason in IN_MOTION for p in status.pending)
        with self._lock:
            self._due[key] = now + (PASS_SECONDS if moving else RESYNC_SECONDS)

    def next_wait(self, pipelines: Iterable[PipelineKey], now: float) -> float:
        with self._lock:
            keys = list(pipelines)
            if any(key in self._dirty for key in keys):
                return 0.0
            return max(0.0, min((self._due.get(key, 0.0) - now for key in keys), default=RESYNC_SECONDS))


def app_seen(obj: Mapping[str, Any]) -> Any:
    """What a pipeline reads of an AppRelease (observe_app, the selector): a change in
    anything else (a count, a condition's time) wakes nobody. Kept as its hash."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    registration = status.get("registration") or {}
    return content_hash({
        "labels": meta.get("labels") or {}, "generation": meta.get("generation"),
        "artifact": Artifact.of_spec(spec).to_wire(),
        "status": {key: status.get(key) for key in ("observedGeneration", "phase", "currentRevision",
                                                    "stableRevision")},
        "registration": [registration.get("provider"),
                         [(r.get("revision"), r.get("healthy"), r.get("expected"))
                          for r in registration.get("revisions") or []]],
    })


# An (Cluster)AnalysisTemplate as its informer files it: (namespace, name), "" for a cluster one.
TemplateName = tuple[str, str]


class PipelineSeen(NamedTuple):
    """What the informer keeps of a pipeline: what decides whom a change wakes."""

    namespaces: tuple[str, ...]  # its stages'
    generation: Any  # our own status writes wake nobody
    templates: frozenset[TemplateName]  # the templates its stages' analyses read


def pipeline_seen(obj: Mapping[str, Any]) -> PipelineSeen:
    stages = (obj.get("spec") or {}).get("stages") or []
    templates = frozenset(
        ("" if ref.get("clusterScope") else str(stage.get("namespace")), str(ref.get("templateName")))
        for stage in stages for ref in (stage.get("analysis") or {}).get("templates") or [])
    return PipelineSeen(tuple(str(s.get("namespace")) for s in stages),
                        (obj.get("metadata") or {}).get("generation"), templates)


def template_users(template: TemplateName, pipelines: Mapping[PipelineKey, PipelineSeen]) -> list[PipelineKey]:
    """The pipelines a change of ``template`` wakes: a stage of theirs analyses with it (one
    that was missing is a verdict until it appears; waiting for the resync is a minute)."""
    return sorted(key for key, seen in pipelines.items() if template in seen.templates)


def _template_seen(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("generation", 0)


def _approval_pipeline(obj: Mapping[str, Any]) -> PipelineKey:
    spec = obj.get("spec") or {}
    return str(spec.get("pipelineNamespace")), str(spec.get("pipeline"))


def _by_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta["name"]


class PipelineLoop:
    """The pipelines (from their informer) and the loop that passes over those due."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.wakes = PipelineWakes(self._notify)
        self._informers: dict[str, Informers] = {}
        self._analysis: AnalysisRunner | None = None

    def _notify(self) -> None:
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self.wake.set)

    def seen_pipelines(self) -> dict[PipelineKey, PipelineSeen]:
        pipelines = self._informers[PIPELINE_KIND].of_kind(PIPELINE_KIND)
        return {key: kept[0] for key in pipelines.all_keys() if (kept := pipelines.get(key))}

    def stage_namespaces(self) -> dict[PipelineKey, tuple[str, ...]]:
        return {key: seen.namespaces for key, seen in self.seen_pipelines().items()}

    def _changed(self, kind: str, key: tuple[str, str]) -> None:
        """An informer's report (on its thread): which pipelines this change wakes."""
        kept = self._informers[kind].of_kind(kind).get(key)
        if kind == PIPELINE_KIND:
            self.wakes.changed(key, kept[0] if kept else None)
        elif kind == APPROVAL_KIND:
            for pipeline in kept:
                self.wakes.changed(pipeline)
        elif kind in TEMPLATE_KINDS:
            if self._analysis is not None:  # the pass must read it anew, not the runner's copy
                self._analysis.template_changed(key[0], TemplateKey(key[1], kind == CLUSTER_TEMPLATE_KIND))
            for pipeline in template_users(key, self.seen_pipelines()):
                self.wakes.changed(pipeline)
        else:
            self.wakes.app_changed(key, kept[0] if kept else None, self.stage_namespaces())

    def start_informers(self, runtime: Any) -> None:
        options = runtime.options
        sources = {
            PIPELINE_KIND: Source(PIPELINE_KIND, pipeline_seen, key=_by_name, all_objects=True),
            APPROVAL_KIND: Source(APPROVAL_KIND, _approval_pipeline, key=_by_name, all_objects=True),
            KIND: Source(KIND, app_seen, key=_by_name, all_objects=True),
            TEMPLATE_KIND: Source(TEMPLATE_KIND, _template_seen, key=_by_name, all_objects=True),
            CLUSTER_TEMPLATE_KIND: Source(CLUSTER_TEMPLATE_KIND, _template_seen, key=_by_name, all_objects=True),
        }
        # Watches hold their connection for minutes: a pool of their own, one per watch.
        watches = len(sources) * max(1, len(options.namespaces))
        kube = Kube(load_api_client(options.kubeconfig, options.context, pool_size=watches,
                                    instance=runtime.identity))
        self._analysis = getattr(runtime, "analysis", None)
        for kind, source in sources.items():
            namespaces = () if kind == CLUSTER_TEMPLATE_KIND else options.namespaces  # cluster-scoped: one watch
            self._informers[kind] = Informers(kube, [source], namespaces=namespaces, label_selector="",
                                              on_change=functools.partial(self._changed, kind))
        for informers in self._informers.values():
            informers.start()

    def stop_informers(self) -> None:
        for informers in self._informers.values():
            informers.stop()

    def synced(self) -> bool:
        return bool(self._informers) and all(i.wait_synced(0) for i in self._informers.values())

    async def run(self, memo: kopf.Memo) -> None:
        self._event_loop = asyncio.get_running_loop()
        controller: PipelineController | None = None
        known: set[PipelineKey] = set()
        wait = PASS_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)
            self.wake.clear()
            wait = PASS_SECONDS
            runtime = memo.get("runtime")
            if runtime is None:
                continue
            if not self._informers:
                self.start_informers(runtime)
            if not runtime.leading or not self.synced():
                continue
            controller = controller or PipelineController(runtime.kube, getattr(runtime, "analysis", None))
            pipelines = list(self.stage_namespaces())
            for namespace, name in known - set(pipelines):  # deleted: never passed again
                controller.forget(namespace, name)
            known = set(pipelines)
            for namespace, name in self.wakes.take_due(pipelines, time.monotonic()):
                status: ReleasePipelineStatus | None = None
                try:
                    status = await asyncio.to_thread(controller.reconcile, namespace, name)
                except Exception:  # a pass must never end the loop; the next pass retries
                    log.exception("pipeline %s/%s: pass failed", namespace, name)
                self.wakes.passed((namespace, name), status, time.monotonic())
            wait = self.wakes.next_wait(pipelines, time.monotonic())


@kopf.on.startup()
async def start_pipelines(memo: kopf.Memo, **_: Any) -> None:
    loop = PipelineLoop()
    loop.task = asyncio.create_task(loop.run(memo), name="apprelease-pipelines")
    memo["pipelines"] = loop


@kopf.on.cleanup()
async def stop_pipelines(memo: kopf.Memo, **_: Any) -> None:
    loop: PipelineLoop | None = memo.get("pipelines")
    if loop is not None:
        loop.stop_informers()
        if loop.task is not None:
            loop.task.cancel()
