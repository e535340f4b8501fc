"""Canary pods Ready → next step applied.

Each canary app (4 replicas, steps setWeight 25/50/75) gets a new image; the operator walks
the steps: 1, 2, 3 canary pods, then promotion (the stable Deployment takes the new
revision). From the bench's watches of Pods and Deployments: the moment the last pod a step
needs turns Ready, and the moment the next step shows up in the cluster (canary Deployment
scaled up, or the stable Deployment updated). Between the two: KWOK's pod status → the
ReplicaSet and Deployment controllers' status updates → the operator's watch → reconcile →
apply. Apps are rolled one after another.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from apprelease.render import labels
from bench.environment import Environment
from bench.kubectl import write_manifest
from bench.operator_process import OperatorProcess
from bench.scenarios.converge import timeout_for, watch_apps
from bench.trackers import AppState, Sample, Timeline
from bench.watch import Watcher
from bench.workload import CANARY_WEIGHTS, bench_apps, image

ROLLOUT_TIMEOUT_SECONDS = 120.0
CANARY_PODS = f"{labels.TRACK}=canary"
MANAGED = f"{labels.MANAGED_BY}={labels.MANAGER}"


@dataclass(frozen=True)
class CanaryResult:
    latencies: list[float]
    apps: int
    rollout_seconds: list[float]  # edit → promotion completed, per app


def run_canary(
    env: Environment, operator: OperatorProcess, namespace: str, count: int, replicas: int
) -> CanaryResult:
    env.create_namespace(namespace)
    statuses, app_watcher = watch_apps(env, namespace)
    apps = bench_apps("canary", namespace, count, replicas=replicas, canary=True)
    env.kubectl.apply_server_side(write_manifest(env.work_dir / "canary-apps.json", apps))
    statuses.wait_healthy(count, timeout_for(count))

    timeline = Timeline()
    watchers = [
        Watcher(env.api, "Deployment", namespace, timeline.handle_deployment, labelSelector=MANAGED).start(),
        Watcher(env.api, "Pod", namespace, timeline.handle_pod, labelSelector=CANARY_PODS).start(),
    ]
    new_image = image("v2")
    latencies: list[float] = []
    rollouts: list[float] = []
    try:
        for app in apps:
            name = app["metadata"]["name"]
            started = time.monotonic()
            env.api.merge_patch("AppRelease", namespace, name, {"spec": {"image": new_image}})

            def promoted(state: AppState) -> bool:
                return state.converged and state.phase == "Healthy" and state.stable_revision == 2

            statuses.wait_for(f"{namespace}/{name}", promoted, ROLLOUT_TIMEOUT_SECONDS, "promotion of revision 2")
            rollouts.append(time.monotonic() - started)
            time.sleep(0.5)  # let the last events arrive before reading the timeline
            found = step_latencies(timeline.since(started), name, new_image)
            if len(found) != len(CANARY_WEIGHTS):
                raise AssertionError(f"{name}: expected {len(CANARY_WEIGHTS)} step transitions, saw {len(found)}")
            latencies += found
    finally:
        for watcher in (*watchers, app_watcher):
            watcher.stop()
    return CanaryResult(latencies=latencies, apps=count, rollout_seconds=rollouts)


def step_latencies(samples: Iterable[Sample], app: str, new_image: str) -> list[float]:
    """Pods-ready → next-step delays for one app's canary, from its event timeline."""
    canary_deployment = f"{app}-canary"
    ready: set[str] = set()
    want: int | None = None  # the canary Deployment's spec.replicas
    ready_since: float | None = None
    promoted = False
    found: list[float] = []
    for sample in sorted(samples, key=lambda s: s.at):
        if sample.kind == "Pod":
            if sample.fields["labels"].get(labels.INSTANCE) != app:
                continue
            if sample.fields["ready"] and not sample.fields["gone"]:
                ready.add(sample.name)
            else:
                ready.discard(sample.name)
        elif sample.name == canary_deployment and not sample.fields["deleted"]:
            replicas = sample.fields["replicas"]
            if want is not None and replicas is not None and replicas > want and ready_since is not None:
                found.append(sample.at - ready_since)
            if replicas != want:
                ready_since = None
            want = replicas
        elif sample.name == app and sample.fields["image"] == new_image and not promoted:
            promoted = True
            if ready_since is not None:
                found.append(sample.at - ready_since)
            ready_since = None
            continue
        else:
            continue
        if promoted:
            continue
        if want and len(ready) >= want:
            if ready_since is None:
                ready_since = sample.at
        else:
            ready_since = None
    return found
