"""Generate the CustomResourceDefinition from the pydantic model.

pydantic emits JSON Schema with ``$defs``/``$ref``, ``anyOf`` for optionals and unions, and
titles; a Kubernetes structural schema allows none of that. We inline references, turn
``int | str`` into ``x-kubernetes-int-or-string``, drop ``null`` branches, and keep the CEL
rules the model declares in ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .spec import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    PLURAL,
    RESERVED_SUFFIXES,
    VERSION,
    AppReleaseSpec,
)
from .status import AppReleaseStatus

Schema = dict[str, Any]

_DROP_KEYS = {"title", "$defs"}


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "Step", "type": "string", "jsonPath": ".status.step"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.actualWeight"},
    {"name": "Registered", "type": "string", "jsonPath": ".status.registration.summary"},
    {"name": "Revision", "type": "integer", "jsonPath": ".status.currentRevision", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve_ref(ref: str, defs: dict[str, Schema]) -> Schema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref}")
    return copy.deepcopy(defs[ref[len(prefix):]])


def _is_null(schema: Schema) -> bool:
    return schema.get("type") == "null"


def _merge(outer: Schema, inner: Schema) -> Schema:
    """Combine a wrapper (description, CEL rules) with the schema it wraps."""
    merged = {**inner, **{k: v for k, v in outer.items() if k != "x-kubernetes-validations"}}
    rules = inner.get("x-kubernetes-validations", []) + outer.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Rewrite one pydantic JSON Schema node into a Kubernetes structural schema node."""
    node = {k: v for k, v in schema.items() if k not in _DROP_KEYS}

    if "$ref" in node:
        target = _resolve_ref(node.pop("$ref"), defs)
        return structural(_merge(node, target), defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        return structural(_merge(node, inner), defs)

    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if not _is_null(b)]
        if node.get("default", ...) is None:
            node.pop("default")
        if len(branches) == 1:
            return structural(_merge(node, branches[0]), defs)
        converted = [structural(b, defs) for b in branches]
        kinds = {b.get("type") for b in converted}
        if kinds <= {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
            # Keep the string branch's bound: CEL cost estimation needs it.
            lengths = [b["maxLength"] for b in converted if "maxLength" in b]
            if lengths:
                node["maxLength"] = max(lengths)
            return node
        raise ValueError(f"cannot express union of {sorted(map(str, kinds))} structurally")

    if "const" in node:
        node["enum"] = [node.pop("const")]

    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.get("properties")
        if props:
            node["properties"] = {name: structural(sub, defs) for name, sub in props.items()}
        extra = node.pop("additionalProperties", None)
        if isinstance(extra, dict) and not props:
            node["additionalProperties"] = structural(extra, defs)
        elif extra is True and not props and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["x-kubernetes-preserve-unknown-fields"] = True
        if "required" in node and not node["required"]:
            node.pop("required")
    elif node.get("type") == "array":
        node["items"] = structural(node["items"], defs)
    return node


def _model_schema(model: type, mode: str) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode=mode)  # type: ignore[attr-defined]
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def _without_defaults(node: Any) -> Any:
    """Status is written only by us; apiserver defaulting there would just add noise."""
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def _object_schema(description: str, spec_model: type, status_model: type) -> Schema:
    """A kind's schema: its spec (with defaults) and status (without) from the models."""
    spec = _model_schema(spec_model, "validation")
    status = _without_defaults(_model_schema(status_model, "validation"))
    spec.pop("description", None)
    status.pop("description", None)
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def openapi_schema() -> Schema:
    description = ("AppRelease describes one app: image, replicas, ports, env, config files, probes,"
                   " Service, Ingress, rollout strategy and service registry.")
    return {
        **_object_schema(description, AppReleaseSpec, AppReleaseStatus),
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}"
                f" && self.metadata.name.matches('{NAME_PATTERN}')",
                "message": (
                    f"metadata.name must be a DNS label of at most {MAX_NAME_LENGTH} characters"
                    " starting with a letter (it names the Service and Deployments)"
                ),
            },
            {
                "rule": "!has(self.spec.strategy) || !has(self.spec.strategy.blueGreen)"
                f" || size(self.metadata.name) <= {MAX_NAME_LENGTH - 1}",
                "message": (
                    f"metadata.name must be at most {MAX_NAME_LENGTH - 1} characters with blueGreen"
                    " (the preview Service {name}-preview is a DNS label of at most 63)"
                ),
            },
            {
                "rule": " && ".join(f"!self.metadata.name.endsWith('{s}')" for s in RESERVED_SUFFIXES),
                "message": (
                    f"metadata.name must not end with {', '.join(RESERVED_SUFFIXES)}: those name"
                    " the children of other apps (web-canary is app web's canary)"
                ),
            },
        ],
    }


def custom_resource_definition() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["arl"],
                "categories": ["apprelease"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `apprelease crd` from operator/apprelease/api; do not edit.\n"
    return header + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)


# The pipeline's kinds ------------------------------------------------------------------------

PIPELINE_COLUMNS: list[dict[str, Any]] = [
    {"name": "Message", "type": "string", "jsonPath": ".status.message"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
APPROVAL_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipeline"},
    {"name": "Stage", "type": "string", "jsonPath": ".spec.stage"},
    {"name": "Artifact", "type": "string", "jsonPath": ".spec.artifact"},
    {"name": "Decision", "type": "string", "jsonPath": ".spec.decision"},
    {"name": "Approver", "type": "string", "jsonPath": ".spec.approver"},
    {"name": "Outcome", "type": "string", "jsonPath": ".status.outcome"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _simple_crd(kind: str, plural: str, short: str, description: str, spec_model: type, status_model: type,
                columns: list[dict[str, Any]], scope: str = "Namespaced") -> dict[str, Any]:
    schema = _object_schema(description, spec_model, status_model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short], "categories": ["apprelease"]},
            "scope": scope,
            "versions": [{
                "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
                "additionalPrinterColumns": columns, "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


def pipeline_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD, for the ReleasePipeline and ReleaseApproval kinds."""
    from .pipeline import (
        APPROVAL_KIND,
        APPROVAL_PLURAL,
        PIPELINE_KIND,
        PIPELINE_PLURAL,
        ReleaseApprovalSpec,
        ReleaseApprovalStatus,
        ReleasePipelineSpec,
        ReleasePipelineStatus,
    )

    return {
        f"{GROUP}_{PIPELINE_PLURAL}.yaml": _simple_crd(
            PIPELINE_KIND, PIPELINE_PLURAL, "rpl",
            "ReleasePipeline promotes the artifact (image + config content) of a set of AppReleases from"
            " stage to stage (namespace to namespace), through auto or manual gates.",
            ReleasePipelineSpec, ReleasePipelineStatus, PIPELINE_COLUMNS),
        f"{GROUP}_{APPROVAL_PLURAL}.yaml": _simple_crd(
            APPROVAL_KIND, APPROVAL_PLURAL, "rap",
            "ReleaseApproval approves or rejects one artifact for one stage of a ReleasePipeline; created"
            " in that stage's namespace by the approver (immutable, admission-checked).",
            ReleaseApprovalSpec, ReleaseApprovalStatus, APPROVAL_COLUMNS),
    }


def analysis_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD, for the AnalysisTemplate and ClusterAnalysisTemplate kinds."""
    from .analysis_template import (
        CLUSTER_TEMPLATE_KIND,
        CLUSTER_TEMPLATE_PLURAL,
        TEMPLATE_KIND,
        TEMPLATE_PLURAL,
        AnalysisTemplateSpec,
        AnalysisTemplateStatus,
    )

    columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    what = (" metrics (Prometheus queries, web hooks) and the conditions that pass or fail them, run by an"
            " AppRelease's canary analysis step or background analysis (docs/analysis.md).")
    return {
        f"{GROUP}_{TEMPLATE_PLURAL}.yaml": _simple_crd(
            TEMPLATE_KIND, TEMPLATE_PLURAL, "at", "AnalysisTemplate: namespaced" + what,
            AnalysisTemplateSpec, AnalysisTemplateStatus, columns),
        f"{GROUP}_{CLUSTER_TEMPLATE_PLURAL}.yaml": _simple_crd(
            CLUSTER_TEMPLATE_KIND, CLUSTER_TEMPLATE_PLURAL, "cat", "ClusterAnalysisTemplate: cluster-wide" + what,
            AnalysisTemplateSpec, AnalysisTemplateStatus, columns, scope="Cluster"),
    }


def other_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD, for every kind besides AppRelease."""
    return pipeline_crds() | analysis_crds()


def pipeline_crd_yaml(file_name: str) -> str:
    header = "# Generated by `apprelease crd` from operator/apprelease/api; do not edit.\n"
    return header + yaml.safe_dump(other_crds()[file_name], sort_keys=False, width=100)
