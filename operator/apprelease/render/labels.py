"""Labels and annotations on everything we create.

The Service selects the app (name + instance), never a revision, so stable and canary pods
both receive traffic. Deployments add the track to their selector so the two Deployments
never adopt each other's pods; the revision is a label on pods, not part of any selector,
because selectors are immutable and revisions change.
"""

from __future__ import annotations

import re

from .naming import Track

GROUP = "apprelease.io"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
VERSION = "app.kubernetes.io/version"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "apprelease"
REVISION = f"{GROUP}/revision"
REVISION_HASH = f"{GROUP}/revision-hash"
TRACK = f"{GROUP}/track"
CONFIG_HASH = f"{GROUP}/config-hash"
RESTARTED_AT = f"{GROUP}/restartedAt"

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]")


def label_value(text: str) -> str:
    """Coerce text into a valid label value (<= 63 chars, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return cleaned.strip("-._")


def image_version(image: str) -> str:
    """The tag (or digest prefix) of an image reference, for app.kubernetes.io/version."""
    if "@" in image:
        return label_value(image.split("@", 1)[1].split(":")[-1][:12])
    last = image.rsplit("/", 1)[-1]
    return label_value(last.split(":", 1)[1]) if ":" in last else "latest"


def selector_labels(app: str) -> dict[str, str]:
    return {NAME: app, INSTANCE: app}


def track_selector_labels(app: str, track: Track) -> dict[str, str]:
    return {**selector_labels(app), TRACK: track}


def common_labels(app: str) -> dict[str, str]:
    return {**selector_labels(app), MANAGED_BY: MANAGER}


def pod_labels(app: str, track: Track, revision: int, image: str) -> dict[str, str]:
    return {
        **common_labels(app),
        TRACK: track,
        REVISION: str(revision),
        VERSION: image_version(image),
    }
