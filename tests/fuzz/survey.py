"""Run many generated specs and group every failure by its signature, without stopping.

    .venv/bin/python -m tests.fuzz.survey --examples 5000 [--require strategy.canary]

The pytest property (tests/unit/test_fuzz_admitted_specs.py) stops at the first failure and
shrinks it; this survey is for finding all distinct failures at once: for each it prints the
count and the smallest reproducing spec (YAML) seen.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import yaml
from hypothesis import HealthCheck, given, settings

from .admission import admit
from .cluster_states import Knobs, knobs
from .pipeline import Counts, exercise, signatures
from .strategies import appreleases, filter_report


@dataclass
class Finding:
    count: int = 0
    smallest: dict[str, Any] | None = None
    knobs: Knobs | None = None
    message: str = ""
    size: int = field(default=1 << 62)


def survey(examples: int, require: tuple[str, ...], seed: int) -> tuple[Counts, dict[str, Finding]]:
    counts = Counts()
    findings: dict[str, Finding] = {}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed == 0,
              suppress_health_check=list(HealthCheck))
    @given(body=appreleases(require=require), drawn=knobs)
    def run(body: dict[str, Any], drawn: Knobs) -> None:
        counts.generated += 1
        admission = admit(body)
        if not admission.admitted:
            return
        counts.admitted += 1
        try:
            counts.verdicts[exercise(admission.body, drawn, counts)] += 1
        except Exception as exc:  # every failure is recorded; none stops the run
            counts.verdicts["FAILED"] += 1
            size = len(json.dumps(body["spec"], default=str))
            for name in set(signatures(exc)):
                finding = findings.setdefault(name, Finding())
                finding.count += 1
                if size < finding.size:
                    finding.size, finding.smallest, finding.knobs = size, body, drawn
                    finding.message = f"{type(exc).__name__}: {str(exc)[:400]}"

    if seed:
        run = hypothesis.seed(seed)(run)  # settings can be applied only once
    run()
    return counts, findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--require", action="append", default=[], help="spec path to always generate")
    parser.add_argument("--seed", type=int, default=0, help="0: derandomized (reproducible)")
    args = parser.parse_args()
    started = time.perf_counter()
    counts, findings = survey(args.examples, tuple(args.require), args.seed)
    elapsed = time.perf_counter() - started
    print(f"{counts.summary()}\n{elapsed:.1f} s, {counts.generated / elapsed:.1f} examples/s")
    print("local filters turning candidates away:\n  " + "\n  ".join(filter_report(10)))
    for name, finding in sorted(findings.items(), key=lambda kv: -kv[1].count):
        print(f"\n### {name}  ({finding.count}x)\n{finding.message}\nknobs: {finding.knobs}")
        print(yaml.safe_dump(finding.smallest, sort_keys=False, width=100, allow_unicode=True)[:3000])


if __name__ == "__main__":
    main()
