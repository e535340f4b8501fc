"""Service(s): one selecting every pod of the app, plus per-track ones for nginx routing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.spec import AppRelease
from ..api.workload import ContainerPort
from . import labels
from .deployment import RenderError
from .naming import Track, service_name, track_service_name
from .owner import child_metadata


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: str
    container_port: int
    protocol: str
    node_port: int | None


def service_ports(app: AppRelease) -> list[ServicePort]:
    """Each container port exposed on the Service; service.port renames the first one's port."""
    svc = app.spec.service
    result: list[ServicePort] = []
    ports: list[ContainerPort] = app.spec.container_ports()
    for index, cp in enumerate(ports):
        primary = index == 0
        port = (svc.port if primary and svc.port else None) or cp.service_port or cp.container_port
        node_port = (svc.node_port if primary else None) or cp.node_port
        if svc.type == "ClusterIP":
            node_port = None
        result.append(ServicePort(cp.name, port, cp.name, cp.container_port, cp.protocol, node_port))
    seen: dict[tuple[int, str], str] = {}
    for sp in result:
        key = (sp.port, sp.protocol)
        if key in seen:
            raise RenderError(
                f"spec.ports: ports {seen[key]!r} and {sp.name!r} both map to Service port {sp.port}"
            )
        seen[key] = sp.name
    return result


def _service(app: AppRelease, name: str, selector: dict[str, str], extra_labels: dict[str, str]) -> dict[str, Any]:
    svc = app.spec.service
    meta = child_metadata(app, name, labels=extra_labels, user_labels=dict(svc.labels))
    if svc.annotations:
        meta["annotations"] = dict(svc.annotations)
    ports = []
    for sp in service_ports(app):
        entry: dict[str, Any] = {
            "name": sp.name,
            "port": sp.port,
            "targetPort": sp.target_port,
            "protocol": sp.protocol,
        }
        if sp.node_port:
            entry["nodePort"] = sp.node_port
        ports.append(entry)
    spec: dict[str, Any] = {"type": svc.type, "selector": selector}
    if ports:
        spec["ports"] = ports
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def render_service(app: AppRelease, revision: int | None = None, *, stable_only: bool = False) -> dict[str, Any]:
    """The app's Service. Blue-green: ``revision`` selects that revision's pods only (traffic
    on the new revision), else ``stable_only`` the stable Deployment's pods, whatever revision
    they run, so one rolling in place (a restart) keeps its old pods until new ones are ready.
    Switching traffic is changing this one selector."""
    selector = labels.selector_labels(app.name)
    if revision is not None:
        selector[labels.REVISION] = str(revision)
    elif stable_only:
        selector[labels.TRACK] = "stable"
    return _service(app, service_name(app.name), selector, {})


def render_preview_service(app: AppRelease, revision: int) -> dict[str, Any]:
    """Blue-green: the Service of the preview revision (never on node ports)."""
    selector = {**labels.selector_labels(app.name), labels.REVISION: str(revision)}
    svc = _service(app, track_service_name(app.name, "preview"), selector, {labels.TRACK: "preview"})
    svc["spec"]["type"] = "ClusterIP"
    for port in svc["spec"].get("ports", []):
        port.pop("nodePort", None)
    return svc


def render_track_service(app: AppRelease, track: Track) -> dict[str, Any]:
    svc = _service(
        app,
        track_service_name(app.name, track),
        labels.track_selector_labels(app.name, track),
        {labels.TRACK: track},
    )
    # Per-track Services are for the Ingress only; never expose them on node ports.
    svc["spec"]["type"] = "ClusterIP"
    for port in svc["spec"].get("ports", []):
        port.pop("nodePort", None)
    return svc
