"""Measurements → table rows, each checked against its target."""

from __future__ import annotations

from bench.audit import AuditWindow
from bench.results import Row, counts, millis, seconds
from bench.runner import Measurements
from bench.stats import median, percentile

CONVERGE_RATIO_TARGET = 1.3
EDIT_P99_TARGET_SECONDS = 0.250
CANARY_MEDIAN_TARGET_SECONDS = 1.0
MARGINAL_TARGET_BYTES = 60_000
TOTAL_TARGET_MIB = 600
RESTART_TARGET_SECONDS = 60.0


def _duration(value: float) -> str:
    return f"{value / 60:.0f} min" if value >= 120 else f"{value:.0f} s"


def _per_app(writes: dict[str, int], apps: int) -> str:
    total = sum(writes.values())
    return f"{total} ({total / apps:.1f} per AppRelease)" if apps else str(total)


def _audit_note(window: AuditWindow) -> str:
    return f"apiserver audit log, operator's ServiceAccount: writes {counts(window.writes_by())}"


def converge_row(m: Measurements) -> Row:
    assert m.baseline is not None and m.converge is not None
    n = m.profile.apps
    ratio = m.converge.seconds / m.baseline.seconds
    return Row(
        figure=f"converge {n:,} AppReleases (children exist, observedGeneration current)",
        baseline=f"{seconds(m.baseline.seconds)} (kubectl apply --server-side, {m.baseline.objects:,} objects)",
        ours=seconds(m.converge.seconds),
        ratio=f"{ratio:.2f}x",
        target=f"≤ {CONVERGE_RATIO_TARGET}x",
        passed=ratio <= CONVERGE_RATIO_TARGET,
        notes=[
            f"ours includes kubectl applying the {n:,} AppReleases ({seconds(m.converge.kubectl_seconds)});"
            f" the operator works while they arrive",
            f"operator writes (its metrics): {_per_app(m.converge.operator_writes, n)}: {counts(m.converge.operator_writes)}",
            _audit_note(m.converge.audit) + f" (total {m.converge.audit.writes()})",
        ],
    )


def idle_row(m: Measurements) -> Row:
    assert m.idle is not None
    ours_metrics = sum(m.idle.operator_writes.values())
    ours_audit = m.idle.audit.writes()
    reads = m.idle.audit.requests_by_agent()
    return Row(
        figure=f"API writes while {m.profile.apps:,} converged AppReleases sit idle {_duration(m.idle.seconds)}",
        ours=f"{ours_metrics} (operator metrics) / {ours_audit} (apiserver audit)",
        target="0",
        passed=ours_metrics == 0 and ours_audit == 0,
        notes=[
            "every request of the operator's identity while idle: "
            + ("; ".join(f"{agent}: {counts(verbs)}" for agent, verbs in reads.items()) or "none"),
        ],
    )


def memory_rows(m: Measurements) -> list[Row]:
    assert m.memory_empty is not None and m.idle is not None and m.scale is not None
    n, total = m.profile.apps, m.profile.scale_total
    empty, at_n, at_total = m.memory_empty, m.idle.memory, m.scale.memory
    first = (at_n.rss_kib - empty.rss_kib) * 1024 / n
    second = (at_total.rss_kib - at_n.rss_kib) * 1024 / (total - n)
    return [
        Row(
            figure=f"operator RSS at {n:,} AppReleases (1 pod each); marginal per AppRelease",
            baseline=f"{empty.rss_mib:.0f} MiB with none",
            ours=f"{at_n.rss_mib:.0f} MiB (peak {at_n.hwm_mib:.0f} MiB); {first / 1000:.1f} KB each",
            target="≤ 60 KB each",
            passed=first <= MARGINAL_TARGET_BYTES,
            notes=["VmRSS / VmHWM from /proc/<pid>/status at the end of the idle window"],
        ),
        Row(
            figure=f"operator RSS at {total:,} AppReleases; marginal per AppRelease above {n:,}",
            baseline=f"{at_n.rss_mib:.0f} MiB at {n:,}",
            ours=f"{at_total.rss_mib:.0f} MiB (peak {at_total.hwm_mib:.0f} MiB); {second / 1000:.1f} KB each",
            target=f"≤ 60 KB each, ≤ {TOTAL_TARGET_MIB} MiB total at 10,000",
            passed=second <= MARGINAL_TARGET_BYTES and at_total.rss_mib <= TOTAL_TARGET_MIB,
            notes=[
                f"the {total - n:,} added AppReleases have replicas 0 (no pods; {m.profile.canary_apps}"
                f" of them are the canary apps with 4 replicas): 10,000 fake pods would dominate two cores;"
                f" each still has its ConfigMap, Service, EndpointSlice, Deployment, Ingress and ControllerRevision",
                f"growing to {total:,} took {seconds(m.scale.seconds)} (kubectl apply + converge)",
            ],
        ),
    ]


def edits_row(m: Measurements) -> Row:
    assert m.edits is not None
    lat = m.edits.latencies
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    return Row(
        figure=f"spec edit → owned Deployment updated, p50 / p99 over {len(lat)} edits",
        ours=f"{millis(p50)} / {millis(p99)}",
        target=f"p99 ≤ {millis(EDIT_P99_TARGET_SECONDS)}",
        passed=p99 <= EDIT_P99_TARGET_SECONDS,
        notes=[
            f"max {millis(max(lat))}; one image edit at a time over the {m.profile.apps:,} apps,"
            " from the bench's PATCH to its watch seeing the new image",
            f"operator writes: {_per_app(m.edits.operator_writes, len(lat)).replace('AppRelease', 'edit')}:"
            f" {counts(m.edits.operator_writes)}",
        ],
    )


def canary_row(m: Measurements) -> Row:
    assert m.canary is not None
    lat = m.canary.latencies
    med = median(lat)
    return Row(
        figure="canary pods Ready → next step applied, median",
        ours=millis(med),
        target=f"≤ {millis(CANARY_MEDIAN_TARGET_SECONDS)}",
        passed=med <= CANARY_MEDIAN_TARGET_SECONDS,
        notes=[
            f"{len(lat)} step transitions over {m.canary.apps} canaries (setWeight 25/50/75 of 4"
            f" replicas, then promotion); p90 {millis(percentile(lat, 90))}, max {millis(max(lat))};"
            f" includes the ReplicaSet and Deployment controllers' status updates",
            f"edit → promotion completed: median {seconds(median(m.canary.rollout_seconds))}",
        ],
    )


def restart_row(m: Measurements) -> Row:
    assert m.restart is not None
    r = m.restart
    writes_metrics = sum(r.operator_writes.values())
    writes_audit = r.audit.writes()
    return Row(
        figure=f"operator restart with {r.apps:,} AppReleases → all resynced; writes made",
        ours=f"{seconds(r.seconds)}; writes {writes_metrics} (metrics) / {writes_audit} (audit)",
        target=f"≤ {RESTART_TARGET_SECONDS:.0f} s; 0 writes",
        passed=r.seconds <= RESTART_TARGET_SECONDS and writes_metrics == 0 and writes_audit == 0,
        notes=[
            f"from process start to every AppRelease reconciled once; peak RSS while resyncing"
            f" {r.memory.hwm_mib:.0f} MiB, {r.memory.rss_mib:.0f} MiB after",
            "requests of the operator's identity: "
            + "; ".join(f"{agent}: {counts(verbs)}" for agent, verbs in r.audit.requests_by_agent().items()),
        ],
    )


def build_rows(m: Measurements) -> list[Row]:
    return [converge_row(m), idle_row(m), *memory_rows(m), edits_row(m), canary_row(m), restart_row(m)]


def correctness_failures(m: Measurements) -> list[str]:
    """What makes even --smoke fail: writes where there must be none."""
    failures = []
    if m.idle is not None and (m.idle.operator_writes or m.idle.audit.writes()):
        failures.append(f"writes while idle: {m.idle.operator_writes} / {m.idle.audit.writes_by()}")
    if m.restart is not None and (m.restart.operator_writes or m.restart.audit.writes()):
        failures.append(f"writes on restart: {m.restart.operator_writes} / {m.restart.audit.writes_by()}")
    return failures
