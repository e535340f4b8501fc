"""The memory row alone, for finding where the operator's RSS goes (about 5 minutes).

    python -m bench.memory [--apps 1000] [--pods 200] [--source DIR] [--inspect]

On a fresh local cluster: the operator's RSS with no AppReleases, then after `--apps`
AppReleases (the first `--pods` with one replica, the rest with replicas 0, as the quick
run's 1,000), applied in one `kubectl apply`, have converged and the operator has been quiet
for 10 s, then after a restart. Each reading also logs the reconciles and writes so far.

`--source` runs another checkout's operator (its `operator/` directory; with that
checkout's CRDs unless `--crds` says otherwise) from this bench, to compare commits: e.g.
`git worktree add --detach /tmp/old <sha>`, then `--source /tmp/old/operator`. (A checkout
from before the console existed cannot load this venv's `apprelease.commands` entry points:
give it a sitecustomize.py that filters them out.)

`--inspect` starts the operator under `bench/memory_inspect.py` and writes what it holds at
each reading (glibc's and Python's allocators, the write overlay, gc-tracked objects; see
there) next to the operator's log; `--tracemalloc` adds tracemalloc's allocation sites,
which cost memory of their own (RSS is then not comparable with a plain run's).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from pathlib import Path

from bench.environment import CRD_DIR, local_environment
from bench.kubectl import write_manifest
from bench.operator_process import (
    RECONCILES,
    SOURCE_ROOT,
    START_TIMEOUT_SECONDS,
    Memory,
    OperatorProcess,
)
from bench.scenarios.converge import timeout_for, watch_apps
from bench.scenarios.restart import run_restart
from bench.scenarios.settle import wait_quiet
from bench.workload import bench_apps

log = logging.getLogger("bench")
NAMESPACE = "bench-memory"
QUIET_SECONDS = 10.0
INSPECT_SCRIPT = Path(__file__).resolve().parent / "memory_inspect.py"
INSPECT_WAIT_SECONDS = 900.0  # a report takes 1-3 min on the shared machine
INSPECT_START_SECONDS = 300.0  # imports under tracemalloc take ~50 s on the shared machine


def _reading(operator: OperatorProcess, label: str, inspect: bool) -> Memory:
    memory = operator.memory()  # before the dump, which allocates
    if inspect:
        report = operator.log_dir / f"inspect-{label}.txt"
        (operator.log_dir / "inspect-request").write_text(label)
        os.kill(operator.pid, signal.SIGUSR1)
        deadline = time.monotonic() + INSPECT_WAIT_SECONDS
        while not report.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {report} from the operator:\n{operator.log_tail()}")
            time.sleep(0.5)
        log.info("%s: what the operator holds is in %s", label, report)
    metrics = operator.metrics()
    log.info("%s: RSS %.1f MiB (peak %.1f MiB); so far %d reconciles, %d writes %s", label, memory.rss_mib,
             memory.hwm_mib, metrics.value(RECONCILES), metrics.writes(), metrics.writes_by_resource())
    return memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=200, help="of those, how many have one replica")
    parser.add_argument("--source", type=Path, default=SOURCE_ROOT, help="an operator/ directory")
    parser.add_argument("--crds", type=Path, help="CRD directory (default: the source's checkout's)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--inspect", action="store_true", help="allocator and gc reports")
    parser.add_argument("--tracemalloc", action="store_true", help="--inspect with tracemalloc")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, reports)")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        args.inspect = True
        os.environ["BENCH_TRACEMALLOC"] = "1"  # read by memory_inspect.py in the operator
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    source = args.source.resolve()
    crd_dir = args.crds or (source.parent / "crds" if args.source != SOURCE_ROOT else CRD_DIR)
    nodes = max(3, -(-args.pods // 200) + 1)
    readings: dict[str, Memory] = {}
    with local_environment(nodes, keep=args.keep or args.inspect, crd_dir=crd_dir) as env:
        launcher = (str(INSPECT_SCRIPT), str(env.work_dir)) if args.inspect else ("-m", "apprelease.cli.main")
        operator = OperatorProcess(
            env.operator_kubeconfig, env.work_dir, workers=args.workers, source_root=source, launcher=launcher
        )
        try:
            env.create_namespace(NAMESPACE)
            statuses, watcher = watch_apps(env, NAMESPACE)
            operator.start(wait=False)
            operator.wait_healthy(INSPECT_START_SECONDS if args.tracemalloc else START_TIMEOUT_SECONDS)
            wait_quiet(operator, QUIET_SECONDS / 2, 60)
            readings["none"] = _reading(operator, "none", args.inspect)
            apps = bench_apps("app", NAMESPACE, args.pods) + bench_apps(
                "app", NAMESPACE, args.apps - args.pods, start=args.pods, replicas=0
            )
            started = time.monotonic()
            manifest = write_manifest(env.work_dir / "apps.json", apps)
            env.kubectl.apply_server_side(manifest, timeout=timeout_for(len(apps)))
            statuses.wait_converged(len(apps), timeout_for(len(apps)))
            watcher.stop()
            wait_quiet(operator, QUIET_SECONDS, timeout_for(len(apps)))
            log.info("%d AppReleases converged in %.1f s", len(apps), time.monotonic() - started)
            readings["grown"] = _reading(operator, "grown", args.inspect)
            restart = run_restart(env, operator, len(apps), timeout_for(len(apps)))
            log.info("restart: resynced in %.1f s", restart.seconds)
            readings["restarted"] = _reading(operator, "restarted", args.inspect)
        finally:
            operator.stop()
    empty, grown = readings["none"], readings["grown"]
    per_app = (grown.rss_kib - empty.rss_kib) * 1024 / args.apps / 1000
    print(f"operator source: {source}")
    for label, memory in readings.items():
        print(f"| {label} | RSS {memory.rss_mib:.1f} MiB | peak {memory.hwm_mib:.1f} MiB |")
    print(f"marginal per AppRelease: {per_app:.1f} KB ({args.apps} apps, {args.pods} with a pod)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
