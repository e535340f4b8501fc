"""From watched objects to what the planner sees.

Watch events are slimmed as they arrive (managedFields, last-applied annotations and config
data never stay in memory), packed (k8s/packing.py), grouped by app, and turned into the
planner's small summaries.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain import TRACKS, Track
from ..render import labels
from ..rollout.observed import (
    REGISTERED_GATE,
    DeploymentState,
    GateState,
    HpaState,
    Observed,
    PodState,
    RevisionRecord,
)
from .history import from_controller_revision
from .packing import unpack

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DATA_HASH = "dataHash"
RECORD = "record"

AppKey = tuple[str, str]  # (namespace, AppRelease name)


@functools.lru_cache(maxsize=512)
def revision_view(data: bytes) -> dict[str, Any]:
    """A packed ControllerRevision with its parsed record. A parsed record is ~8 KB, its
    packed form ~1 KB: keep the parsed form only for the apps reconciled lately."""
    obj = unpack(data)
    obj[RECORD] = from_controller_revision(obj)
    return obj


def app_key_of(obj: Mapping[str, Any]) -> AppKey | None:
    """The AppRelease a child belongs to, from its instance label."""
    meta = obj.get("metadata", {})
    app = (meta.get("labels") or {}).get(labels.INSTANCE)
    if not app or (meta.get("labels") or {}).get(labels.MANAGED_BY) != labels.MANAGER:
        return None
    return (meta.get("namespace", ""), app)


def slim_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("name", "namespace", "uid", "labels", "ownerReferences", "generation",
            "resourceVersion", "deletionTimestamp", "creationTimestamp", "finalizers")
    slim = {k: meta[k] for k in keep if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        slim["annotations"] = annotations
    return slim


def slim_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata + spec (+ the status fields rollouts need); never managedFields."""
    slim: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": slim_metadata(obj.get("metadata", {})),
    }
    for key in ("spec", "immutable"):
        if key in obj:
            slim[key] = obj[key]
    if obj.get("kind") == "Deployment":
        status = obj.get("status") or {}
        slim["status"] = {
            k: status[k]
            for k in ("observedGeneration", "replicas", "readyReplicas", "updatedReplicas",
                      "availableReplicas", "conditions")
            if k in status
        }
    if obj.get("kind") == "ConfigMap":
        slim[DATA_HASH] = data_hash(obj.get("data") or {})
    return slim


def data_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def slim_revision(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": slim_metadata(obj.get("metadata", {})),
        "revision": obj.get("revision"),
        "data": obj.get("data"),
    }


def slim_app(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": slim_metadata(body.get("metadata", {})),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def pod_state(pod: Mapping[str, Any]) -> PodState:
    meta = pod.get("metadata", {})
    pod_labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    gate = conditions.get(REGISTERED_GATE)
    track = pod_labels.get(labels.TRACK)
    revision = pod_labels.get(labels.REVISION)
    return PodState(
        name=meta.get("name", ""),
        track=track if track in TRACKS else None,
        revision=int(revision) if revision and revision.isdigit() else None,
        ready=ready,
        restarts=sum(int(c.get("restartCount") or 0) for c in statuses),
        crash_looping=any(
            (c.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for c in statuses
        ),
        deleting=bool(meta.get("deletionTimestamp")),
        ip=status.get("podIP"),
        phase=status.get("phase", "Pending"),
        node=(pod.get("spec") or {}).get("nodeName"),
        created=meta.get("creationTimestamp"),
        containers_ready=(conditions.get("ContainersReady") or {}).get("status") == "True",
        gate=GateState(
            status=gate.get("status") == "True", reason=str(gate.get("reason") or ""),
            since=gate.get("lastTransitionTime"),
        ) if gate else None,
    )


def deployment_state(dep: Mapping[str, Any], track: Track) -> DeploymentState:
    meta = dep.get("metadata", {})
    status = dep.get("status") or {}
    conditions = status.get("conditions") or []
    progressing: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Progressing"), {})
    failure: Mapping[str, Any] = next(
        (c for c in conditions if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), {}
    )
    return DeploymentState(
        track=track,
        revision_hash=(meta.get("annotations") or {}).get(labels.REVISION_HASH),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int((dep.get("spec") or {}).get("replicas", 1)),
        status_replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        replica_failure=(f"{failure.get('reason')}: {failure.get('message')}"[:300] if failure else None),
    )


_TRACK_SUFFIXES = ("-canary", "-preview")


def hpa_app_key(hpa: Mapping[str, Any]) -> AppKey | None:
    """The app an HPA scales: the AppRelease it targets, or the one owning the Deployment it
    targets (a mistake the status points out: we reset a Deployment's replicas)."""
    meta = hpa.get("metadata", {})
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    name = str(ref.get("name") or "")
    if not name:
        return None
    if ref.get("kind") == "Deployment":
        for suffix in _TRACK_SUFFIXES:
            name = name.removesuffix(suffix)
    elif ref.get("kind") != "AppRelease":
        return None
    return (meta.get("namespace", ""), name)


def hpa_state(hpa: Mapping[str, Any]) -> HpaState:
    spec = hpa.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    status = hpa.get("status") or {}
    return HpaState(
        name=hpa.get("metadata", {}).get("name", ""),
        target_kind=str(ref.get("kind") or ""),
        target_name=str(ref.get("name") or ""),
        min_replicas=spec.get("minReplicas"),
        max_replicas=int(spec.get("maxReplicas") or 0),
        desired_replicas=status.get("desiredReplicas"),
    )


def owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return bool(uid) and any(r.get("uid") == uid and r.get("controller") for r in refs)


@dataclass
class Children:
    """Live children of one AppRelease, by kind then name."""

    by_kind: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    pods: list[PodState] = field(default_factory=list)
    hpas: list[HpaState] = field(default_factory=list)
    # Pods of the adopted revision (spec.adopt), listed by the adopted selector: they carry
    # none of our labels, so no watch of ours sees them.
    adopted_pods: list[PodState] = field(default_factory=list)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.by_kind.get(kind, {}).get(name)

    def of_kind(self, kind: str) -> Iterable[dict[str, Any]]:
        return self.by_kind.get(kind, {}).values()


def adopted_pods_selector(selector: Mapping[str, str]) -> str:
    """The adopted Deployment's pods that are not ours: those of the adopted revision (the
    new revisions' pods carry the adopted selector's labels too, and ours)."""
    return ",".join([*(f"{k}={v}" for k, v in sorted(selector.items())), f"!{labels.MANAGED_BY}"])


def as_adopted(pod: PodState, revision: int | None) -> PodState:
    """An adopted pod is a stable pod of the adopted revision, like the pods of ours."""
    return dataclasses.replace(pod, track="stable", revision=revision, adopted=True)


def observe(children: Children, uid: str | None, app_name: str, adopted_hash: str | None = None) -> Observed:
    deployments: dict[Track, DeploymentState] = {}
    for dep in children.of_kind("Deployment"):
        if not owned_by(dep, uid):
            continue
        track = (dep["metadata"].get("labels") or {}).get(labels.TRACK)
        if track in TRACKS:
            deployments[track] = deployment_state(dep, track)
    revisions: list[RevisionRecord] = [
        rev[RECORD] for rev in children.of_kind("ControllerRevision") if owned_by(rev, uid)
    ]
    adopted_number = next((r.number for r in revisions if r.hash == adopted_hash), None)
    pods = [*children.pods, *(as_adopted(p, adopted_number) for p in children.adopted_pods)]
    return Observed(deployments=deployments, pods=tuple(pods), revisions=tuple(revisions),
                    hpas=tuple(children.hpas))
