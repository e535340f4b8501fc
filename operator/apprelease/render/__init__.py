"""Pure renderers: AppRelease + what the planner decided → manifest dicts. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.spec import AppRelease
from ..api.workload import ConfigFiles
from ..domain import Policy
from .configmap import render_configmap
from .deployment import PolicyViolation, RenderError, TrackPlan, render_deployment
from .hashing import config_hash, revision_hash
from .httproute import render_http_route
from .ingress import render_canary_ingress, render_ingress, render_preview_ingress
from .naming import Track, deployment_name, service_name, track_service_name
from .service import render_preview_service, render_service, render_track_service

__all__ = [
    "DesiredChildren",
    "Policy",
    "PolicyViolation",
    "RenderError",
    "TrackPlan",
    "render_children",
    "render_initial",
]


@dataclass(frozen=True)
class DesiredChildren:
    """What should exist: Deployments per track, configs to keep, the nginx canary weight."""

    tracks: tuple[TrackPlan, ...]
    retained_configs: tuple[ConfigFiles, ...] = field(default=())
    # Set only with nginx traffic routing while a canary runs: weight of the canary Ingress.
    nginx_canary_weight: int | None = None
    # Tracks whose Deployment is left exactly as it is (neither applied nor pruned).
    untouched_tracks: tuple[Track, ...] = ()
    # The canary's share of traffic now (Gateway API backendRefs weights), 0 with no canary.
    canary_weight: int = 0
    # A canary pod is ready: the Gateway API header match may send requests to the canary.
    canary_serving: bool = False
    # Blue-green: the revision the active Service selects (None: the stable Deployment's
    # pods, whatever their revision), and the preview's.
    active_revision: int | None = None
    preview_revision: int | None = None

    def untouched_names(self, app: str) -> set[tuple[str, str]]:
        return {("Deployment", deployment_name(app, t)) for t in self.untouched_tracks}


def _configmaps(app: AppRelease, desired: DesiredChildren) -> list[dict[str, Any]]:
    configs: dict[str, ConfigFiles] = {}
    for config in [t.template.config for t in desired.tracks] + list(desired.retained_configs):
        if config is not None and (config.files or config.env):
            configs.setdefault(config_hash(config), config)
    return [render_configmap(app, configs[h]) for h in sorted(configs)]


def check_policy(app: AppRelease, policy: Policy) -> None:
    """PolicyViolation for what the operator's policy forbids, before anything is rendered."""
    if app.spec.ingress is None:
        return
    denied = sorted(k for k in app.spec.ingress.annotations if not policy.ingress_annotation_allowed(k))
    if denied:
        raise PolicyViolation(
            f"spec.ingress.annotations: {', '.join(denied)} not allowed by the operator's policy"
            " (raw nginx configuration snippets are denied by default; see docs/security.md)"
        )


def render_children(
    app: AppRelease, desired: DesiredChildren, policy: Policy | None = None
) -> list[dict[str, Any]]:
    """Every child in apply order: config first so new pods can mount it, Ingress last."""
    check_policy(app, policy or Policy())
    canary = app.spec.strategy.canary
    routing = canary.traffic_routing if canary is not None else None
    nginx = routing == "nginx"
    per_track = routing in ("nginx", "gatewayAPI")
    has_canary = any(t.track == "canary" for t in desired.tracks)
    children = _configmaps(app, desired)
    if app.spec.container_ports():  # a Service without ports is invalid: workers get none
        children.append(render_service(app, desired.active_revision, stable_only=app.spec.strategy.blue_green is not None))
        if per_track:
            children += [render_track_service(app, "stable"), render_track_service(app, "canary")]
        if desired.preview_revision is not None:
            children.append(render_preview_service(app, desired.preview_revision))
    children += [render_deployment(app, plan) for plan in desired.tracks]
    if app.spec.ingress is not None:
        backend = track_service_name(app.name, "stable") if nginx else service_name(app.name)
        children.append(render_ingress(app, backend))
        if nginx and desired.nginx_canary_weight is not None:
            children.append(
                render_canary_ingress(
                    app, track_service_name(app.name, "canary"), desired.nginx_canary_weight
                )
            )
    blue_green = app.spec.strategy.blue_green
    if blue_green is not None and blue_green.preview_ingress is not None and desired.preview_revision is not None:
        children.append(render_preview_ingress(app, track_service_name(app.name, "preview")))
    if routing == "gatewayAPI" and app.spec.container_ports():
        children.append(render_http_route(app, desired.canary_weight, has_canary, header=desired.canary_serving))
    return children


def render_initial(app: AppRelease) -> list[dict[str, Any]]:
    """What a first reconcile creates: revision 1 on the stable track (used by `render -f`)."""
    template = app.spec.revision_template()
    plan = TrackPlan(
        track="stable",
        revision=1,
        revision_hash=revision_hash(template),
        template=template,
        replicas=app.spec.replicas,
        paused=app.spec.paused,
    )
    return render_children(app, DesiredChildren(tracks=(plan,)))
