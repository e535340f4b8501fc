"""Writes by the operator while every AppRelease is converged and nothing changes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.audit import AuditWindow
from bench.environment import Environment
from bench.operator_process import Memory, OperatorProcess, diff_counts

CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class IdleResult:
    seconds: float
    operator_writes: dict[str, int]
    audit: AuditWindow
    memory: Memory  # at the end of the window


def run_idle(env: Environment, operator: OperatorProcess, seconds: float) -> IdleResult:
    writes_before = operator.metrics().writes_by_resource()
    audit_mark = env.audit.mark()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(min(CHECK_SECONDS, seconds - (time.monotonic() - started)))
        operator.check_alive()
    elapsed = time.monotonic() - started
    return IdleResult(
        seconds=elapsed,
        operator_writes=diff_counts(operator.metrics().writes_by_resource(), writes_before),
        audit=env.audit.since(audit_mark),
        memory=operator.memory(),
    )
