"""Ingress: the app's routes, and an nginx canary Ingress carrying the exact weight."""

from __future__ import annotations

from typing import Any

from ..api.exposure import IngressSpec
from ..api.spec import AppRelease
from .deployment import RenderError
from .naming import canary_ingress_name, ingress_name, preview_ingress_name
from .owner import child_metadata
from .service import ServicePort, service_ports

NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def _backend_port(ports: list[ServicePort], ref: int | str | None) -> dict[str, Any]:
    if not ports:
        raise RenderError("spec.ingress: the app has no ports to route to; set spec.port or spec.ports")
    if ref is None:
        return {"number": ports[0].port}
    if isinstance(ref, str):
        if any(p.name == ref for p in ports):
            return {"name": ref}
        raise RenderError(f"spec.ingress: port {ref!r} is not the name of any of spec.ports")
    for p in ports:
        if ref in (p.port, p.container_port):
            return {"number": p.port}
    raise RenderError(f"spec.ingress: port {ref} is not exposed by the Service")


def _rules(ingress: IngressSpec, ports: list[ServicePort], backend_service: str) -> list[dict[str, Any]]:
    rules = []
    for rule in ingress.effective_rules():
        paths = [
            {
                "path": p.path,
                "pathType": p.path_type,
                "backend": {
                    "service": {"name": backend_service, "port": _backend_port(ports, p.port)}
                },
            }
            for p in rule.paths
        ]
        entry: dict[str, Any] = {"http": {"paths": paths}}
        if rule.host:
            entry["host"] = rule.host
        rules.append(entry)
    return rules


def _ingress(app: AppRelease, name: str, backend_service: str, annotations: dict[str, str]) -> dict[str, Any]:
    ingress = app.spec.ingress
    assert ingress is not None
    meta = child_metadata(app, name)
    merged_annotations = {**ingress.annotations, **annotations}
    if merged_annotations:
        meta["annotations"] = merged_annotations
    spec: dict[str, Any] = {"rules": _rules(ingress, service_ports(app), backend_service)}
    if ingress.class_name:
        spec["ingressClassName"] = ingress.class_name
    if ingress.tls:
        spec["tls"] = [t.to_wire() for t in ingress.tls]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def render_ingress(app: AppRelease, backend_service: str) -> dict[str, Any]:
    return _ingress(app, ingress_name(app.name), backend_service, {})


def render_canary_ingress(app: AppRelease, backend_service: str, weight: int) -> dict[str, Any]:
    return _ingress(
        app,
        canary_ingress_name(app.name),
        backend_service,
        {NGINX_CANARY: "true", NGINX_CANARY_WEIGHT: str(weight)},
    )


def render_preview_ingress(app: AppRelease, backend_service: str) -> dict[str, Any]:
    """Blue-green: reach the preview revision before the switch (strategy.blueGreen.previewIngress)."""
    strategy = app.spec.strategy.blue_green
    assert strategy is not None and strategy.preview_ingress is not None
    preview = strategy.preview_ingress
    ports = service_ports(app)
    spec: dict[str, Any] = {"rules": [{
        "host": preview.host,
        "http": {"paths": [{"path": preview.path, "pathType": "Prefix",
                            "backend": {"service": {"name": backend_service, "port": _backend_port(ports, None)}}}]},
    }]}
    class_name = preview.class_name or (app.spec.ingress.class_name if app.spec.ingress else None)
    if class_name:
        spec["ingressClassName"] = class_name
    meta = child_metadata(app, preview_ingress_name(app.name))
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
