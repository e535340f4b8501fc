"""Fuzzing from the CRD: every spec the apiserver would admit reaches a verdict in the core.

Specs come from the generated CRD's schema (tests/fuzz/strategies.py) and are filtered by an
emulation of admission (schema, defaults, CEL with the Kubernetes functions the CRD uses).
For each admitted spec: the operator's model parses it; render_initial and, through a
synthetic cluster timeline, plan + render_children never raise anything but RenderError;
and what is rendered keeps the offline Kubernetes invariants (tests/fuzz/k8s_invariants.py).

Examples: APPRELEASE_FUZZ_EXAMPLES (default 400) for the whole spec, and a tenth of that
again for each FOCUS (a canary, blue-green, Nacos always present). Runs are derandomized: the same examples every
time, no example database. A failure is reported as found, unshrunk, unless
APPRELEASE_FUZZ_SHRINK=1; for every distinct failure at once: python -m tests.fuzz.survey.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings

from tests.fuzz.admission import admit
from tests.fuzz.cluster_states import Knobs, knobs
from tests.fuzz.pipeline import Counts, exercise
from tests.fuzz.strategies import Generated, appreleases, filter_report

EXAMPLES = int(os.environ.get("APPRELEASE_FUZZ_EXAMPLES", "400"))
# Shrinking a failing spec takes minutes: only on request (the survey shows the smallest seen).
SHRINK = os.environ.get("APPRELEASE_FUZZ_SHRINK") == "1"
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    # filter_too_much: the local filter (tests/fuzz/strategies.py) learns from every admission
    # made before, so how much it filters depends on which tests ran first (the full unit run
    # tripped it, the file alone did not); the counts report the admitted share instead.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.filter_too_much],
)
COUNTS: dict[str, Counts] = {}


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.perf_counter()
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        elapsed = time.perf_counter() - started
        for name, counts in COUNTS.items():
            reporter.write_line(f"fuzz {name}: {counts.summary()}")
        total = sum(c.generated for c in COUNTS.values())
        reporter.write_line(f"fuzz: {total} specs in {elapsed:.1f} s ({total / elapsed:.1f}/s)")
        for line in filter_report():
            reporter.write_line(f"fuzz local filter: {line}")


def _run(name: str, spec: Generated, drawn: Knobs) -> None:
    counts = COUNTS.setdefault(name, Counts())
    counts.generated += 1
    admission = admit(spec.body)
    assume(admission.admitted)
    counts.admitted += 1
    counts.verdicts[exercise(admission.body, drawn, counts)] += 1


@FUZZ_SETTINGS
@given(spec=appreleases().map(Generated), drawn=knobs)
def test_admitted_specs_parse_plan_and_render(spec: Generated, drawn: Knobs) -> None:
    _run("any spec", spec, drawn)


# Parts of the spec the planner treats most differently, each also generated on every example.
FOCUS = ("strategy.canary", "strategy.blueGreen", "registry.nacos")


@pytest.mark.parametrize("focus", FOCUS)
def test_admitted_specs_with_a_focus_parse_plan_and_render(focus: str) -> None:
    @settings(FUZZ_SETTINGS, max_examples=max(1, EXAMPLES // 10))
    @given(spec=appreleases(require=(focus,)).map(Generated), drawn=knobs)
    def run(spec: Generated, drawn: Knobs) -> None:
        _run(focus, spec, drawn)

    run()
