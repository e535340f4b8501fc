"""Gateway API: the HTTPRoute whose backendRefs carry the canary's weight (trafficRouting
gatewayAPI), plus an optional header match that sends chosen requests to the canary."""

from __future__ import annotations

from typing import Any

from ..api.spec import AppRelease
from .naming import track_service_name
from .owner import child_metadata
from .service import service_ports

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


def render_http_route(app: AppRelease, canary_weight: int, has_canary: bool, *, header: bool) -> dict[str, Any]:
    """``header``: the canary can serve, so the canaryHeader match (if any) routes to it."""
    canary_spec = app.spec.strategy.canary
    assert canary_spec is not None and canary_spec.gateway_api is not None
    route = canary_spec.gateway_api
    port = service_ports(app)[0].port

    def backend(track: str, weight: int) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": track_service_name(app.name, track),  # type: ignore[arg-type]
                "port": port, "weight": weight}

    path = {"type": "PathPrefix", "value": route.path}
    rules: list[dict[str, Any]] = []
    if has_canary and header and route.canary_header is not None:
        match = {"type": "Exact", "name": route.canary_header.name, "value": route.canary_header.value}
        rules.append({"matches": [{"path": path, "headers": [match]}], "backendRefs": [backend("canary", 1)]})
    backends = [backend("stable", 100 - canary_weight if has_canary else 100)]
    if has_canary:
        backends.append(backend("canary", canary_weight))
    rules.append({"matches": [{"path": path}], "backendRefs": backends})
    spec: dict[str, Any] = {
        "parentRefs": [p.to_wire() for p in route.parent_refs],
        "rules": rules,
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    meta = child_metadata(app, route.http_route)
    return {"apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute", "metadata": meta, "spec": spec}
