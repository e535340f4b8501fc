"""Prometheus metrics. Defined at import (cheap, no I/O); served by `apprelease run`."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

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


@dataclass(frozen=True)
class PerApp:
    """Series per AppRelease (controller/app_metrics.py keeps them current and removes them
    when a label value changes or the app goes)."""

    info: Gauge
    set_weight: Gauge
    weight: Gauge
    failure: Gauge
    step: Gauge


def per_app(registry: CollectorRegistry = REGISTRY) -> PerApp:
    app = ["namespace", "name"]
    return PerApp(
        info=Gauge("apprelease_app_info", "1 for each AppRelease, with its phase and strategy",
                   [*app, "phase", "strategy"], registry=registry),
        set_weight=Gauge("apprelease_app_set_weight", "Canary weight the current step sets (percent)",
                         app, registry=registry),
        weight=Gauge("apprelease_app_weight", "Canary weight in effect (percent of traffic or pods)",
                     app, registry=registry),
        failure=Gauge("apprelease_app_failure", "1 while a named failure blocks the AppRelease (docs/failures.md)",
                      [*app, "reason"], registry=registry),
        step=Gauge("apprelease_canary_step", "Current canary step index", app, registry=registry),
    )


PER_APP = per_app()
CANARY_STEP = PER_APP.step
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
NACOS_REQUEST_SECONDS = Histogram(
    "apprelease_nacos_request_duration_seconds",
    "Time of one HTTP request to a Nacos server (errors included), by server and method",
    ["server", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NACOS_REQUEST_ERRORS = Counter(
    "apprelease_nacos_request_errors_total",
    "Nacos requests that failed, by server and kind (timeout, connection, http_5xx, ...)",
    ["server", "error"],
)
ANALYSIS_REQUEST_SECONDS = Histogram(
    "apprelease_analysis_request_seconds",
    "Time of one analysis request (a Prometheus query, a web hook call; errors and retries"
    " included), by provider (prometheus, webhook) and server (host:port)",
    ["provider", "server"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ANALYSIS_REQUEST_ERRORS = Counter(
    "apprelease_analysis_request_errors_total",
    "Analysis requests that failed, by provider, server and kind (timeout, connection, http_5xx,"
    " bad_query, refused_address, ...)",
    ["provider", "server", "error"],
)
