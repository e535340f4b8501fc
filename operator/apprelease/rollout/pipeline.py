"""ReleasePipeline decisions: what each stage runs, what may move on, what waits.

Pure: the controller (controller/pipelines.py) reads the stages' AppReleases, the approvals
and the stored artifacts, calls ``decide``, applies the promotions it returns (all apps or
none), then ``promotion_done`` for each. Only the artifact moves (api/pipeline.py): image and
config files; Nacos config items become one more field of ``Artifact``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from ..api.analysis import AnalysisRunStatus
from ..api.pipeline import (
    MAX_HISTORY,
    MAX_PASSED,
    AppArtifactStatus,
    PassedArtifact,
    PendingPromotion,
    PromotionRecord,
    ReleasePipelineSpec,
    ReleasePipelineStatus,
    StageStatus,
)
from ..api.spec import API_VERSION
from ..render.hashing import content_hash
from .analysis import AnalysisObserved, MeasurementRequest, Problem, advance, resolve, run_key
from .outcome import Event
from .timefmt import format_time, parse_time_or

# An auto gate retries a promotion that failed (a target app refused the patch) this often.
RETRY_FAILED_SECONDS = 30.0
GATE = "gate"  # who promoted, for an auto gate
ANALYSIS = "analysis"  # who refused, for a stage's failed analysis


@dataclass(frozen=True)
class Artifact:
    """What moves from stage to stage for one app (everything else is the environment): the
    image, the config files' content and the Nacos dataIds the app reads (`config.nacos.items`:
    dataId, group, type, content). Where those dataIds live (server, namespace, credentials)
    and how they are kept (enforce, deletionPolicy) are the environment's."""

    image: str
    files: Mapping[str, str] = field(default_factory=dict)
    nacos: tuple[Mapping[str, Any], ...] = ()

    @property
    def config_hash(self) -> str:
        if not (self.files or self.nacos):
            return ""
        return content_hash(self._config_wire())

    def _config_wire(self) -> dict[str, Any]:
        # Without Nacos items, the digest is what it was before items could move.
        wire: dict[str, Any] = dict(self.files)
        if self.nacos:
            wire = {"files": dict(self.files), "nacos": [dict(item) for item in self.nacos]}
        return wire

    @property
    def digest(self) -> str:
        return content_hash(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"image": self.image, "files": dict(self.files)}
        if self.nacos:
            wire["nacos"] = [dict(item) for item in self.nacos]
        return wire

    def to_spec(self) -> dict[str, Any]:
        """The AppRelease spec fields the artifact sets (a promotion applies exactly these)."""
        spec: dict[str, Any] = {"image": self.image}
        config: dict[str, Any] = {}
        if self.files:
            config["files"] = dict(self.files)
        if self.nacos:
            config["nacos"] = {"items": [dict(item) for item in self.nacos]}
        if config:
            spec["config"] = config
        return spec

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(image=str(data.get("image") or ""), files=dict(data.get("files") or {}),
                   nacos=_nacos_items(data.get("nacos")))

    @classmethod
    def of_spec(cls, spec: Mapping[str, Any]) -> Artifact:
        config = spec.get("config") or {}
        return cls(image=str(spec.get("image") or ""), files=dict(config.get("files") or {}),
                   nacos=_nacos_items((config.get("nacos") or {}).get("items")))


NACOS_ITEM_FIELDS = ("dataId", "group", "type", "content", "fromFile")


def _nacos_items(items: Any) -> tuple[Mapping[str, Any], ...]:
    """The items' artifact fields, in the spec's order (the order is the app's, not ours)."""
    return tuple({key: item[key] for key in NACOS_ITEM_FIELDS if item.get(key) is not None}
                 for item in items or ())


ArtifactSet = Mapping[str, Artifact]  # app name → its artifact

# A passed artifact's content is kept in an immutable ConfigMap of the pipeline's namespace
# (an approval may promote it again later: a rollback, a hotfix); the console shows it.
ARTIFACT_KEY = "artifact.json"


def artifact_store_name(pipeline: str, digest: str) -> str:
    return f"{pipeline}-artifact-{digest}"


def artifact_store_data(artifacts: ArtifactSet) -> dict[str, str]:
    return {ARTIFACT_KEY: json.dumps({app: a.to_wire() for app, a in sorted(artifacts.items())}, sort_keys=True)}


def stored_artifacts(data: Mapping[str, str]) -> dict[str, Artifact]:
    """The artifact set a store ConfigMap's data holds (ValueError when it is not readable)."""
    apps = json.loads(data.get(ARTIFACT_KEY) or "{}")
    if not isinstance(apps, dict):
        raise ValueError(f"{ARTIFACT_KEY} is not an object")
    return {str(app): Artifact.from_wire(value) for app, value in apps.items()}


ApprovalDecision = Literal["Approve", "Reject"]


def approval_body(*, pipeline: str, pipeline_namespace: str, stage: str, stage_namespace: str, artifact: str,
                  decision: ApprovalDecision, approver: str, comment: str = "") -> dict[str, Any]:
    """The ReleaseApproval the CLI and the console create, as the user (who is ``approver``:
    the admission policy refuses any other name)."""
    return {
        "apiVersion": API_VERSION, "kind": "ReleaseApproval",
        "metadata": {"generateName": f"{pipeline}-{stage}-", "namespace": stage_namespace},
        "spec": {"pipeline": pipeline, "pipelineNamespace": pipeline_namespace, "stage": stage, "artifact": artifact,
                 "decision": decision, "approver": approver, "comment": comment},
    }


def decision_refused(decision: str, stage: str, namespace: str, detail: str) -> str:
    """What a user is told when the apiserver refuses their approval (403)."""
    return f"not allowed to {decision.lower()} releases to stage {stage} (namespace {namespace}): {detail}"


def release_digest(artifacts: ArtifactSet) -> str:
    """One digest for a stage's artifact: every app's, by name."""
    return content_hash({name: artifacts[name].digest for name in sorted(artifacts)})


@dataclass(frozen=True)
class AppObservation:
    name: str
    artifact: Artifact | None  # None: no AppRelease of that name in the stage
    revision: int | None = None
    healthy: bool = False
    message: str = ""


def observe_app(name: str, body: Mapping[str, Any] | None) -> AppObservation:
    """An AppRelease as the pipeline sees it: its artifact, and whether it is settled on it
    (Healthy, status current, no canary or preview left, registered where it registers)."""
    if body is None:
        return AppObservation(name, None, message="no AppRelease of that name")
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    artifact = Artifact.of_spec(spec)
    revision = status.get("currentRevision")
    observation = AppObservation(name, artifact, revision)
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return replace(observation, message="its status does not describe the current spec yet")
    if status.get("phase") != "Healthy":
        return replace(observation, message=f"phase {status.get('phase') or 'unknown'}: {status.get('message', '')}")
    if revision is not None and status.get("stableRevision") not in (None, revision):
        return replace(observation, message=f"stable runs revision {status.get('stableRevision')}, not {revision}")
    registration = status.get("registration") or {}
    if registration.get("provider") == "nacos":
        current = [r for r in registration.get("revisions") or [] if r.get("revision") == revision]
        if not current or any(int(r.get("healthy") or 0) < int(r.get("expected") or 0) for r in current):
            return replace(observation, message=f"not every instance is registered and healthy in Nacos"
                                                f" ({registration.get('summary') or '0'})")
    return replace(observation, healthy=True)


@dataclass(frozen=True)
class ApprovalView:
    namespace: str
    name: str
    stage: str
    artifact: str
    decision: Literal["Approve", "Reject"]
    approver: str
    created: str = ""
    handled: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Promotion:
    stage: str
    namespace: str
    from_stage: str
    digest: str
    artifacts: ArtifactSet
    by: str
    approval: str | None = None


@dataclass(frozen=True)
class Notification:
    """What happened, for whoever notifies people (the notification issue consumes these)."""

    kind: Literal["Promoted", "WaitingForApproval", "Rejected", "Refused", "Failed", "AnalysisFailed"]
    stage: str
    digest: str
    actor: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ReleasePipelineStatus
    promotions: tuple[Promotion, ...] = ()
    # New passed artifacts whose content must be stored (digest → app → artifact).
    to_store: Mapping[str, ArtifactSet] = field(default_factory=dict)
    approval_outcomes: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # key → (outcome, message)
    events: tuple[Event, ...] = ()
    notifications: tuple[Notification, ...] = ()
    # Stage name → the measurements its analysis asks for (the runner takes them).
    analysis_requests: Mapping[str, tuple[MeasurementRequest, ...]] = field(default_factory=dict)


def stage_analysis_args(apps: Sequence[str], namespace: str, digest: str) -> dict[str, str]:
    """The reserved arguments of a stage's analysis: its apps (joined by | for a PromQL
    regex match), its namespace, and the artifact's digest as the revision."""
    return {"app": "|".join(apps), "namespace": namespace, "revision": digest}


def _analysis_run(digest: str, healthy_since: str) -> str:
    return run_key(digest, "pipeline", healthy_since)


def _app_status(observation: AppObservation, previous: AppArtifactStatus | None, now: str) -> AppArtifactStatus:
    artifact = observation.artifact
    digest = artifact.digest if artifact else ""
    since = None
    if observation.healthy:
        kept = previous is not None and previous.healthy and previous.digest == digest
        since = (previous.healthy_since if kept and previous else None) or now
    return AppArtifactStatus(
        name=observation.name,
        image=artifact.image if artifact else "",
        config_hash=artifact.config_hash if artifact else "",
        digest=digest,
        revision=observation.revision,
        healthy=observation.healthy,
        healthy_since=since,
        message=observation.message,
    )


def _stage_status(name: str, namespace: str, observations: Sequence[AppObservation],
                  previous: StageStatus | None, now: str) -> tuple[StageStatus, ArtifactSet | None]:
    """The stage's status, and its artifact set when it newly passed (every app Healthy on it)."""
    before = {a.name: a for a in previous.apps} if previous else {}
    apps = [_app_status(o, before.get(o.name), now) for o in observations]
    artifacts = {o.name: o.artifact for o in observations if o.artifact is not None}
    complete = len(artifacts) == len(observations) and bool(observations)
    digest = release_digest(artifacts) if complete else ""
    all_healthy = complete and all(a.healthy for a in apps)
    since = None
    if all_healthy:
        kept = previous is not None and previous.digest == digest and previous.healthy_since
        since = (previous.healthy_since if kept and previous else None) or now
    passed = list(previous.passed) if previous else []
    newly_passed = None
    if all_healthy and digest not in {p.digest for p in passed}:
        passed.append(PassedArtifact(digest=digest, at=now, apps=apps))
        newly_passed = artifacts
    status = StageStatus(
        name=name, namespace=namespace, digest=digest, healthy_since=since, apps=apps,
        passed=passed[-MAX_PASSED:], last_promoted=previous.last_promoted if previous else None,
    )
    return status, newly_passed


def _seconds_since(stamp: str | None, now: datetime) -> float:
    return (now - parse_time_or(stamp, now)).total_seconds()


def decide(
    spec: ReleasePipelineSpec,
    observed: Sequence[Sequence[AppObservation]],
    previous: ReleasePipelineStatus,
    approvals: Sequence[ApprovalView],
    stored: Mapping[str, ArtifactSet],
    now: datetime,
    generation: int | None = None,
    pipeline: str = "PIPELINE",
    analysis: Mapping[str, AnalysisObserved] | None = None,
) -> Decision:
    """One pass over the pipeline: stage statuses, stage analyses, approvals, gates.
    ``analysis``: stage name → its templates and measurements (controller/analysis_runner.py)."""
    stamp = format_time(now)
    before = {s.name: s for s in previous.stages}
    stages: list[StageStatus] = []
    to_store: dict[str, ArtifactSet] = {}
    live: dict[str, ArtifactSet] = {}  # stage → its current artifact set (when complete)
    for stage, observations in zip(spec.stages, observed, strict=True):
        stage_status, newly = _stage_status(stage.name, stage.namespace, observations, before.get(stage.name), stamp)
        stages.append(stage_status)
        if newly is not None:
            to_store[stage_status.digest] = newly
        if stage_status.digest:
            live[stage.name] = {o.name: o.artifact for o in observations if o.artifact is not None}
    history = list(previous.history)
    events: list[Event] = []
    notes: list[Notification] = []
    outcomes: dict[str, tuple[str, str]] = {}
    promotions: list[Promotion] = []
    targeted: set[str] = set()
    index = {s.name: i for i, s in enumerate(spec.stages)}
    handled_in_history = {r.approval for r in history if r.approval}
    requests: dict[str, tuple[MeasurementRequest, ...]] = {}
    for number, stage in enumerate(spec.stages):
        if stage.analysis is None:
            continue
        current = stages[number]
        if not current.digest or current.healthy_since is None:
            stages[number] = replace_stage(current, analysis=None)  # runs once every app is Healthy
            continue
        run = _analysis_run(current.digest, current.healthy_since)
        earlier = before[stage.name].analysis if stage.name in before else None
        earlier = earlier if earlier is not None and earlier.run == run else None
        measured = (analysis or {}).get(stage.name, AnalysisObserved())
        where = f"spec.stages[{number}].analysis"
        args = stage_analysis_args([o.name for o in observed[number]], stage.namespace, current.digest)
        metrics = resolve(stage.analysis, measured, args, where)
        blocked: Problem | None = metrics if isinstance(metrics, Problem) else None
        run_status = earlier
        if not isinstance(metrics, Problem):
            payload = {"pipeline": pipeline, "stage": stage.name, "namespace": stage.namespace,
                       "artifact": current.digest}
            outcome = advance(earlier, run, current.healthy_since, metrics, measured, now, payload)
            run_status, blocked = outcome.status, outcome.problem
            if outcome.requests:
                requests[stage.name] = outcome.requests
        if blocked is not None:
            # It cannot run as written: no verdict, so the artifact waits (never a blind pass).
            run_status = AnalysisRunStatus(run=run, phase="Inconclusive", started_at=current.healthy_since,
                                           message=f"cannot run: {blocked.message}",
                                           metrics=run_status.metrics if run_status else [])
        assert run_status is not None
        stages[number] = replace_stage(current, analysis=run_status)
        if earlier is not None and earlier.phase == run_status.phase and earlier.message == run_status.message:
            continue
        message = f"analysis of artifact {current.digest} in stage {stage.name}: {run_status.message}"
        if run_status.phase == "Failed":
            events.append(Event("Warning", "AnalysisFailed", message))
            notes.append(Notification("AnalysisFailed", stage.name, current.digest, ANALYSIS, message))
            if number + 1 < len(spec.stages):
                history.append(PromotionRecord(stage=spec.stages[number + 1].name, from_stage=stage.name,
                                               digest=current.digest, decision="Refused", by=ANALYSIS, at=stamp,
                                               message=f"not promoted: {message}"))
        elif run_status.phase == "Inconclusive":
            events.append(Event("Warning", "AnalysisInconclusive", message))

    def analysis_hold(source: int, digest: str) -> tuple[str, str] | None:
        """Why the analysis of stage ``source`` holds ``digest`` back: (pending reason, message)."""
        if spec.stages[source].analysis is None:
            return None
        name, verdict = spec.stages[source].name, stages[source].analysis
        if any(r.from_stage == name and r.digest == digest and r.decision == "Promoted" for r in history):
            return None  # it passed this stage's gate before: promoting it again is the rollback case
        if stages[source].digest != digest:
            return ("AnalysisFailed", f"the analysis of stage {name} judges only the artifact it runs now"
                                      f" ({stages[source].digest or 'none settled'}), not {digest}, which"
                                      " the history does not show promoted out of it")
        if verdict is None or verdict.phase == "Running":
            progress = f": {verdict.message}" if verdict is not None and verdict.message else ""
            return ("Analyzing", f"artifact {digest} is being analysed in stage {name}{progress}")
        if verdict.phase == "Failed":
            return ("AnalysisFailed", f"analysis of artifact {digest} in stage {name} failed: {verdict.message}")
        if verdict.phase == "Inconclusive":
            return ("AnalysisInconclusive", f"analysis of artifact {digest} in stage {name} is inconclusive:"
                                            f" {verdict.message} (a new artifact, or the stage settling anew,"
                                            " runs it again)")
        return None

    def record(stage: str, from_stage: str, digest: str, decision: Any, by: str, approval: str | None,
               message: str) -> None:
        history.append(PromotionRecord(stage=stage, from_stage=from_stage, digest=digest, decision=decision, by=by,
                                       approval=approval, at=stamp, message=message))
        notes.append(Notification(kind=decision, stage=stage, digest=digest, actor=by, message=message))

    def promotion_for(target: int, digest: str, by: str, approval: str | None) -> Promotion | str:
        """The promotion of ``digest`` into stage ``target``, or why there can be none."""
        source = spec.stages[target - 1]
        passed = {p.digest for p in stages[target - 1].passed}
        if digest not in passed:
            return f"artifact {digest} never passed stage {source.name} (it was never Healthy there)"
        artifacts = live.get(source.name) if stages[target - 1].digest == digest else stored.get(digest)
        if artifacts is None:
            return f"the content of artifact {digest} is no longer stored"
        missing = [o.name for o in observed[target] if o.artifact is None]
        if missing:
            return (f"no AppRelease {', '.join(missing)} in namespace {spec.stages[target].namespace}"
                    " (a pipeline only updates existing apps)")
        return Promotion(stage=spec.stages[target].name, namespace=spec.stages[target].namespace,
                         from_stage=source.name, digest=digest, artifacts=artifacts, by=by, approval=approval)

    for approval in sorted(approvals, key=lambda a: (a.created, a.name)):
        if approval.handled or approval.key in handled_in_history:
            continue
        target = index.get(approval.stage)
        if target is not None and approval.stage in targeted:
            continue  # one promotion into a stage per pass; the next pass takes this one
        problem = None
        if target is None:
            problem = f"pipeline has no stage {approval.stage}"
        elif target == 0:
            problem = f"stage {approval.stage} is the first stage: artifacts enter it by a normal release"
        elif approval.namespace != spec.stages[target].namespace:
            problem = (f"an approval for stage {approval.stage} must be created in its namespace"
                       f" {spec.stages[target].namespace}, not {approval.namespace}")
        from_stage = spec.stages[target - 1].name if target else ""
        if problem is None and approval.decision == "Reject":
            message = f"{approval.approver} rejected artifact {approval.artifact} for stage {approval.stage}"
            record(approval.stage, from_stage, approval.artifact, "Rejected", approval.approver, approval.key, message)
            outcomes[approval.key] = ("Rejected", message)
            events.append(Event("Normal", "Rejected", message))
            continue
        if problem is None and target is not None:
            held = analysis_hold(target - 1, approval.artifact)
            if held is not None and held[0] in ("Analyzing", "AnalysisInconclusive"):
                continue  # the approval waits for the analysis' verdict
            if held is not None:
                problem = held[1]
        if problem is None and target is not None:
            found = promotion_for(target, approval.artifact, approval.approver, approval.key)
            if isinstance(found, Promotion):
                promotions.append(found)
                targeted.add(approval.stage)
                events.append(Event("Normal", "Approved",
                                    f"Approved by {approval.approver}: artifact {approval.artifact} to stage"
                                    f" {approval.stage}"))
                continue
            problem = found
        message = f"approval {approval.key} by {approval.approver} refused: {problem}"
        record(approval.stage, from_stage, approval.artifact, "Refused", approval.approver, approval.key, message)
        outcomes[approval.key] = ("Refused", message)
        events.append(Event("Warning", "ApprovalRefused", message))

    pending: list[PendingPromotion] = []
    before_pending = {(p.stage, p.digest, p.reason): p for p in previous.pending}
    for target in range(1, len(spec.stages)):
        stage, source = spec.stages[target], stages[target - 1]
        gate = stage.gate
        digest = source.digest
        if gate is None or stage.name in targeted or not digest or source.healthy_since is None:
            continue
        if stages[target].digest == digest or stages[target].last_promoted == digest:
            continue  # there already, or promoted and changed there since: not ours to undo
        rejected = any(r.stage == stage.name and r.digest == digest and r.decision == "Rejected" for r in history)
        if gate.manual is not None and rejected:
            continue
        attempts = [r for r in history if r.stage == stage.name and r.digest == digest and r.by == GATE]
        failed = attempts[-1] if attempts and attempts[-1].decision == "Failed" else None

        def wait(reason: Any, message: str, *, target_name: str = stage.name, digest: str = digest) -> None:
            earlier = before_pending.get((target_name, digest, reason))
            pending.append(PendingPromotion(stage=target_name, digest=digest, reason=reason,
                                            since=earlier.since if earlier else stamp, message=message))
            if reason == "WaitingForApproval" and earlier is None:
                events.append(Event("Normal", "WaitingForApproval", message))
                notes.append(Notification("WaitingForApproval", target_name, digest, "", message))

        held = analysis_hold(target - 1, digest)
        if gate.manual is not None and held is not None:
            wait(held[0], held[1])
            continue
        if gate.manual is not None:
            wait("WaitingForApproval", f"artifact {digest} passed stage {source.name}: waiting for a"
                                       f" ReleaseApproval in namespace {stage.namespace}"
                                       f" (apprelease approve {pipeline} {stage.name})")
            continue
        soak = float(gate.auto.soak_seconds) if gate.auto else 0.0
        soaked_for = _seconds_since(source.healthy_since, now)
        if soaked_for < soak:
            due = parse_time_or(source.healthy_since, now) + timedelta(seconds=soak)
            wait("Soaking", f"artifact {digest} soaks in stage {source.name} until {format_time(due)}")
            continue
        if held is not None:
            wait(held[0], held[1])
            continue
        if failed is not None and _seconds_since(failed.at, now) < RETRY_FAILED_SECONDS:
            wait("PromotionFailed", failed.message)
            continue
        found = promotion_for(target, digest, GATE, None)
        if isinstance(found, Promotion):
            promotions.append(found)
            targeted.add(stage.name)
        else:
            wait("PromotionFailed", found)

    message = _summary(stages, pending)
    if not observed[0]:
        message = (f"no apps to move: the selector matches no AppRelease in stage {spec.stages[0].name}"
                   f" (namespace {spec.stages[0].namespace})")
        if previous.message != message:
            events.append(Event("Warning", "NoApps", message))
    status = ReleasePipelineStatus(
        observed_generation=generation if generation is not None else previous.observed_generation,
        message=message,
        stages=stages,
        pending=pending,
        history=history[-MAX_HISTORY:],
    )
    return Decision(status=status, promotions=tuple(promotions), to_store=to_store, approval_outcomes=outcomes,
                    events=tuple(events), notifications=tuple(notes), analysis_requests=requests)


def _summary(stages: Sequence[StageStatus], pending: Sequence[PendingPromotion]) -> str:
    waiting = [f"{p.stage} {p.reason}" for p in pending]
    running = ", ".join(f"{s.name}={s.digest or '-'}" for s in stages)
    return running + (f"; {', '.join(waiting)}" if waiting else "")


@dataclass(frozen=True)
class PromotionResult:
    status: ReleasePipelineStatus
    events: tuple[Event, ...]
    notifications: tuple[Notification, ...]
    approval_outcome: tuple[str, str] | None  # for an approval's promotion: (outcome, message)


def promotion_done(status: ReleasePipelineStatus, promotion: Promotion, failure: str | None,
                   now: datetime) -> PromotionResult:
    """Record a promotion the controller applied (``failure`` None) or could not apply."""
    stamp = format_time(now)
    if failure is None:
        decision: Literal["Promoted", "Failed"] = "Promoted"
        who = "its gate" if promotion.by == GATE else promotion.by
        message = (f"artifact {promotion.digest} promoted from {promotion.from_stage} to {promotion.stage}"
                   f" by {who}: {', '.join(f'{n}={a.image}' for n, a in sorted(promotion.artifacts.items()))}")
        event = Event("Normal", "Promoted", message)
    else:
        decision = "Failed"
        message = f"artifact {promotion.digest} not promoted to {promotion.stage} (no app changed): {failure}"
        event = Event("Warning", "PromotionFailed", message)
    record = PromotionRecord(stage=promotion.stage, from_stage=promotion.from_stage, digest=promotion.digest,
                             decision=decision, by=promotion.by, approval=promotion.approval, at=stamp,
                             message=message)
    stages = [replace_stage(s, last_promoted=promotion.digest) if s.name == promotion.stage and failure is None
              else s for s in status.stages]
    pending = [p for p in status.pending if p.stage != promotion.stage or failure is not None]
    if failure is not None and promotion.by == GATE:
        pending.append(PendingPromotion(stage=promotion.stage, digest=promotion.digest, reason="PromotionFailed",
                                        since=stamp, message=message))
    new_status = status.model_copy(update={
        "stages": stages, "pending": pending, "history": [*status.history, record][-MAX_HISTORY:],
        "message": _summary(stages, pending),
    })
    note = Notification(kind=decision, stage=promotion.stage, digest=promotion.digest, actor=promotion.by,
                        message=message)
    outcome = (decision, message) if promotion.approval else None
    return PromotionResult(new_status, (event,), (note,), outcome)


def replace_stage(stage: StageStatus, **changes: Any) -> StageStatus:
    return stage.model_copy(update=changes)


def apply_body(app: str, namespace: str, artifact: Artifact, api_version: str, kind: str) -> dict[str, Any]:
    """The server-side apply body that sets exactly the artifact's fields of one AppRelease."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": app, "namespace": namespace},
            "spec": artifact.to_spec()}


def leftover_files(app: str, applied_spec: Mapping[str, Any], artifact: Artifact) -> str | None:
    """After a (dry-run) apply: why the app would not run exactly this artifact, if it would not.
    Files another field manager set stay after our apply; the promotion must not leave them."""
    result = Artifact.of_spec(applied_spec)
    if result == artifact:
        return None
    extra = sorted(set(result.files) - set(artifact.files))
    if extra:
        return (f"{app}: config files {', '.join(extra)} are set by another field manager and would stay:"
                " remove them from the stage's AppRelease (or add them to the source stage)")
    if result.nacos != artifact.nacos:
        return (f"{app}: its Nacos config items would differ from the artifact's"
                + (" (items another field manager set stay)" if result.nacos and not artifact.nacos else ""))
    return f"{app}: the applied spec would not carry the artifact (image {result.image})"
