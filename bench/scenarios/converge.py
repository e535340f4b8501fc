"""Converge N AppReleases vs `kubectl apply --server-side` of what they render to.

Baseline: one kubectl apply of the rendered ConfigMaps, Services, Deployments and Ingresses,
timed until kubectl exits. Ours: one kubectl apply of the AppReleases, timed until every one
has status.observedGeneration == metadata.generation and all its children exist. Both in a
fresh namespace of the same cluster; the baseline's namespace is deleted (and gone) first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.audit import AuditWindow
from bench.environment import Environment
from bench.kubectl import write_manifest
from bench.operator_process import OperatorProcess, diff_counts
from bench.trackers import AppStatuses, Timeout
from bench.watch import Watcher
from bench.workload import rendered

CHILD_KINDS = ("ConfigMap", "Service", "Deployment", "Ingress")
MANAGED = "app.kubernetes.io/managed-by=apprelease"
SECONDS_PER_APP_ALLOWED = 1.0
MIN_TIMEOUT_SECONDS = 180.0


def timeout_for(count: int) -> float:
    return max(MIN_TIMEOUT_SECONDS, count * SECONDS_PER_APP_ALLOWED)


@dataclass(frozen=True)
class BaselineResult:
    seconds: float
    objects: int
    cleanup_seconds: float


@dataclass(frozen=True)
class ConvergeResult:
    seconds: float
    kubectl_seconds: float  # of that, applying the AppReleases themselves
    operator_writes: dict[str, int]  # the operator's metrics, by "verb Resource"
    audit: AuditWindow


def run_baseline(env: Environment, apps: list[dict[str, Any]], namespace: str) -> BaselineResult:
    env.create_namespace(namespace)
    objects = rendered(apps)
    manifest = write_manifest(env.work_dir / "baseline-rendered.json", objects)
    started = time.monotonic()
    env.kubectl.apply_server_side(manifest, timeout=timeout_for(len(apps)))
    seconds = time.monotonic() - started
    missing = _missing_children(env, apps, namespace)
    if missing:
        raise AssertionError(f"baseline: kubectl apply left objects missing: {missing[:5]}")
    cleanup = env.delete_namespace(namespace)
    return BaselineResult(seconds=seconds, objects=len(objects), cleanup_seconds=cleanup)


def run_ours(
    env: Environment,
    operator: OperatorProcess,
    apps: list[dict[str, Any]],
    namespace: str,
    statuses: AppStatuses,
) -> ConvergeResult:
    """`statuses` must already be fed by a watch on `namespace`'s AppReleases."""
    manifest = write_manifest(env.work_dir / f"{namespace}-appreleases.json", apps)
    writes_before = operator.metrics().writes_by_resource()
    audit_mark = env.audit.mark()
    started = time.monotonic()
    env.kubectl.apply_server_side(manifest, timeout=timeout_for(len(apps)))
    kubectl_seconds = time.monotonic() - started
    done = statuses.wait_converged(len(apps), timeout_for(len(apps)))
    children_at = _wait_children(env, apps, namespace, already=done)
    finished = max(done, children_at)
    return ConvergeResult(
        seconds=finished - started,
        kubectl_seconds=kubectl_seconds,
        operator_writes=diff_counts(operator.metrics().writes_by_resource(), writes_before),
        audit=env.audit.since(audit_mark),
    )


def watch_apps(env: Environment, namespace: str) -> tuple[AppStatuses, Watcher]:
    statuses = AppStatuses()
    watcher = Watcher(env.api, "AppRelease", namespace, statuses.handle).start()
    return statuses, watcher


def _wait_children(
    env: Environment, apps: list[dict[str, Any]], namespace: str, *, already: float
) -> float:
    """When every child existed. The operator applies children before it writes status, so
    if they are all there at the first look, they were there when status caught up."""
    deadline = time.monotonic() + MIN_TIMEOUT_SECONDS
    first = True
    while True:
        missing = _missing_children(env, apps, namespace)
        if not missing:
            return already if first else time.monotonic()
        if time.monotonic() > deadline:
            raise Timeout(f"children still missing after status converged: {missing[:5]}")
        first = False
        time.sleep(0.5)


def _missing_children(env: Environment, apps: list[dict[str, Any]], namespace: str) -> list[str]:
    present: dict[str, set[str]] = {}
    for kind in CHILD_KINDS:
        items = env.api.list(kind, namespace, labelSelector=MANAGED)["items"]
        present[kind] = {item["metadata"]["name"] for item in items}
    configured = {cm.rsplit("-config-", 1)[0] for cm in present["ConfigMap"]}
    missing = []
    for app in apps:
        name = app["metadata"]["name"]
        for kind in ("Service", "Deployment", "Ingress"):
            if name not in present[kind]:
                missing.append(f"{kind} {name}")
        if name not in configured:
            missing.append(f"ConfigMap {name}-config-*")
    return missing
