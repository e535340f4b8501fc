"""Metadata shared by every child: namespace, labels, owner reference."""

from __future__ import annotations

from typing import Any

from ..api.spec import API_VERSION, KIND, AppRelease
from . import labels as L


def owner_reference(app: AppRelease) -> dict[str, Any] | None:
    if not app.uid:
        return None  # offline rendering (`apprelease render`) has no live owner
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": app.name,
        "uid": app.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    app: AppRelease,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    user_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Our labels always win over the user's: they are what selectors, the informers and
    ownership checks rely on."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": app.namespace,
        "labels": {**(user_labels or {}), **L.common_labels(app.name), **(labels or {})},
    }
    owner = owner_reference(app)
    if owner:
        meta["ownerReferences"] = [owner]
    return meta
