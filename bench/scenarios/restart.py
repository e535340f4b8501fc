"""Operator restart with every AppRelease converged: time until all are resynced, writes.

"Resynced": the new process has reconciled every AppRelease once (the sum of its
apprelease_appreleases{phase} gauge, which a reconcile sets per AppRelease) and its work
queue is empty. Timed from the moment the process is started (imports and kopf's initial
LISTs included). Writes: the new process's metrics and the apiserver's audit log, from the
stop of the old process until a quiet period after the resync.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from bench.audit import AuditWindow
from bench.environment import Environment
from bench.operator_process import QUEUE_DEPTH, Memory, OperatorProcess, diff_counts
from bench.scenarios.settle import wait_quiet
from bench.trackers import Timeout

POLL_SECONDS = 0.25
QUIET_SECONDS = 10.0


@dataclass(frozen=True)
class RestartResult:
    seconds: float
    apps: int
    operator_writes: dict[str, int]
    audit: AuditWindow
    memory: Memory


def run_restart(env: Environment, operator: OperatorProcess, apps: int, timeout: float) -> RestartResult:
    operator.stop()
    audit_mark = env.audit.mark()
    operator.start(wait=False)
    deadline = operator.started_at + timeout
    while True:
        operator.check_alive()
        try:
            metrics = operator.metrics()
            if metrics.resynced() >= apps and metrics.value(QUEUE_DEPTH) == 0:
                break
        except httpx.HTTPError:
            pass  # not serving metrics yet
        if time.monotonic() > deadline:
            raise Timeout(f"restart: not all {apps} AppReleases resynced within {timeout:g} s")
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - operator.started_at
    wait_quiet(operator, QUIET_SECONDS, timeout)
    return RestartResult(
        seconds=seconds,
        apps=apps,
        operator_writes=diff_counts(operator.metrics().writes_by_resource(), {}),
        audit=env.audit.since(audit_mark),
        memory=operator.memory(),
    )
