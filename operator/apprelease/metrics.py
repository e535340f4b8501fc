"""Prometheus metrics. Defined at import (cheap, no I/O); served by `apprelease run`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "apprelease_reconcile_total", "Reconciles by result", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "apprelease_reconcile_duration_seconds",
    "Time spent in one reconcile",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Counter(
    "apprelease_api_requests_total",
    "Kubernetes API requests made by the operator",
    ["verb", "resource", "code"],
)
APPRELEASES_BY_PHASE = Gauge("apprelease_appreleases", "AppReleases by phase", ["phase"])
CANARY_STEP = Gauge(
    "apprelease_canary_step", "Current canary step index", ["namespace", "name"]
)
TRANSITIONS = Counter(
    "apprelease_transitions_total", "Rollout transitions (Event reasons)", ["reason"]
)
ROLLBACKS = Counter("apprelease_rollbacks_total", "Aborts and rollbacks by reason", ["reason"])
QUEUE_DEPTH = Gauge("apprelease_workqueue_depth", "Keys waiting to be reconciled")
GC_PAUSE_SECONDS = Histogram(
    "apprelease_gc_pause_seconds",
    "Time the cyclic garbage collector stopped the process, by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
LEADER = Gauge(
    "apprelease_leader",
    "1 while this replica holds the leader lease and may write (also 1 without leader election)",
)
LEADER_TRANSITIONS = Counter(
    "apprelease_leader_transitions_total",
    "This replica acquired, lost or released the leader lease",
    ["event"],
)
