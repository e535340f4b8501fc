"""Waiting for the operator to have nothing left to do (before idle and memory readings)."""

from __future__ import annotations

import time

from bench.operator_process import QUEUE_DEPTH, OperatorProcess
from bench.trackers import Timeout

POLL_SECONDS = 0.5


def wait_quiet(operator: OperatorProcess, quiet_seconds: float, timeout: float) -> None:
    """Until the work queue is empty and no write happened for `quiet_seconds`."""
    deadline = time.monotonic() + timeout
    last_writes = -1
    quiet_since = time.monotonic()
    while True:
        metrics = operator.metrics()
        writes = metrics.writes()
        busy = metrics.value(QUEUE_DEPTH) > 0
        now = time.monotonic()
        if writes != last_writes or busy:
            last_writes, quiet_since = writes, now
        elif now - quiet_since >= quiet_seconds:
            return
        if now > deadline:
            raise Timeout(f"operator still busy after {timeout:g} s (writes keep coming)")
        time.sleep(POLL_SECONDS)
