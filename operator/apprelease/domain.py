"""Domain types shared by the layers (pure: no I/O, no kopf, no client).

The rollout planner decides in these terms and the registry layer speaks them, so neither has
to import the other: registry instances as the planner sees them, and the actions it asks the
registry to carry out. api/status.py keeps its own wire-level Literal of the same tracks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# Which Deployment of an app: the app's own name (stable), or the one beside it: a canary's,
# or a blue-green preview's.
Track = Literal["stable", "canary", "preview"]
TRACKS: tuple[Track, ...] = ("stable", "canary", "preview")


@dataclass(frozen=True)
class RegistryInstance:
    """One instance as a service registry lists it (Nacos, or an EndpointSlice endpoint)."""

    ip: str
    port: int
    healthy: bool
    enabled: bool
    weight: float
    ephemeral: bool
    cluster: str
    metadata: Mapping[str, str] = field(default_factory=dict)


RegistryActionKind = Literal["write", "deregister", "mark-leaving"]

# Metadata the operator puts on every instance of its pods: which app, track and revision
# it serves (header-based gray routing picks the canary by it; stale clean-up only touches
# instances carrying its own owner mark).
OWNER_KEY = "apprelease.io/owner"
TRACK_KEY = "apprelease.io/track"
REVISION_KEY = "apprelease.io/revision"
OUR_METADATA_KEYS = (OWNER_KEY, TRACK_KEY, REVISION_KEY)


@dataclass(frozen=True)
class RegistryAction:
    """Something the planner asks the registry layer to do to one instance (or pod).

    ``write``: the instance's whole server-side state: Nacos replaces enabled, weight and
    metadata together, so the operator is the one writer of all three for its instances.
    ``must_exist=False`` writes ahead of the instance (a pod whose app has not registered
    yet), so it joins disabled. ``deregister``: remove a stale persistent instance.
    ``mark-leaving``: make the ReplicaSet remove exactly this pod on scale-down.
    """

    kind: RegistryActionKind
    pod: str | None = None
    ip: str | None = None
    port: int | None = None
    ephemeral: bool = True
    cluster: str = "DEFAULT"
    enabled: bool = True
    weight: float = 1.0
    metadata: tuple[tuple[str, str], ...] = ()
    must_exist: bool = True
    reason: str = ""


# Ingress annotations that carry raw nginx configuration (the ingress-nginx CVE class:
# configuration-snippet, server-snippet, auth-snippet...): denied unless the platform allows.
DEFAULT_DENIED_INGRESS_ANNOTATIONS = ("*-snippet", "*snippets*")


@dataclass(frozen=True)
class Policy:
    """What the platform team allows an AppRelease's author to make the operator do.

    Set on the operator's command line (`apprelease run --allow-nacos-server ...`), not in the
    AppRelease: in a shared cluster the operator acts with more rights than a namespace user.
    """

    # host:port patterns (fnmatch) the operator may send a namespace's Nacos credentials to;
    # empty: any server.
    nacos_servers: tuple[str, ...] = ()
    ingress_annotations_allowed: tuple[str, ...] = ("*",)
    ingress_annotations_denied: tuple[str, ...] = DEFAULT_DENIED_INGRESS_ANNOTATIONS

    def ingress_annotation_allowed(self, key: str) -> bool:
        allowed = any(fnmatch.fnmatchcase(key, p) for p in self.ingress_annotations_allowed)
        return allowed and not any(fnmatch.fnmatchcase(key, p) for p in self.ingress_annotations_denied)

    def nacos_server_allowed(self, host_port: str) -> bool:
        return not self.nacos_servers or any(
            fnmatch.fnmatchcase(host_port.lower(), p.lower()) for p in self.nacos_servers
        )
