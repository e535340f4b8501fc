"""The converge row's floor: the same objects as `--full`, applied with no operator running.

    python -m bench.floor [N]

Times kubectl's server-side apply of the N apps' rendered children (the baseline), then of
the N AppReleases alone, on a fresh local cluster. The second is what the AppRelease writes
cost the apiserver by themselves; in the converge row they compete with the operator's.
"""

from __future__ import annotations

import argparse
import logging
import time

from bench.environment import local_environment
from bench.kubectl import write_manifest
from bench.scenarios.converge import run_baseline, timeout_for
from bench.workload import bench_apps

log = logging.getLogger("bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("count", type=int, nargs="?", default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with local_environment(nodes=3) as env:
        baseline = run_baseline(env, bench_apps("app", "baseline", args.count), "baseline")
        env.create_namespace("appreleases")
        apps = bench_apps("app", "appreleases", args.count)
        started = time.monotonic()
        env.kubectl.apply_server_side(write_manifest(env.work_dir / "appreleases.json", apps),
                                      timeout=timeout_for(args.count))
        appreleases = time.monotonic() - started
    print(f"| {baseline.objects:,} rendered children (baseline) | {baseline.seconds:.1f} s |")
    print(f"| {args.count:,} AppReleases, no operator running | {appreleases:.1f} s"
          f" ({appreleases / baseline.seconds:.2f}x) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
