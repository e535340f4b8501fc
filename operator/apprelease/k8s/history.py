"""RevisionRecord ⇄ ControllerRevision.

ControllerRevisions (apps/v1) are Kubernetes' own history objects: owned by the AppRelease
(garbage-collected with it), visible with `kubectl get controllerrevisions`, and their
``data`` is immutable, which is what a revision's content should be. The marks (promoted,
aborted) are annotations; the number is ``.revision`` (mutable, renumbered on rollback).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.spec import AppRelease, RevisionTemplate
from ..render import labels
from ..render.naming import revision_object_name
from ..render.owner import child_metadata
from ..rollout.observed import RevisionRecord

CREATED = f"{labels.GROUP}/created-at"
PROMOTED = f"{labels.GROUP}/promoted-at"
ABORTED = f"{labels.GROUP}/aborted-at"
ABORT_REASON = f"{labels.GROUP}/abort-reason"
IMAGE = f"{labels.GROUP}/image"


def to_controller_revision(app: AppRelease, record: RevisionRecord) -> dict[str, Any]:
    meta = child_metadata(
        app, revision_object_name(app.name, record.hash), labels={labels.REVISION_HASH: record.hash}
    )
    annotations = {
        CREATED: record.created,
        IMAGE: record.template.image,
        PROMOTED: record.promoted,
        ABORTED: record.aborted,
        ABORT_REASON: record.abort_reason,
    }
    meta["annotations"] = {k: v for k, v in annotations.items() if v}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta,
        "revision": record.number,
        "data": {"template": record.template.to_wire()},
    }


def from_controller_revision(obj: Mapping[str, Any]) -> RevisionRecord:
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return RevisionRecord(
        number=int(obj["revision"]),
        hash=(meta.get("labels") or {})[labels.REVISION_HASH],
        template=RevisionTemplate.model_validate(obj["data"]["template"]),
        created=annotations.get(CREATED, meta.get("creationTimestamp", "")),
        promoted=annotations.get(PROMOTED),
        aborted=annotations.get(ABORTED),
        abort_reason=annotations.get(ABORT_REASON),
    )
