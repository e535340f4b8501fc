"""ReleasePipelines: read the stages, decide (rollout/pipeline.py), promote, record.

kopf only tells us which pipelines exist and wakes the loop when a pipeline or an approval
changes; a pass every few seconds notices the stages' AppReleases becoming Healthy and soak
times running out. Promotions are server-side applies of exactly the artifact's fields
(image, config files) under one field manager, dry-run for every app first: all apps or none.
Writes go through the operator's fenced client, so only the leader promotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api.pipeline import (
    APPROVAL_PLURAL,
    PIPELINE_KIND,
    PIPELINE_PLURAL,
    ReleasePipelineSpec,
    ReleasePipelineStatus,
)
from ..api.spec import API_VERSION, GROUP, KIND, VERSION
from ..k8s.client import RESOURCES, ApiError, Kube, apply_patch_body
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
from .events import EventRecorder

log = logging.getLogger("apprelease.pipeline")

# The field manager of every promotion: `kubectl get arl -o yaml --show-managed-fields` names
# the pipeline as the writer of spec.image, spec.config.files and spec.config.nacos.items.
PIPELINE_MANAGER = "apprelease-pipeline"
PASS_SECONDS = 2.0
PIPELINE_LABEL = f"{GROUP}/pipeline"

# The notification hook: each callable gets every "what happened" record (promoted, waiting,
# rejected, refused, failed). The notification issue plugs its senders in here.
NOTIFIERS: list[Callable[[str, Notification], None]] = []


class PipelineController:
    """One pass over one pipeline; every API call is synchronous (run on a thread)."""

    def __init__(self, kube: Kube):
        self.kube = kube
        self.events = EventRecorder(kube)

    def reconcile(self, namespace: str, name: str, now: datetime | None = None) -> None:
        try:
            body = self.kube.get("ReleasePipeline", namespace, name)
        except ApiError as exc:
            if not exc.not_found:
                log.warning("pipeline %s/%s: %s", namespace, name, exc)
            return
        now = now or datetime.now(UTC)
        try:
            spec = ReleasePipelineSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._write_status(body, {"observedGeneration": body["metadata"].get("generation"),
                                      "message": f"invalid spec: {exc.errors()[0].get('msg')}"})
            return
        try:
            previous = ReleasePipelineStatus.model_validate(body.get("status") or {})
        except ValidationError:
            previous = ReleasePipelineStatus()  # edited by hand: start over rather than crash
        apps = self._app_names(spec)
        observed = [self._observe_stage(stage.namespace, apps) for stage in spec.stages]
        approvals = self._approvals(namespace, name, [stage.namespace for stage in spec.stages])
        stored = self._stored(namespace, name, approvals)
        decision = decide(spec, observed, previous, approvals, stored, now,
                          generation=body["metadata"].get("generation"), pipeline=name)
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


def log_notification(pipeline: str, note: Notification) -> None:
    log.info("pipeline %s: %s %s %s: %s", pipeline, note.kind, note.stage, note.digest, note.message)


NOTIFIERS.append(log_notification)


# kopf wiring --------------------------------------------------------------------------------


class PipelineLoop:
    """The known pipelines and the loop that passes over them."""

    def __init__(self) -> None:
        self.pipelines: set[tuple[str, str]] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, memo: kopf.Memo) -> None:
        controller: PipelineController | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), PASS_SECONDS)
            self.wake.clear()
            runtime = memo.get("runtime")
            if runtime is None or not runtime.leading:
                continue
            controller = controller or PipelineController(runtime.kube)
            for namespace, name in sorted(self.pipelines):
                try:
                    await asyncio.to_thread(controller.reconcile, namespace, name)
                except Exception:  # a pass must never end the loop; the next pass retries
                    log.exception("pipeline %s/%s: pass failed", namespace, name)


@kopf.on.startup()
async def start_pipelines(memo: kopf.Memo, **_: Any) -> None:
    loop = PipelineLoop()
    loop.task = asyncio.create_task(loop.run(memo), name="apprelease-pipelines")
    memo["pipelines"] = loop


@kopf.on.cleanup()
async def stop_pipelines(memo: kopf.Memo, **_: Any) -> None:
    loop: PipelineLoop | None = memo.get("pipelines")
    if loop is not None and loop.task is not None:
        loop.task.cancel()


@kopf.on.event(GROUP, VERSION, PIPELINE_PLURAL)
async def pipeline_changed(event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
                           **_: Any) -> None:
    loop: PipelineLoop = memo["pipelines"]
    key = (namespace or "", name)
    if event.get("type") == "DELETED":
        loop.pipelines.discard(key)
    else:
        loop.pipelines.add(key)
    loop.wake.set()


@kopf.on.event(GROUP, VERSION, APPROVAL_PLURAL)
async def approval_changed(memo: kopf.Memo, **_: Any) -> None:
    loop: PipelineLoop = memo["pipelines"]
    loop.wake.set()

