"""Adopting a running app: may we, and what would change. Pure: the CLI reads and writes.

Adoption is all or nothing: every refusal is found before anything is written, each naming
the object and what holds it, so an app is never half adopted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..api.spec import API_VERSION, KIND, AppRelease
from . import labels as L
from .hashing import revision_hash
from .importer import (
    HELM_NAMESPACE,
    HELM_RELEASE,
    AppObjects,
    Imported,
    import_app,
    match_labels,
    selects,
)
from .importer import template_labels as pod_labels_of

# The label the Deployment controller adds to every ReplicaSet and pod; never in a template.
POD_TEMPLATE_HASH = "pod-template-hash"
ADOPTED_KINDS = ("Deployment", "Service", "Ingress")


class AdoptionRefused(ValueError):
    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')} {_meta(obj).get('name')}"


def holder(obj: dict[str, Any], app_name: str) -> str | None:
    """Who else controls this object, or None when it is free to adopt (or already ours)."""
    meta = _meta(obj)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            if ref.get("kind") == KIND and ref.get("name") == app_name:
                return None
            return f"{ref.get('kind')} {ref.get('name')}"
    annotations = meta.get("annotations") or {}
    object_labels = meta.get("labels") or {}
    if annotations.get(HELM_RELEASE) or object_labels.get(L.MANAGED_BY) == "Helm":
        release = annotations.get(HELM_RELEASE, "?")
        where = annotations.get(HELM_NAMESPACE)
        return f"Helm release {release}" + (f" (namespace {where})" if where else "")
    if object_labels.get(L.MANAGED_BY) == L.MANAGER and object_labels.get(L.INSTANCE) not in (None, app_name):
        return f"AppRelease {object_labels.get(L.INSTANCE)}"
    return None


def adoptable(app: AppRelease, obj: dict[str, Any]) -> bool:
    """The operator may apply over this existing object: the AppRelease adopts its app
    (spec.adopt) and nothing else controls it. Only the names the AppRelease renders reach
    here, so the object is its Deployment, Service or Ingress."""
    return (app.spec.adopt is not None and app.spec.adopt.deployment == app.name
            and obj.get("kind") in ADOPTED_KINDS and holder(obj, app.name) is None)


def refusals(objects: AppObjects, namespace_objects: list[dict[str, Any]]) -> list[str]:
    """Why this app cannot be adopted as it is (empty: it can)."""
    deployment = objects.deployment
    name = str(_meta(deployment).get("name"))
    reasons: list[str] = []
    for obj in [deployment, *objects.services, *objects.ingresses]:
        held = holder(obj, name)
        if held:
            reasons.append(f"{_describe(obj)} is owned by {held}: release it there first")
    mine_by_kind = {(o.get("kind"), _meta(o).get("name")) for o in objects.all()}
    for obj in namespace_objects:
        if (obj.get("kind") in ("Service", "Ingress") and _meta(obj).get("name") == name
                and (obj.get("kind"), name) not in mine_by_kind):
            # The AppRelease renders this name: applying would take another app's object over.
            what = "select the Deployment's pods" if obj["kind"] == "Service" else "route to its Services"
            reasons.append(f"{_describe(obj)} exists but does not {what}: rename it or point it at the app")
    selector = (deployment.get("spec") or {}).get("selector") or {}
    if selector.get("matchExpressions"):
        reasons.append(f"Deployment {name}: a selector with matchExpressions cannot be kept (matchLabels only)")
    for key, value in match_labels(deployment).items():
        if key in (L.NAME, L.INSTANCE) and value != name:
            reasons.append(f"Deployment {name}: selector {key}={value} names another app")
    others = [o for o in namespace_objects if o.get("kind") == "Deployment" and _meta(o).get("name") != name]
    for service in objects.services:
        service_selector = (service.get("spec") or {}).get("selector") or {}
        also = sorted(str(_meta(o).get("name")) for o in others if selects(service_selector, pod_labels_of(o)))
        if also:
            reasons.append(f"Service {_meta(service).get('name')} selects the pods of Deployments {name} and"
                           f" {', '.join(also)}: one Service must serve one app")
    mine = match_labels(deployment)
    overlapping = sorted(str(_meta(o).get("name")) for o in others if mine and selects(mine, pod_labels_of(o)))
    if overlapping:
        reasons.append(f"Deployment {name}'s selector also selects the pods of {', '.join(overlapping)}")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    if spec.get("paused"):
        reasons.append(f"Deployment {name} is paused: resume or finish its rollout first")
    elif status and (status.get("observedGeneration", 0) < _meta(deployment).get("generation", 0)
                     or status.get("updatedReplicas", 0) < spec.get("replicas", 1)):
        reasons.append(f"Deployment {name} is rolling out: adopt it once its rollout is complete")
    return reasons


def live_pod_template(deployment: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
    metadata = template.get("metadata") or {}
    metadata.pop("creationTimestamp", None)
    (metadata.get("labels") or {}).pop(POD_TEMPLATE_HASH, None)
    template["metadata"] = metadata
    return template


def adopt(objects: AppObjects, namespace_objects: list[dict[str, Any]]) -> Imported:
    """The AppRelease that takes this app over: imported, plus spec.adopt. AdoptionRefused
    (every reason at once) when it cannot."""
    reasons = refusals(objects, namespace_objects)
    if reasons:
        raise AdoptionRefused(reasons)
    imported = import_app(objects)
    app = copy.deepcopy(imported.app)
    template = AppRelease.model_validate(app).spec.revision_template()
    app["spec"]["adopt"] = {
        "deployment": app["metadata"]["name"],
        "selector": match_labels(objects.deployment),
        "revisionHash": revision_hash(template),
        "podTemplate": live_pod_template(objects.deployment),
    }
    AppRelease.model_validate(app)
    return Imported(app, imported.notes, objects)


def hpa_retarget(hpa: dict[str, Any], app_name: str) -> dict[str, Any]:
    """The merge patch pointing an HPA at the AppRelease (its scale subresource)."""
    del hpa  # the patch is the same whatever the HPA said before
    return {"spec": {"scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": app_name}}}


@dataclass(frozen=True)
class Change:
    path: str
    live: Any
    desired: Any


def differences(live: Any, desired: Any, path: str = "") -> list[Change]:
    """Field by field, where two objects differ (maps by key, lists by position)."""
    if isinstance(live, dict) and isinstance(desired, dict):
        found: list[Change] = []
        for key in sorted(set(live) | set(desired)):
            found += differences(live.get(key), desired.get(key), f"{path}.{key}")
        return found
    if isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired):
        found = []
        for index, (a, b) in enumerate(zip(live, desired, strict=True)):
            found += differences(a, b, f"{path}[{index}]")
        return found
    return [] if live == desired else [Change(path or ".", live, desired)]


def template_changes(live_deployment: dict[str, Any], applied_deployment: dict[str, Any]) -> list[Change]:
    """What the Deployment controller would see change in the pod template, comparing the
    live template with the one an apply leaves (a server-side dry run: defaults included),
    as it does: pod-template-hash aside, any difference is a new ReplicaSet, every pod replaced."""
    return differences(live_pod_template(live_deployment), live_pod_template(applied_deployment), ".spec.template")
