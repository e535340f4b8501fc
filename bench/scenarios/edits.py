"""Spec edit → owned Deployment updated: one image edit at a time, spread over the apps.

Latency: from just before the bench sends the PATCH of the AppRelease to the moment the
bench's own watch sees the Deployment carrying the new image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.audit import AuditWindow
from bench.environment import Environment
from bench.operator_process import OperatorProcess, diff_counts
from bench.scenarios.settle import wait_quiet
from bench.trackers import DeploymentImages
from bench.watch import Watcher
from bench.workload import image

EDIT_TIMEOUT_SECONDS = 30.0
# Edits arrive one by one, as people make them; the gap lets each rollout start.
GAP_SECONDS = 0.2
MANAGED = "app.kubernetes.io/managed-by=apprelease"
QUIET_SECONDS = 5.0
SETTLE_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class EditsResult:
    latencies: list[float]
    operator_writes: dict[str, int]
    audit: AuditWindow


def run_edits(
    env: Environment, operator: OperatorProcess, names: list[str], namespace: str, count: int
) -> EditsResult:
    images = DeploymentImages()
    watcher = Watcher(env.api, "Deployment", namespace, images.handle, labelSelector=MANAGED).start()
    writes_before = operator.metrics().writes_by_resource()
    audit_mark = env.audit.mark()
    latencies = []
    try:
        for index in range(count):
            name = names[index * len(names) // count]
            new_image = image(f"edit-{index}")
            sent = time.monotonic()
            env.api.merge_patch("AppRelease", namespace, name, {"spec": {"image": new_image}})
            seen = images.wait_for(name, new_image, EDIT_TIMEOUT_SECONDS)
            latencies.append(seen - sent)
            time.sleep(GAP_SECONDS)
    finally:
        watcher.stop()
    # Count the writes each edit causes in full: the rollouts finish after the last edit.
    wait_quiet(operator, QUIET_SECONDS, SETTLE_TIMEOUT_SECONDS)
    return EditsResult(
        latencies=latencies,
        operator_writes=diff_counts(operator.metrics().writes_by_resource(), writes_before),
        audit=env.audit.since(audit_mark),
    )
