"""Names of the children. The stable Deployment and the Service keep the app's own name, so
`kubectl get deploy order-service` still works the way it did before AppRelease."""

from __future__ import annotations

from ..domain import Track

__all__ = ["Track"]


def deployment_name(app: str, track: Track) -> str:
    return app if track == "stable" else f"{app}-{track}"


def service_name(app: str) -> str:
    return app


def track_service_name(app: str, track: Track) -> str:
    """Per-track Services used by nginx traffic routing for exact weights."""
    return f"{app}-{track}"


def ingress_name(app: str) -> str:
    return app


def canary_ingress_name(app: str) -> str:
    return f"{app}-canary"


def preview_ingress_name(app: str) -> str:
    return f"{app}-preview"


def configmap_name(app: str, config_hash: str) -> str:
    return f"{app}-config-{config_hash}"


def revision_object_name(app: str, revision_hash: str) -> str:
    return f"{app}-{revision_hash}"


def container_name(app: str) -> str:
    """The main container is named after the app, as Rancher and hand-written YAML do."""
    return app
