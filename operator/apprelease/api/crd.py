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


def openapi_schema() -> Schema:
    spec = _model_schema(AppReleaseSpec, "validation")
    status = _without_defaults(_model_schema(AppReleaseStatus, "validation"))
    spec.pop("description", None)
    status.pop("description", None)
    return {
        "type": "object",
        "description": (
            "AppRelease describes one app: image, replicas, ports, env, config files, probes,"
            " Service, Ingress, rollout strategy and service registry."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
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
