"""Options of `apprelease run`, handed to the kopf handlers through kopf's memo."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain import Policy


@dataclass(frozen=True)
class RunOptions:
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    workers: int = 8
    metrics_port: int | None = 8081
    kubeconfig: str | None = None
    context: str | None = None  # the kubeconfig's context (default: its current one)
    peering: str | None = None  # None: standalone
    registry_poll_seconds: float = 5.0
    policy: Policy = field(default_factory=Policy)
    startup_deadline_seconds: float = 180.0

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
