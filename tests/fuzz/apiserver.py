"""Talking to a real apiserver about generated specs: JSON in, children dry-run as the
server-side applies the operator makes."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient
from pydantic import ValidationError

from apprelease.api.spec import AppRelease
from apprelease.k8s.client import apply_patch_body
from apprelease.render import RenderError, render_initial


def as_json(document: dict[str, Any]) -> str:
    """Input for kubectl create: JSON, since YAML cannot carry every string a spec may hold."""
    return json.dumps(document, ensure_ascii=False)


def _path(obj: dict[str, Any]) -> str:
    group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    plural = {"Ingress": "ingresses"}.get(obj["kind"], obj["kind"].lower() + "s")
    meta = obj["metadata"]
    return f"{group}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def dry_run_rejection(api: ApiClient, live: dict[str, Any]) -> str | None:
    """Why the apiserver refuses what the operator renders for the stored AppRelease ``live``
    (None: it accepts every child), each child sent as a server-side apply with dryRun=All."""
    try:
        children = render_initial(AppRelease.model_validate(live))
    except (ValidationError, RenderError) as exc:
        return f"not renderable: {str(exc)[:300]}"
    refusals = []
    for child in children:
        request = api.param_serialize(
            method="PATCH", resource_path=_path(child),
            query_params=[("dryRun", "All"), ("fieldManager", "apprelease-fuzz"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=apply_patch_body(child),
        )
        response = api.call_api(*request)
        response.read()
        if response.status >= 300:
            message = json.loads(response.data or b"{}").get("message", "") if response.data else ""
            refusals.append(f"{child['kind']} {response.status}: {message[:400]}")
    return "; ".join(refusals) or None
