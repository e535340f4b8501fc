"""The analysis core: arguments, conditions (no eval), measurements folded, limits decided."""

from __future__ import annotations

import math

import pytest

from apprelease.api.analysis import AnalysisRef
from apprelease.api.analysis_template import AnalysisTemplateSpec, Metric
from apprelease.rollout import analysis as A
from apprelease.rollout.analysis import AnalysisObserved, RawResult, TemplateKey


def metric(**fields: object) -> Metric:
    body = {"name": "errors", "successCondition": "result[0] < 0.01",
            "provider": {"prometheus": {"address": "http://prom:9090",
                                        "query": 'rate(errors{hash="{{args.canary-hash}}"}[1m])'}}, **fields}
    return Metric.model_validate(body)


def template(*metrics: Metric, args: list[dict[str, str]] | None = None) -> AnalysisTemplateSpec:
    return AnalysisTemplateSpec.model_validate({"args": args or [], "metrics": [m.to_wire() for m in metrics]})


RELEASE = A.release_args("shop", "ns", 2, "abc123", "def456")
REF = AnalysisRef.model_validate({"templates": [{"templateName": "error-rate"}]})


def test_conditions_read_the_result_list_without_eval() -> None:
    ok = metric()
    assert A.evaluate(ok, RawResult("t", values=(0.001,))) == ("Successful", "")
    assert A.evaluate(ok, RawResult("t", values=(0.5,)))[0] == "Failed"
    both = metric(successCondition="len(result) > 0 && result[0] < 1", failureCondition="isNaN(result[0]) || result[0] > 5")
    assert A.evaluate(both, RawResult("t", values=(0.5,)))[0] == "Successful"
    assert A.evaluate(both, RawResult("t", values=(7.0,)))[0] == "Failed"
    assert A.evaluate(both, RawResult("t", values=(math.nan,)))[0] == "Failed"
    assert A.evaluate(both, RawResult("t", values=(2.0,)))[0] == "Inconclusive"
    only_failure = metric(successCondition=None, failureCondition="result[0] > 5")
    assert A.evaluate(only_failure, RawResult("t", values=(1.0,)))[0] == "Successful"


def test_a_condition_that_cannot_be_evaluated_is_an_error_never_a_pass() -> None:
    phase, message = A.evaluate(metric(), RawResult("t", values=()))
    assert phase == "Error" and "[]" in message
    assert A.evaluate(metric(), RawResult("t", error="connection refused")) == ("Error", "connection refused")
    # Code is not run: attribute access and imports are refused.
    assert A.evaluate(metric(successCondition="result.__class__"), RawResult("t", values=(1.0,)))[0] == "Error"
    assert A.condition_error("result[0] <") is not None
    assert A.condition_error("result[0] < 0.01 && len(result) == 1") is None


def test_arguments_are_filled_from_the_release_the_template_and_the_step() -> None:
    spec = template(metric(provider={"prometheus": {"address": "http://prom:9090",
                                                    "query": "x{app='{{args.app}}',h='{{ args.canary-hash }}',s='{{args.svc}}'}"}}),
                    args=[{"name": "svc", "value": "default-svc"}])
    found = AnalysisObserved(templates={TemplateKey("error-rate"): spec})
    resolved = A.resolve(REF, found, RELEASE, "spec.strategy.canary.steps[1].analysis")
    assert not isinstance(resolved, A.Problem)
    assert resolved[0].target == "x{app='shop',h='abc123',s='default-svc'}"
    given = AnalysisRef.model_validate({"templates": [{"templateName": "error-rate"}], "args": [{"name": "svc", "value": "web"}]})
    resolved = A.resolve(given, found, RELEASE, "w")
    assert not isinstance(resolved, A.Problem) and "s='web'" in resolved[0].target


def test_what_stops_an_analysis_is_named() -> None:
    where = "spec.strategy.canary.steps[1].analysis"
    unusable = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): "spec.metrics.0.count: too small"}),
                         RELEASE, where)
    assert isinstance(unusable, A.Problem) and unusable.message == (
        f"{where}.templates[0]: AnalysisTemplate error-rate: spec.metrics.0.count: too small")
    missing = A.resolve(REF, AnalysisObserved(), RELEASE, where)
    assert isinstance(missing, A.Problem)
    assert missing.message == f"{where}.templates[0]: AnalysisTemplate error-rate not found"
    unfilled = template(metric(provider={"prometheus": {"address": "http://prom:9090", "query": "x{s='{{args.svc}}'}"}}),
                        args=[{"name": "svc"}])
    problem = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): unfilled}), RELEASE, where)
    assert isinstance(problem, A.Problem) and problem.reason == "AnalysisArgumentMissing"
    assert "argument svc has no value" in problem.message and f"{where}.args" in problem.message
    bad = template(metric(successCondition="result[0] <"))
    problem = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): bad}), RELEASE, where)
    assert isinstance(problem, A.Problem) and "spec.metrics[0].successCondition" in problem.message
    refused = AnalysisObserved(templates={TemplateKey("error-rate"): template(metric())},
                               refused={"http://prom:9090": "is not allowed by --allow-metric-server"})
    problem = A.resolve(REF, refused, RELEASE, where)
    assert isinstance(problem, A.Problem) and problem.reason == "PolicyViolation"
    assert "AnalysisTemplate error-rate spec.metrics[0].provider.prometheus.address: http://prom:9090" in problem.message
    hook = "https://gate.ci/hooks/s3cr3t?token=s3cr3t"
    web = metric(successCondition=None, provider={"web": {"url": hook}})
    refused = AnalysisObserved(templates={TemplateKey("error-rate"): template(web)},
                               refused={hook: "is not allowed by --allow-metric-server"})
    problem = A.resolve(REF, refused, RELEASE, where)
    assert isinstance(problem, A.Problem) and problem.reason == "PolicyViolation"
    assert "provider.web.url: https://gate.ci/... is not allowed" in problem.message and "s3cr3t" not in problem.message


def _run(m: Metric, results: list[RawResult]) -> A.AnalysisRunStatus:
    resolved = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): template(m)}), RELEASE, "w")
    assert not isinstance(resolved, A.Problem)
    keyed = {("run", m.name, seq): r for seq, r in enumerate(results)}
    return A.fold(None, "run", "2026-01-01T00:00:00Z", resolved, keyed)


@pytest.mark.parametrize(("values", "limits", "phase"), [
    ([0.0, 0.0, 0.0], {}, "Successful"),
    ([0.0, 0.5], {}, "Failed"),
    ([0.5, 0.0, 0.0], {"failureLimit": 1}, "Successful"),
    ([0.5, 0.5], {"failureLimit": 1}, "Failed"),
    ([0.0, 0.0], {}, "Running"),
])
def test_failure_limit_and_count_decide_a_metric(values: list[float], limits: dict[str, int], phase: str) -> None:
    status = _run(metric(count=3, **limits), [RawResult(f"t{i}", values=(v,)) for i, v in enumerate(values)])
    assert status.phase == phase


def test_a_failed_run_says_the_query_the_value_and_the_condition() -> None:
    status = _run(metric(), [RawResult("2026-01-01T00:00:10Z", values=(0.25,))])
    assert status.phase == "Failed"
    assert 'rate(errors{hash="abc123"}[1m])' in status.message
    assert "[0.25]" in status.message and "result[0] < 0.01" in status.message


def test_errors_are_retried_then_inconclusive_never_a_pass() -> None:
    errors = [RawResult(f"t{i}", error="connection refused") for i in range(3)]
    assert _run(metric(consecutiveErrorLimit=2), errors[:2]).phase == "Running"
    status = _run(metric(consecutiveErrorLimit=2), errors)
    assert status.phase == "Inconclusive" and "connection refused" in status.message
    # An error in between is forgiven once a measurement answers.
    mixed = [errors[0], errors[1], RawResult("t3", values=(0.0,))]
    assert _run(metric(consecutiveErrorLimit=2), mixed).phase == "Successful"


def test_inconclusive_limit() -> None:
    m = metric(count=3, successCondition="result[0] < 1", failureCondition="result[0] > 5", inconclusiveLimit=1)
    assert _run(m, [RawResult("a", values=(2.0,)), RawResult("b", values=(0.0,))]).phase == "Running"
    assert _run(m, [RawResult("a", values=(2.0,)), RawResult("b", values=(3.0,))]).phase == "Inconclusive"


def test_measurements_kept_are_bounded_counts_are_not() -> None:
    status = _run(metric(count=50), [RawResult(f"t{i}", values=(0.0,)) for i in range(25)])
    state = status.metrics[0]
    assert state.count == 25 and state.successful == 25
    assert len(state.measurements) == A.MAX_MEASUREMENTS and state.measurements[-1].at == "t24"


def test_each_result_is_folded_once_and_a_new_run_starts_afresh() -> None:
    m = metric(count=3)
    resolved = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): template(m)}), RELEASE, "w")
    assert not isinstance(resolved, A.Problem)
    results = {("run", "errors", 0): RawResult("t0", values=(0.0,))}
    once = A.fold(None, "run", "s", resolved, results)
    assert A.fold(once, "run", "s", resolved, results) == once
    other = A.fold(once, "run-2", "s", resolved, results)
    assert other.metrics[0].count == 0


def test_conditions_take_arguments_too() -> None:
    spec = template(metric(successCondition="result[0] < {{args.threshold}}"), args=[{"name": "threshold", "value": "0.05"}])
    resolved = A.resolve(REF, AnalysisObserved(templates={TemplateKey("error-rate"): spec}), RELEASE, "w")
    assert not isinstance(resolved, A.Problem)
    assert resolved[0].metric.success_condition == "result[0] < 0.05"
    assert A.evaluate(resolved[0].metric, RawResult("t", values=(0.04,)))[0] == "Successful"
