"""Weight follows readiness, checked on a real router object (an HTTPRoute, an nginx canary
Ingress) while the canary's pods start: sampled until the step's weight is routed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.plugins.cluster import NotYet, wait_for
from tests.plugins.operator import AppReleases


@dataclass(frozen=True)
class Routed:
    """What the router sends the canary: its weight (None: no canary backend at all) and
    whether a header match routes to it."""

    weight: int | None
    header: bool = False


def canary_pods_ready(arl: AppReleases, app: str) -> list[bool]:
    """Ready, per live canary pod of ``app``."""
    items = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance={app},apprelease.io/track=canary")["items"]
    return [any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
            for p in items if not p["metadata"].get("deletionTimestamp")]


@dataclass
class _Samples:
    unready_and_unrouted: int = 0  # canary pods exist, none ready, and the router sends them nothing
    seen: list[tuple[Routed, list[bool]]] = field(default_factory=list)


def wait_until_routed_only_once_ready(
    arl: AppReleases, app: str, routed: Callable[[], Routed], want: Routed, timeout: float = 90,
) -> None:
    """Sample the router, then the canary pods, until the router carries ``want``. The router
    is read first, so a share seen there was written before the pods were read: one of them
    must be Ready. Some sample must show not-ready canary pods with no share (else the test
    saw nothing of the window it is about)."""
    samples = _Samples()

    def check() -> Routed | NotYet:
        now = routed()
        ready = canary_pods_ready(arl, app)
        samples.seen.append((now, ready))
        if (now.weight or now.header) and not any(ready):
            raise AssertionError(f"the router sends the canary {now} while none of its pods is ready: {ready}")
        if ready and not any(ready) and not now.weight and not now.header:
            samples.unready_and_unrouted += 1
        return now if now == want else NotYet((now, ready))

    wait_for(check, timeout, 0.3, f"the router to carry {want} once a canary pod is ready")
    assert samples.unready_and_unrouted >= 2, f"never saw the canary starting without a share: {samples.seen[:10]}"
