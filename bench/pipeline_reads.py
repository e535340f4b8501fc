"""The pipeline loop's API reads with idle ReleasePipelines: `python -m bench.pipeline_reads`.

PIPELINES pipelines of three stages (test → pre, automatic → prod, manual) over three shared
namespaces, one app each; every stage on the same artifact, nothing waiting. Once every
pipeline says so and the operator has had a quiet moment, its requests for the kinds a pass
reads (ReleasePipelines, ReleaseApprovals, AppReleases, ConfigMaps) are counted for one
minute from the apiserver's audit log (every client of the operator's ServiceAccount: kopf's
and its own). `--source DIR` runs another checkout's operator, to compare with before a
change: `git archive <commit> operator | tar -x -C DIR` and pass DIR/operator.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.environment import Environment, local_environment
from bench.operator_process import SOURCE_ROOT, OperatorProcess

log = logging.getLogger("bench.pipeline_reads")
PIPELINES = 20
STAGES = ("test", "pre", "prod")
READ_VERBS = frozenset({"get", "list", "watch"})
PASS_RESOURCES = frozenset({"releasepipelines", "releaseapprovals", "appreleases", "configmaps"})
SETTLE_TIMEOUT_SECONDS = 600.0
QUIET_SECONDS = 10.0
WINDOW_SECONDS = 60.0


def _app(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "registry.local/shop:v1", "replicas": 1, "port": 8080,
                     "config": {"mountPath": "/app/config", "files": {"application.yml": "greeting: hello\n"}}}}


def _pipeline(index: int) -> dict[str, Any]:
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
            "metadata": {"name": f"p-{index:02d}", "namespace": "pipes"},
            "spec": {"apps": {"names": [f"app-{index:02d}"]}, "stages": [
                {"name": "test", "namespace": "stage-test"},
                {"name": "pre", "namespace": "stage-pre", "gate": {"auto": {"soakSeconds": 0}}},
                {"name": "prod", "namespace": "stage-prod", "gate": {"manual": {}}},
            ]}}


def _idle(env: Environment) -> int:
    """How many pipelines have every stage Healthy on one artifact and nothing pending."""
    count = 0
    for item in env.api.list("ReleasePipeline", "pipes").get("items") or []:
        status = item.get("status") or {}
        stages = status.get("stages") or []
        digests = {s.get("digest") for s in stages}
        if (len(stages) == len(STAGES) and len(digests) == 1 and "" not in digests
                and all(s.get("healthySince") for s in stages) and not status.get("pending")):
            count += 1
    return count


def measure(source: Path) -> Counter[str]:
    with local_environment(nodes=1) as env:
        for namespace in ("pipes", *(f"stage-{s}" for s in STAGES)):
            env.create_namespace(namespace)
        env.kubectl.apply_documents([_app(f"app-{i:02d}", f"stage-{s}") for s in STAGES for i in range(PIPELINES)])
        operator = OperatorProcess(env.operator_kubeconfig, env.work_dir, workers=4, source_root=source)
        operator.start()
        try:
            env.kubectl.apply_documents([_pipeline(i) for i in range(PIPELINES)])
            deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
            while (idle := _idle(env)) < PIPELINES:
                operator.check_alive()
                if time.monotonic() > deadline:
                    raise AssertionError(f"only {idle} of {PIPELINES} pipelines settled:\n{operator.log_tail()}")
                time.sleep(1.0)
            time.sleep(QUIET_SECONDS)
            mark = env.audit.mark()
            time.sleep(WINDOW_SECONDS)
            window = env.audit.since(mark)
        finally:
            operator.stop()
    return Counter(f"{r.verb} {r.resource}" for r in window.records
                   if r.verb in READ_VERBS and r.resource.split("/")[0] in PASS_RESOURCES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_reads", description=__doc__)
    parser.add_argument("--source", type=Path, default=SOURCE_ROOT, help="the operator's source (its operator/ dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    reads = measure(args.source)
    print(f"{PIPELINES} idle pipelines, operator from {args.source}: {sum(reads.values())} reads"
          f" in {WINDOW_SECONDS:.0f} s")
    for what, count in sorted(reads.items()):
        print(f"  {what}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
