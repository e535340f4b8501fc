"""Background analysis at scale: `python -m bench.analysis [--quick | --apps N --minutes M]`.

APPS canary AppReleases (steps: setWeight 50, then an endless pause) each run a background
analysis (startingStep 0) of one AnalysisTemplate measuring every 30 s against a real
Prometheus (built from its Go module, apprelease_dev.prometheus) that scrapes an exporter
holding one healthy series per app. Once every app is on its canary with the analysis
running, for MINUTES: the operator's API writes from the apiserver's audit log (every client of
its ServiceAccount) against the measurements it took (the runs' counts in status), and its CPU
time (/proc/<pid>/stat) and RSS. Then every app is promoted (the analysis ends) and, once all
are Healthy, one quiet minute is counted: no measurement, so no write.

Targets (docs/analysis.md, issue 23): at most one status write per measurement, no other
write while analysing, none at all once converged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apprelease import actions
from apprelease_dev.exporter import Exporter
from apprelease_dev.prometheus import PrometheusServer, ensure_prometheus
from bench.environment import Environment, local_environment
from bench.operator_process import OperatorProcess
from bench.profiles import PODS_PER_NODE
from bench.workload import app_name, bench_app, image

log = logging.getLogger("bench.analysis")
NAMESPACE = "analysis"
TEMPLATE = "error-rate"
METRIC = "bench_error_ratio"
HEALTHY_RATIO = 0.001
INTERVAL_SECONDS = 30
APPS, MINUTES = 200, 3.0
QUICK_APPS, QUICK_MINUTES = 20, 1.0
WORKERS = 8
SETTLE_TIMEOUT_SECONDS = 900.0
QUIET_SECONDS = 10.0
SETTLE_WRITES_TIMEOUT_SECONDS = 180.0
CONVERGED_SECONDS = 60.0


def _template(address: str) -> dict[str, Any]:
    """No `count`: a background metric without one is measured until the promotion."""
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": TEMPLATE, "namespace": NAMESPACE},
            "spec": {"metrics": [{
                "name": "errors", "interval": f"{INTERVAL_SECONDS}s", "consecutiveErrorLimit": 10,
                "successCondition": "result[0] < 0.01",
                "provider": {"prometheus": {"address": address, "query": METRIC + '{app="{{args.app}}"}'}},
            }]}}


def _app(index: int, tag: str) -> dict[str, Any]:
    app = bench_app(app_name("an", index), NAMESPACE)
    app["spec"]["image"] = image(tag)
    app["spec"]["strategy"] = {"canary": {
        "steps": [{"setWeight": 50}, {"pause": {}}],
        "analysis": {"templates": [{"templateName": TEMPLATE}], "startingStep": 0},
    }}
    return app


def _statuses_by_name(env: Environment) -> dict[str, dict[str, Any]]:
    items = env.api.list("AppRelease", NAMESPACE).get("items") or []
    return {item["metadata"]["name"]: item.get("status") or {} for item in items}


def _statuses(env: Environment) -> list[dict[str, Any]]:
    return list(_statuses_by_name(env).values())


def _changed_fields(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> Counter[str]:
    """Which top-level status fields changed, counted over the apps: what the writes were for."""
    changed: Counter[str] = Counter()
    for name, status in after.items():
        old = before.get(name, {})
        changed.update(key for key in set(status) | set(old) if status.get(key) != old.get(key))
    return changed


def _settle(env: Environment) -> float:
    """Seconds until a QUIET_SECONDS window without any write by the operator (the last pods of
    200 promotions may still be going away when every app already says Healthy)."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_WRITES_TIMEOUT_SECONDS:
        mark = env.audit.mark()
        time.sleep(QUIET_SECONDS)
        if not _writes(env, mark):
            break
    return time.monotonic() - started


def _measured(status: dict[str, Any]) -> int:
    """Measurements the background analysis has taken (all of them, not only the kept ones)."""
    background = (status.get("analysis") or {}).get("background") or {}
    return sum(int(m.get("count", 0)) for m in background.get("metrics") or [])


def _wait(env: Environment, operator: OperatorProcess, apps: int, what: str,
          ready: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while (done := sum(1 for s in _statuses(env) if ready(s))) < apps:
        operator.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} of {apps} apps {what}:\n{operator.log_tail()}")
        time.sleep(2.0)
    log.info("all %d apps %s", apps, what)


@dataclass(frozen=True)
class Result:
    apps: int
    minutes: float
    measurements: int
    writes: Counter[str]  # "verb resource" -> count, while analysing
    cpu_seconds: float
    rss_mib: float
    settle_seconds: float
    converged_writes: Counter[str]
    converged_fields: Counter[str]
    converged_cpu_seconds: float

    def per_app_minute(self, count: float) -> float:
        return count / self.apps / self.minutes

    @property
    def status_writes(self) -> int:
        return sum(n for what, n in self.writes.items() if what.endswith("appreleases/status"))

    @property
    def other_writes(self) -> int:
        return sum(self.writes.values()) - self.status_writes


def _writes(env: Environment, mark: int) -> Counter[str]:
    return Counter(f"{r.verb} {r.resource}" for r in env.audit.since(mark).records if r.is_write)


def measure(apps: int, minutes: float) -> Result:
    exporter = Exporter()
    for index in range(apps):
        exporter.set(METRIC, {"app": app_name("an", index)}, HEALTHY_RATIO)
    nodes = max(1, -(-apps * 3 // PODS_PER_NODE))  # stable, canary and a surge pod each
    try:
        with local_environment(nodes=nodes) as env:
            prometheus = PrometheusServer(ensure_prometheus(progress=log.info), env.work_dir / "prometheus",
                                          targets=[exporter.address])
            prometheus.start()
            try:
                return _run(env, prometheus, apps, minutes)
            finally:
                prometheus.stop()
    finally:
        exporter.close()


def _run(env: Environment, prometheus: PrometheusServer, apps: int, minutes: float) -> Result:
    env.create_namespace(NAMESPACE)
    env.kubectl.apply_documents([_template(prometheus.url)])
    env.kubectl.apply_documents([_app(i, "v1") for i in range(apps)])
    # The Prometheus is on loopback, refused unless the platform names it.
    operator = OperatorProcess(env.operator_kubeconfig, env.work_dir, workers=WORKERS,
                               extra_args=("--allow-metric-server", prometheus.address))
    operator.start()
    try:
        _wait(env, operator, apps, "Healthy on v1", lambda s: s.get("phase") == "Healthy")
        env.kubectl.apply_documents([_app(i, "v2") for i in range(apps)])
        _wait(env, operator, apps, "analysing their canary",
              lambda s: s.get("currentStepIndex") == 1 and _measured(s) >= 1)
        window = minutes * 60
        measured, mark, cpu = sum(map(_measured, _statuses(env))), env.audit.mark(), operator.cpu_seconds()
        time.sleep(window)
        cpu = operator.cpu_seconds() - cpu
        writes = _writes(env, mark)
        measured = sum(map(_measured, _statuses(env))) - measured
        rss = operator.memory().rss_mib
        failed = [s.get("abortMessage") or s.get("message") for s in _statuses(env)
                  if s.get("aborted") or s.get("phase") != "Paused"]
        if failed:
            raise AssertionError(f"{len(failed)} apps left their analysing canary, e.g. {failed[0]}")
        for index in range(apps):
            actions.perform(env.api.kube, NAMESPACE, app_name("an", index), actions.Promote(full=True))
        _wait(env, operator, apps, "promoted and Healthy on v2",
              lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2)
        settle = _settle(env)
        before, mark, quiet_cpu = _statuses_by_name(env), env.audit.mark(), operator.cpu_seconds()
        time.sleep(CONVERGED_SECONDS)
        quiet_cpu = operator.cpu_seconds() - quiet_cpu
        converged = _writes(env, mark)
        fields = _changed_fields(before, _statuses_by_name(env))
    finally:
        operator.stop()
    return Result(apps, minutes, measured, writes, cpu, rss, settle, converged, fields, quiet_cpu)


def report(result: Result) -> tuple[str, bool]:
    r = result
    status_ok = r.status_writes <= r.measurements
    quiet_ok = sum(r.converged_writes.values()) == 0
    expected = 60 / INTERVAL_SECONDS
    lines = [
        f"{r.apps} AppReleases, background analysis every {INTERVAL_SECONDS} s, {r.minutes:g} min measured",
        f"  measurements          {r.per_app_minute(r.measurements):.2f} /app/min  (expected ≈ {expected:g})",
        f"  status writes         {r.per_app_minute(r.status_writes):.2f} /app/min  "
        f"= {r.status_writes / max(r.measurements, 1):.2f} per measurement  target ≤ 1  "
        f"{'PASS' if status_ok else 'FAIL'}",
        f"  other writes          {r.per_app_minute(r.other_writes):.2f} /app/min  ({r.other_writes} in all)",
        f"  operator CPU          {r.cpu_seconds / r.minutes:.1f} s/min"
        f"  ({r.cpu_seconds / r.minutes / 60 * 100:.0f} % of a core), RSS {r.rss_mib:.0f} MiB",
        f"  converged (promoted, no analysis; writes settled {r.settle_seconds:.0f} s after all Healthy),"
        f" {CONVERGED_SECONDS:.0f} s: "
        f"{sum(r.converged_writes.values())} writes  target 0  {'PASS' if quiet_ok else 'FAIL'};"
        f" CPU {r.converged_cpu_seconds:.1f} s",
    ]
    for title, writes in (("writes while analysing", r.writes), ("writes when converged", r.converged_writes)):
        if writes:
            lines.append(f"  {title}: " + ", ".join(f"{what} {n}" for what, n in sorted(writes.items())))
    if r.converged_fields:
        lines.append("  status fields changed when converged: "
                     + ", ".join(f"{key} {n}" for key, n in sorted(r.converged_fields.items())))
    return "\n".join(lines), status_ok and quiet_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=APPS)
    parser.add_argument("--minutes", type=float, default=MINUTES, help="the analysing window")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_APPS} apps, {QUICK_MINUTES:g} min")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    apps, minutes = (QUICK_APPS, QUICK_MINUTES) if args.quick else (args.apps, args.minutes)
    text, passed = report(measure(apps, minutes))
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
