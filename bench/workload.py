"""The AppReleases the benchmarks create, and what they render to (the baseline's input)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apprelease.api.spec import API_VERSION, KIND, AppRelease
from apprelease.render import render_initial

IMAGE_REPOSITORY = "registry.local/bench/app"
PORT = 8080
CANARY_WEIGHTS = (25, 50, 75)


def image(tag: str) -> str:
    return f"{IMAGE_REPOSITORY}:{tag}"


def app_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}"


def bench_app(
    name: str, namespace: str, *, replicas: int = 1, canary: bool = False
) -> dict[str, Any]:
    """A typical web app: one port, a config file, an Ingress -> ConfigMap, Service,
    Deployment and Ingress (plus the ControllerRevision the operator keeps as history)."""
    spec: dict[str, Any] = {
        "image": image("v1"),
        "replicas": replicas,
        "port": PORT,
        "env": [{"name": "APP_NAME", "value": name}],
        "config": {"mountPath": "/etc/app", "files": {"app.yml": f"name: {name}\nport: {PORT}\n"}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        "ingress": {"host": f"{name}.bench.local"},
    }
    if canary:
        spec["strategy"] = {"canary": {"steps": [{"setWeight": w} for w in CANARY_WEIGHTS]}}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def bench_apps(
    prefix: str, namespace: str, count: int, *, start: int = 0, replicas: int = 1,
    canary: bool = False,
) -> list[dict[str, Any]]:
    return [
        bench_app(app_name(prefix, i), namespace, replicas=replicas, canary=canary)
        for i in range(start, start + count)
    ]


def rendered(apps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exactly what `apprelease render` prints for these AppReleases."""
    objects: list[dict[str, Any]] = []
    for app in apps:
        objects += render_initial(AppRelease.model_validate(app))
    return objects
