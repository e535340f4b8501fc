"""How big each mode is. --smoke checks correctness fast; --full measures the targets."""

from __future__ import annotations

from dataclasses import dataclass

# Default KWOK node capacity (apprelease_dev.fake_nodes.NODE_CAPACITY["pods"]).
PODS_PER_NODE = 250
MIN_NODES = 3


@dataclass(frozen=True)
class Profile:
    name: str
    apps: int  # AppReleases (replicas 1) for converge, idle, edits
    idle_seconds: float
    edits: int
    canary_apps: int  # each runs three setWeight steps and a promotion
    scale_total: int  # AppReleases in the cluster for the RSS and restart rows
    workers: int = 8
    # Targets apply only to the full run; smaller runs report them for orientation.
    enforce_targets: bool = False
    write_docs: bool = True

    @property
    def canary_replicas(self) -> int:
        return 4

    @property
    def nodes(self) -> int:
        """Enough KWOK nodes for every pod, with room for rolling-update surges."""
        pods = self.apps * 2 + self.canary_apps * (self.canary_replicas * 2 + 1)
        return max(MIN_NODES, -(-pods // PODS_PER_NODE) + 1)


SMOKE = Profile(
    name="smoke", apps=20, idle_seconds=10, edits=10, canary_apps=2, scale_total=40,
    write_docs=False,
)
QUICK = Profile(name="quick", apps=200, idle_seconds=60, edits=50, canary_apps=5, scale_total=1_000)
FULL = Profile(
    name="full", apps=1_000, idle_seconds=600, edits=200, canary_apps=20, scale_total=10_000,
    enforce_targets=True,
)
PROFILES = {p.name: p for p in (SMOKE, QUICK, FULL)}
