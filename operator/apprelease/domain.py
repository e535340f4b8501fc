"""Domain types shared by the layers (pure: no I/O, no kopf, no client).

The rollout planner decides in these terms and the registry layer speaks them, so neither has
to import the other: registry instances as the planner sees them, and the actions it asks the
registry to carry out. api/status.py keeps its own wire-level Literal of the same tracks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# Which Deployment of an app: the app's own name (stable), or the one beside it (canary).
Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")


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


RegistryActionKind = Literal["disable", "clear", "deregister", "mark-leaving"]


@dataclass(frozen=True)
class RegistryAction:
    """Something the planner asks the registry layer to do to one instance (or pod)."""

    kind: RegistryActionKind
    pod: str | None = None
    ip: str | None = None
    port: int | None = None
    ephemeral: bool = True
