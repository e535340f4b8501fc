"""Rollback as a spec edit: put a stored revision's pod fields back into the spec. Pure.

The planner sees the spec return to a revision that was once promoted and sends it straight
to the stable Deployment (no steps). Because it is a spec edit, Git and kubectl see the
same truth as the cluster, and `kubectl apply` of the old file does the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api.spec import RevisionTemplate
from .observed import RevisionRecord

# RevisionTemplate field (wire name) → spec field (wire name); ports handled separately.
_FIELDS = (
    "image", "imagePullPolicy", "command", "args", "env", "envFrom", "config", "resources",
    "readinessProbe", "livenessProbe", "startupProbe", "restartAt", "podTemplate",
)


def rollback_target(
    history: Iterable[RevisionRecord],
    *,
    current_hash: str | None,
    stable_hash: str | None,
    to_revision: int | None,
) -> RevisionRecord:
    records = sorted(history, key=lambda r: r.number, reverse=True)
    if to_revision is not None:
        for record in records:
            if record.number == to_revision:
                return record
        known = ", ".join(str(r.number) for r in reversed(records)) or "none"
        raise LookupError(f"revision {to_revision} is not in the history (known: {known})")
    if stable_hash and stable_hash != current_hash:
        # Mid-canary (or aborted): the previous stable is what runs on the stable track.
        stable = next((r for r in records if r.hash == stable_hash), None)
        if stable is None:
            raise LookupError(
                "the stable revision is not in the history (its ControllerRevision is gone);"
                " roll back with --to-revision N"
            )
        return stable
    for record in records:
        if record.hash != current_hash and record.promoted:
            return record
    raise LookupError("no earlier promoted revision to roll back to")


def rollback_patch(spec: dict[str, Any], template: RevisionTemplate) -> list[dict[str, Any]]:
    """JSON Patch (RFC 6902) operations that make ``spec`` describe ``template``."""
    wire = template.to_wire()
    ops: list[dict[str, Any]] = []

    def put(field: str, value: Any) -> None:
        if value is None or value == [] or value == {}:
            if field in spec:
                ops.append({"op": "remove", "path": f"/spec/{field}"})
        elif spec.get(field) != value:
            ops.append({"op": "add", "path": f"/spec/{field}", "value": value})

    for field in _FIELDS:
        put(field, wire.get(field))
    ports = wire.get("ports") or []
    shorthand = (
        len(ports) == 1 and ports[0]["name"] == "http"
        and set(ports[0]) <= {"name", "containerPort", "protocol"}
        and ports[0].get("protocol", "TCP") == "TCP"
    )
    if shorthand and "ports" not in spec:
        put("port", ports[0]["containerPort"])
    else:
        put("port", None)
        put("ports", ports)
    return ops
