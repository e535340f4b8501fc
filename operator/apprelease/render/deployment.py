"""AppRelease + revision + track → Deployment (a plain dict, ready for server-side apply)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..api.spec import AppRelease, RevisionTemplate
from ..api.workload import ConfigFiles
from . import labels
from .hashing import config_hash
from .merge import MergeError, merge
from .nacos_config import pod_env
from .naming import Track, configmap_name, container_name, deployment_name
from .owner import child_metadata

CONFIG_VOLUME = "apprelease-config"
# Old ReplicaSets are not our history (ControllerRevisions are); keep a couple for kubectl.
DEPLOYMENT_HISTORY_LIMIT = 2


class RenderError(ValueError):
    """The spec passed admission but cannot be turned into valid children."""


class PolicyViolation(RenderError):
    """The spec asks for something the operator's policy (domain.Policy) does not allow."""


@dataclass(frozen=True)
class TrackPlan:
    """What one Deployment should run: the planner decides, the renderer draws it."""

    track: Track
    revision: int
    revision_hash: str
    template: RevisionTemplate
    replicas: int
    paused: bool = False


def _config_env(app: str, config: ConfigFiles | None) -> list[dict[str, Any]]:
    if config is None or not config.env:
        return []
    name = configmap_name(app, config_hash(config))
    return [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": name, "key": key}}}
        for key in sorted(config.env)
    ]


def _config_mounts(app: str, config: ConfigFiles | None) -> tuple[list[dict], list[dict]]:
    """volumeMounts and volumes for the config files (none when there are no files)."""
    if config is None or not config.files:
        return [], []
    assert config.mount_path is not None  # enforced by the model
    keys = sorted(config.files)
    volume = {
        "name": CONFIG_VOLUME,
        "configMap": {
            "name": configmap_name(app, config_hash(config)),
            "items": [{"key": k, "path": k} for k in keys],
        },
    }
    base = config.mount_path.rstrip("/") or "/"
    if config.sub_path:
        mounts = [
            {"name": CONFIG_VOLUME, "mountPath": f"{base.rstrip('/')}/{k}", "subPath": k,
             "readOnly": True}
            for k in keys
        ]
    else:
        mounts = [{"name": CONFIG_VOLUME, "mountPath": base, "readOnly": True}]
    return mounts, [volume]


def _default_readiness(template: RevisionTemplate) -> dict[str, Any] | None:
    """Readiness must always be set (the ops notes insist): TCP on the first port."""
    if template.readiness_probe is not None:
        return template.readiness_probe.to_wire()
    if template.ports:
        return {"tcpSocket": {"port": template.ports[0].container_port}}
    return None


def _container(app: str, template: RevisionTemplate) -> dict[str, Any]:
    mounts, _ = _config_mounts(app, template.config)
    container: dict[str, Any] = {"name": container_name(app), "image": template.image}
    optional: dict[str, Any] = {
        "imagePullPolicy": template.image_pull_policy,
        "command": template.command,
        "args": template.args,
        "ports": [
            {"name": p.name, "containerPort": p.container_port, "protocol": p.protocol}
            for p in template.ports
        ],
        "env": [e.to_wire() for e in template.env] + _config_env(app, template.config) + pod_env(template.config),
        "envFrom": [e.to_wire() for e in template.env_from],
        "resources": template.resources.to_wire() if template.resources else None,
        "readinessProbe": _default_readiness(template),
        "livenessProbe": template.liveness_probe.to_wire() if template.liveness_probe else None,
        "startupProbe": template.startup_probe.to_wire() if template.startup_probe else None,
        "volumeMounts": mounts,
    }
    container.update({k: v for k, v in optional.items() if v})
    return container


# The readiness gate the operator sets once Nacos lists the pod (rollout/instances.py).
REGISTERED_GATE = "apprelease.io/registered"
# Kubernetes' default grace period; a preStop drain comes on top of it.
DEFAULT_GRACE_SECONDS = 30


def _registry_lifecycle(app: AppRelease, generated: dict[str, Any], user: dict[str, Any] | None) -> None:
    """With a Nacos registry: Ready waits for registration (a readiness gate), and a stopping
    container keeps serving drainSeconds after its instance went offline (preStop: sleep,
    which needs nothing in the image), with a grace period long enough to cover it."""
    registry = app.spec.registry
    if registry is None or registry.nacos is None:
        return
    spec = generated["spec"]
    spec["readinessGates"] = [{"conditionType": REGISTERED_GATE}]
    if registry.drain_seconds <= 0:
        return
    user_spec = (user or {}).get("spec") or {}
    main = next((c for c in user_spec.get("containers") or [] if isinstance(c, dict)
                 and c.get("name") == container_name(app.name)), {})
    if not ((main.get("lifecycle") or {}).get("preStop")):  # the app's own hook wins
        spec["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": registry.drain_seconds}}}
    grace = user_spec.get("terminationGracePeriodSeconds")
    base = grace if isinstance(grace, int) and not isinstance(grace, bool) else DEFAULT_GRACE_SECONDS
    spec["terminationGracePeriodSeconds"] = max(base, registry.drain_seconds + DEFAULT_GRACE_SECONDS)


INT64_RANGE = range(-(2**63), 2**63)


def _beyond_int64(value: Any, path: str = "") -> tuple[str, int] | None:
    """The first integer Kubernetes cannot store, with its path. The apiserver takes it into a
    Deployment as float64 and keeps int64's minimum, which never equals what we apply: the
    Deployment would be written again on every reconcile."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value in INT64_RANGE else (path, value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found = _beyond_int64(child, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")
        if found:
            return found
    return None


def runs_adopted_pods(app: AppRelease, plan: TrackPlan) -> bool:
    """This Deployment still runs the revision whose pods were adopted: they keep the live
    template exactly (any field we would add or rename changes the pod-template hash, and the
    Deployment controller would replace every pod)."""
    adopt = app.spec.adopt
    return adopt is not None and plan.track == "stable" and plan.revision_hash == adopt.revision_hash


def pod_template(app: AppRelease, plan: TrackPlan) -> dict[str, Any]:
    adopt = app.spec.adopt
    if adopt is not None and runs_adopted_pods(app, plan):
        return copy.deepcopy(adopt.pod_template)
    template = plan.template
    too_big = _beyond_int64(template.pod_template)
    if too_big:
        raise RenderError(f"spec.podTemplate{too_big[0]}: {too_big[1]} is outside the 64-bit integers"
                          " Kubernetes stores")
    _, volumes = _config_mounts(app.name, template.config)
    pod_annotations = {labels.RESTARTED_AT: template.restart_at} if template.restart_at else {}
    generated: dict[str, Any] = {
        "metadata": {
            "labels": labels.pod_labels(app.name, plan.track, plan.revision, template.image),
        },
        "spec": {"containers": [_container(app.name, template)]},
    }
    if pod_annotations:
        generated["metadata"]["annotations"] = pod_annotations
    if volumes:
        generated["spec"]["volumes"] = volumes
    _registry_lifecycle(app, generated, template.pod_template)
    if not template.pod_template and adopt is None:
        return generated
    try:
        merged = merge(generated, template.pod_template or {})
    except MergeError as exc:
        raise RenderError(f"spec.podTemplate{exc.path}: {exc}") from None
    # The user may add labels, never break the selector or the revision bookkeeping; the
    # drain's grace period and the registration gate stay ours.
    merged["metadata"]["labels"].update(generated["metadata"]["labels"])
    if adopt is not None:  # the adopted Deployment's immutable selector and the Service's
        merged["metadata"]["labels"].update(adopt.selector)
    for key in ("terminationGracePeriodSeconds", "readinessGates"):
        if key in generated["spec"]:
            merged["spec"][key] = generated["spec"][key]
    return merged


def _strategy(app: AppRelease) -> dict[str, Any]:
    strategy = app.spec.strategy
    if strategy.recreate is not None:
        return {"type": "Recreate"}
    if strategy.canary is not None or strategy.blue_green is not None:
        # Promotion replaces stable pods without ever dropping below full capacity.
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    rolling = strategy.rolling
    surge = rolling.max_surge if rolling else "25%"
    unavailable = rolling.max_unavailable if rolling else "25%"
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def _selector(app: AppRelease, track: Track) -> dict[str, str]:
    if app.spec.adopt is not None and track == "stable":
        return dict(app.spec.adopt.selector)  # immutable: the adopted Deployment keeps its own
    return labels.track_selector_labels(app.name, track)


def render_deployment(app: AppRelease, plan: TrackPlan) -> dict[str, Any]:
    name = deployment_name(app.name, plan.track)
    meta = child_metadata(app, name, labels={labels.TRACK: plan.track})
    meta["annotations"] = {
        labels.REVISION: str(plan.revision),
        labels.REVISION_HASH: plan.revision_hash,
    }
    spec: dict[str, Any] = {
        "replicas": plan.replicas,
        "selector": {"matchLabels": _selector(app, plan.track)},
        "template": pod_template(app, plan),
        "strategy": _strategy(app),
        "revisionHistoryLimit": DEPLOYMENT_HISTORY_LIMIT,
        "progressDeadlineSeconds": app.spec.progress_deadline_seconds,
        "minReadySeconds": app.spec.min_ready_seconds,
        "paused": plan.paused,
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
