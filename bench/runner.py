"""One benchmark run: a private cluster, the baseline, then the operator through every figure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.environment import Environment, local_environment
from bench.operator_process import Memory, OperatorProcess
from bench.profiles import Profile
from bench.scenarios.canary import CanaryResult, run_canary
from bench.scenarios.converge import (
    BaselineResult,
    ConvergeResult,
    run_baseline,
    run_ours,
    timeout_for,
    watch_apps,
)
from bench.scenarios.edits import EditsResult, run_edits
from bench.scenarios.idle import IdleResult, run_idle
from bench.scenarios.restart import RestartResult, run_restart
from bench.scenarios.scale import ScaleResult, run_scale
from bench.scenarios.settle import wait_quiet
from bench.workload import bench_apps

log = logging.getLogger("bench")
T = TypeVar("T")

BASELINE_NAMESPACE = "bench-baseline"
APPS_NAMESPACE = "bench-apps"
CANARY_NAMESPACE = "bench-canary"
SCALE_NAMESPACE = "bench-scale"
STARTUP_QUIET_SECONDS = 3.0
SETTLE_QUIET_SECONDS = 10.0
RESTART_TIMEOUT_SECONDS = 900.0


@dataclass
class Measurements:
    profile: Profile
    kubernetes_version: str = ""
    baseline: BaselineResult | None = None
    converge: ConvergeResult | None = None
    memory_empty: Memory | None = None
    idle: IdleResult | None = None
    edits: EditsResult | None = None
    canary: CanaryResult | None = None
    scale: ScaleResult | None = None
    restart: RestartResult | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


@contextmanager
def _running(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    try:
        yield operator
    finally:
        operator.stop()


def measure(profile: Profile, *, keep_files: bool = False) -> Measurements:
    started = time.monotonic()
    result = Measurements(profile)

    def phase(name: str, action: Callable[[], T]) -> T:
        log.info("%s ...", name)
        began = time.monotonic()
        value = action()
        result.phase_seconds[name] = time.monotonic() - began
        log.info("%s: done in %.1f s", name, result.phase_seconds[name])
        return value

    with local_environment(profile.nodes, keep=keep_files) as env:
        result.kubernetes_version = _server_version(env)
        result.baseline = phase("baseline: kubectl apply --server-side", lambda: run_baseline(
            env, bench_apps("app", BASELINE_NAMESPACE, profile.apps), BASELINE_NAMESPACE
        ))
        operator = OperatorProcess(env.operator_kubeconfig, env.work_dir, workers=profile.workers)
        with _running(operator):
            _measure_operator(env, operator, profile, result, phase)
    result.total_seconds = time.monotonic() - started
    return result


def _measure_operator(
    env: Environment,
    operator: OperatorProcess,
    profile: Profile,
    result: Measurements,
    phase: Callable[[str, Callable[[], Any]], Any],
) -> None:
    apps = bench_apps("app", APPS_NAMESPACE, profile.apps)
    env.create_namespace(APPS_NAMESPACE)
    statuses, watcher = watch_apps(env, APPS_NAMESPACE)
    operator.start()
    wait_quiet(operator, STARTUP_QUIET_SECONDS, 60)
    result.memory_empty = operator.memory()
    result.converge = phase("converge", lambda: run_ours(env, operator, apps, APPS_NAMESPACE, statuses))

    def settle() -> None:
        statuses.wait_healthy(profile.apps, timeout_for(profile.apps))
        watcher.stop()
        wait_quiet(operator, SETTLE_QUIET_SECONDS, timeout_for(profile.apps))

    phase("settle (all pods Ready, operator quiet)", settle)
    result.idle = phase("idle", lambda: run_idle(env, operator, profile.idle_seconds))
    names = [app["metadata"]["name"] for app in apps]
    result.edits = phase("spec edits", lambda: run_edits(env, operator, names, APPS_NAMESPACE, profile.edits))
    result.canary = phase("canary steps", lambda: run_canary(
        env, operator, CANARY_NAMESPACE, profile.canary_apps, profile.canary_replicas
    ))
    extra = profile.scale_total - profile.apps - profile.canary_apps
    result.scale = phase(f"scale to {profile.scale_total}", lambda: run_scale(env, operator, SCALE_NAMESPACE, extra))
    result.restart = phase("restart", lambda: run_restart(
        env, operator, profile.scale_total, RESTART_TIMEOUT_SECONDS
    ))


def _server_version(env: Environment) -> str:
    info: dict[str, Any] = env.api.kube.request("GET", "/version")
    return str(info.get("gitVersion", "?"))
