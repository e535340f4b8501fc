"""Memory: grow to the large count with replicas-0 AppReleases, then read the RSS.

Replicas 0 keeps 9,000 fake pods from dominating the cluster on two cores; every
AppRelease still has its ConfigMap, Service (+ EndpointSlice), Deployment, Ingress and
ControllerRevision in the operator's watch caches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.environment import Environment
from bench.kubectl import write_manifest
from bench.operator_process import Memory, OperatorProcess
from bench.scenarios.converge import timeout_for, watch_apps
from bench.scenarios.settle import wait_quiet
from bench.workload import bench_apps

QUIET_SECONDS = 10.0
KUBECTL_BATCH = 2_500  # one kubectl per batch: the first apps converge while later ones apply


@dataclass(frozen=True)
class ScaleResult:
    added: int
    seconds: float  # apply → all converged
    memory: Memory


def run_scale(env: Environment, operator: OperatorProcess, namespace: str, count: int) -> ScaleResult:
    env.create_namespace(namespace)
    statuses, watcher = watch_apps(env, namespace)
    apps = bench_apps("scale", namespace, count, replicas=0)
    started = time.monotonic()
    try:
        for first in range(0, count, KUBECTL_BATCH):
            batch = apps[first : first + KUBECTL_BATCH]
            manifest = write_manifest(env.work_dir / f"scale-{first}.json", batch)
            env.kubectl.apply_server_side(manifest, timeout=timeout_for(len(batch)))
        statuses.wait_converged(count, timeout_for(count))
    finally:
        watcher.stop()
    seconds = time.monotonic() - started
    wait_quiet(operator, QUIET_SECONDS, timeout_for(count))
    return ScaleResult(added=count, seconds=seconds, memory=operator.memory())
