"""Options of `apprelease run`, handed to the kopf handlers through kopf's memo."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..domain import Policy
from .leader_election import ElectionTimings


@dataclass(frozen=True)
class RunOptions:
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    workers: int = 8
    metrics_port: int | None = 8081
    kubeconfig: str | None = None
    context: str | None = None  # the kubeconfig's context (default: its current one)
    registry_poll_seconds: float = 5.0
    policy: Policy = field(default_factory=Policy)
    startup_deadline_seconds: float = 180.0
    # Leader election (docs/high-availability.md): only the holder of this Lease writes.
    # `apprelease run` turns it on unless --no-leader-elect.
    leader_election: bool = False
    lease_name: str = "apprelease"
    lease_namespace: str = "default"
    election: ElectionTimings = field(default_factory=ElectionTimings)
    identity: str | None = None  # default: the pod's name and a random suffix
    # Notifications (docs/notifications.md): the console's base URL for links, and networks a
    # sink may be in although the address policy refuses them by default.
    console_url: str = ""
    notification_networks: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


class OperatorStop:
    """kopf's stop flag, and why the operator was asked to stop (then it exits non-zero)."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = reason
        self.flag.set()
