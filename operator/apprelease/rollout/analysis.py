"""Analysis runs, pure: resolve templates and arguments, fold measurements, decide.

The I/O layer (controller/analysis_runner.py) takes the measurements this module asks for
(``MeasurementRequest``, each at its due time) and hands back raw results (``RawResult``)
through the observed state; this module folds them into status.analysis — one object for the
whole run, stored in status and read back from it, so a restarted operator resumes the run —
and decides. A run is keyed by where it runs (revision, step, the step's start): a new step or
a retry starts a new run.

Per metric, Argo Rollouts' rules: each measurement is Successful, Failed, Inconclusive (neither
condition held) or Error (no answer, the condition could not be evaluated). More Failed than
``failureLimit`` fails the metric, more Inconclusive than ``inconclusiveLimit`` or more
consecutive errors than ``consecutiveErrorLimit`` makes it Inconclusive (never a pass); after
``count`` measurements within the limits it is Successful. The run is Failed if any metric
failed, else Inconclusive if any is, else Successful once all are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from simpleeval import SimpleEval

from ..api.analysis import (
    MAX_MEASUREMENTS,
    AnalysisRef,
    AnalysisRunStatus,
    MeasurementPhase,
    MeasurementStatus,
    MetricStatus,
    RunPhase,
)
from ..api.analysis_template import AnalysisTemplateSpec, Metric
from .timefmt import parse_time_or

ARG_REFERENCE = re.compile(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}")
# An analysis that cannot run as written is looked at again this often (a template fixed).
BLOCKED_RECHECK_SECONDS = 15
# Functions a condition may call besides operators, indexing and comparisons.
_FUNCTIONS: dict[str, Any] = {
    "len": len, "isNaN": math.isnan, "all": all, "any": any, "min": min, "max": max, "sum": sum, "abs": abs,
}


@dataclass(frozen=True)
class TemplateKey:
    name: str
    cluster_scope: bool = False

    def describe(self) -> str:
        return f"{'ClusterAnalysisTemplate' if self.cluster_scope else 'AnalysisTemplate'} {self.name}"


@dataclass(frozen=True)
class RawResult:
    """One measurement as the runner took it: the query's values, or the web hook's answer,
    or why there is no answer (``error``: unreachable, timeout, a non-numeric result)."""

    at: str
    values: tuple[float, ...] | None = None
    passed: bool | None = None  # web hooks
    detail: str = ""  # a web hook's answer when it did not pass: its status and first words
    error: str | None = None
    # The question is wrong (the query does not parse): fix the template, no verdict.
    invalid: bool = False
    target: str = ""  # the query or URL measured (a fixed template asks anew)


@dataclass(frozen=True)
class AnalysisObserved:
    """What the I/O layer found: the templates the app refers to (None: not found; a text: why
    it cannot be used), the addresses the operator's policy refuses (with why), and the results
    taken so far, keyed by (run, metric name, sequence number)."""

    templates: Mapping[TemplateKey, AnalysisTemplateSpec | str | None] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)
    results: Mapping[tuple[str, str, int], RawResult] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedMetric:
    """A template's metric with its arguments filled in."""

    template: str
    metric: Metric
    target: str  # the query, or the web hook's URL
    address: str  # the Prometheus server, or the URL
    field: str  # where the address is written, for verdicts naming it
    target_field: str = ""  # where the query (or URL) is written
    count: int | None = 1  # measurements to decide on; None: until the run ends (background)

    @property
    def kind(self) -> str:
        return "prometheus" if self.metric.provider.prometheus is not None else "web"

    @property
    def shown(self) -> str:
        """What a message shows of the question: the query, or the web hook's address."""
        return self.target if self.kind == "prometheus" else shown_url(self.target)


def shown_url(url: str) -> str:
    """A web hook URL as status, Events and logs may show it: its path and query may carry a
    token, so only the scheme, host and port (and "/..." for the rest)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" + ("/..." if parts.path.strip("/") or parts.query else "")


@dataclass(frozen=True)
class MeasurementRequest:
    """One measurement to take at ``due``: the runner takes each (run, metric, seq) once."""

    run: str
    metric: str
    seq: int
    due: datetime
    kind: str
    address: str
    target: str
    timeout: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()  # the web hook's, as the template gives them


@dataclass(frozen=True)
class Problem:
    """The analysis cannot run as written: a person must fix ``message`` (Stalled)."""

    reason: str  # a failure class reason (rollout/failures.py)
    message: str


@dataclass(frozen=True)
class RunOutcome:
    status: AnalysisRunStatus
    requests: tuple[MeasurementRequest, ...] = ()
    wake_at: datetime | None = None
    problem: Problem | None = None

    @property
    def phase(self) -> RunPhase:
        return self.status.phase


def run_key(revision_hash: str, where: str, since: str) -> str:
    return f"{revision_hash}/{where}/{since}"


def release_args(app: str, namespace: str, revision: int, canary_hash: str, stable_hash: str) -> dict[str, str]:
    """The reserved arguments (api/analysis.py RESERVED_ARGS), filled from the release."""
    return {"app": app, "namespace": namespace, "revision": str(revision),
            "canary-hash": canary_hash, "stable-hash": stable_hash}


def resolve(ref: AnalysisRef, found: AnalysisObserved, release: Mapping[str, str],
            where: str, *, background: bool = False) -> list[ResolvedMetric] | Problem:
    """The metrics of ``ref``'s templates, arguments filled; or what stops them (naming it)."""
    given = {a.name: a.value for a in ref.args}
    metrics: list[ResolvedMetric] = []
    for number, template_ref in enumerate(ref.templates):
        key = TemplateKey(template_ref.template_name, template_ref.cluster_scope)
        spec = found.templates.get(key)
        if spec is None:
            return Problem("AnalysisTemplateMissing",
                           f"{where}.templates[{number}]: {key.describe()} not found")
        if isinstance(spec, str):
            return Problem("AnalysisTemplateInvalid", f"{where}.templates[{number}]: {key.describe()}: {spec}")
        args = {a.name: a.value for a in spec.args} | given | dict(release)
        for index, metric in enumerate(spec.metrics):
            prefix = f"{key.describe()} spec.metrics[{index}]"
            provider = metric.provider
            if provider.prometheus is not None:
                target, address = provider.prometheus.query, provider.prometheus.address
                field_path = f"{prefix}.provider.prometheus.address"
                target_field = f"{prefix}.provider.prometheus.query"
            else:
                assert provider.web is not None
                target = address = provider.web.url
                field_path = target_field = f"{prefix}.provider.web.url"
            filled = substitute(target, args)
            if isinstance(filled, Problem):
                return Problem(filled.reason, f"{prefix}: {filled.message} (give it in {where}.args)")
            conditions: dict[str, str] = {}
            for name, wire in (("success_condition", "successCondition"), ("failure_condition", "failureCondition")):
                condition = getattr(metric, name)
                if condition is None:
                    continue
                condition = substitute(condition, args)
                if isinstance(condition, Problem):
                    return Problem(condition.reason, f"{prefix}.{wire}: {condition.message} (give it in {where}.args)")
                if (error := condition_error(condition)) is not None:
                    return Problem("AnalysisTemplateInvalid", f"{prefix}.{wire}: {error}")
                conditions[name] = condition
            metric = metric.model_copy(update=conditions)
            if address in found.refused:
                shown = address if provider.prometheus is not None else shown_url(address)
                return Problem("PolicyViolation", f"{field_path}: {shown} {found.refused[address]}")
            if provider.web is not None:
                address = filled
            count = metric.count if metric.count is not None else None if background else 1
            metrics.append(ResolvedMetric(key.name, metric, filled, address, field_path, target_field, count))
    return metrics


def substitute(text: str, args: Mapping[str, str | None]) -> str | Problem:
    missing = sorted({name for name in ARG_REFERENCE.findall(text) if args.get(name) is None})
    if missing:
        return Problem("AnalysisArgumentMissing", f"argument {', '.join(missing)} has no value")
    return ARG_REFERENCE.sub(lambda m: str(args[m.group(1)]), text)


def _evaluator(values: Sequence[float]) -> SimpleEval:
    return SimpleEval(names={"result": list(values)}, functions=dict(_FUNCTIONS))


def _python_syntax(condition: str) -> str:
    # Argo Rollouts' conditions write && and ||; the same expression in Python's words.
    return condition.replace("&&", " and ").replace("||", " or ")


def condition_error(condition: str) -> str | None:
    """Why the condition is not an expression we can evaluate, or None."""
    try:
        _evaluator([]).parse(_python_syntax(condition))
    except SyntaxError as exc:
        return f"not a valid expression: {exc.msg}"
    return None


def evaluate(metric: Metric, result: RawResult) -> tuple[MeasurementPhase, str]:
    """One measurement's verdict, and why."""
    if result.error is not None:
        return "Error", result.error
    if result.passed is not None:
        if result.passed:
            return "Successful", ""
        return "Failed", "the web hook did not pass" + (f": {result.detail}" if result.detail else "")
    values = result.values or ()
    try:
        success = _holds(metric.success_condition, values)
        failure = _holds(metric.failure_condition, values)
    except Exception as exc:  # an index past an empty result, a type error: no verdict
        return "Error", f"condition not evaluable on {format_values(values)}: {type(exc).__name__}: {exc}"
    if failure:
        return "Failed", f"failureCondition {metric.failure_condition} holds"
    if success:
        return "Successful", ""
    if metric.success_condition is not None and metric.failure_condition is None:
        return "Failed", f"successCondition {metric.success_condition} does not hold"
    if metric.failure_condition is not None and metric.success_condition is None:
        return "Successful", ""
    return "Inconclusive", "neither successCondition nor failureCondition holds"


def _holds(condition: str | None, values: Sequence[float]) -> bool:
    return condition is not None and bool(_evaluator(values).eval(_python_syntax(condition)))


def format_values(values: Sequence[float] | None) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values or ()) + "]"


def fold(previous: AnalysisRunStatus | None, run: str, started: str, metrics: Sequence[ResolvedMetric],
         results: Mapping[tuple[str, str, int], RawResult]) -> AnalysisRunStatus:
    """The run's status after the results that continue it (each (metric, seq) once, in order)."""
    before = {m.name: m for m in previous.metrics} if previous is not None and previous.run == run else {}
    states = []
    for resolved in metrics:
        name = resolved.metric.name
        state = before.get(name) or MetricStatus(name=name, template=resolved.template)
        while state.phase == "Running" and (result := results.get((run, name, state.count))) is not None:
            state = _measured(state, resolved, result)
        states.append(state)
    return AnalysisRunStatus(run=run, phase=_run_phase(states), message=_run_message(states, metrics),
                             started_at=started, metrics=states)


def _measured(state: MetricStatus, resolved: ResolvedMetric, result: RawResult) -> MetricStatus:
    phase, message = evaluate(resolved.metric, result)
    value = format_values(result.values) if result.values is not None else ""
    kept = [*state.measurements, MeasurementStatus(phase=phase, at=result.at, value=value, message=message)]
    counts = {
        "count": state.count + 1,
        "successful": state.successful + (phase == "Successful"),
        "failed": state.failed + (phase == "Failed"),
        "inconclusive": state.inconclusive + (phase == "Inconclusive"),
        "error": state.error + (phase == "Error"),
        "consecutive_error": state.consecutive_error + 1 if phase == "Error" else 0,
        "measurements": kept[-MAX_MEASUREMENTS:],
    }
    measured = state.model_copy(update=counts)
    verdict, why = _metric_phase(measured, resolved.metric, resolved.count)
    return measured.model_copy(update={"phase": verdict, "message": why})


def _metric_phase(state: MetricStatus, metric: Metric, count: int | None) -> tuple[RunPhase, str]:
    last = state.measurements[-1] if state.measurements else None
    detail = f"{last.value or 'no value'} at {last.at}: {last.message}" if last is not None else ""
    if state.failed > metric.failure_limit:
        return "Failed", f"{state.failed} failed measurement(s) > failureLimit {metric.failure_limit}; last {detail}"
    if state.inconclusive > metric.inconclusive_limit:
        return "Inconclusive", (f"{state.inconclusive} inconclusive measurement(s) > inconclusiveLimit"
                                f" {metric.inconclusive_limit}; last {detail}")
    if state.consecutive_error > metric.consecutive_error_limit:
        return "Inconclusive", (f"{state.consecutive_error} errors in a row > consecutiveErrorLimit"
                                f" {metric.consecutive_error_limit}; last: {last.message if last else ''}")
    if count is not None and state.count - state.error >= count:
        return "Successful", f"{state.successful}/{state.count} measurement(s) successful"
    return "Running", ""


def _run_phase(states: Sequence[MetricStatus]) -> RunPhase:
    phases = {s.phase for s in states}
    for phase in ("Failed", "Inconclusive", "Running"):
        if phase in phases:
            return phase
    return "Successful"


def _run_message(states: Sequence[MetricStatus], metrics: Sequence[ResolvedMetric]) -> str:
    """For a decided run: the metric that decided it, with its query (or URL), the value and
    the conditions (named once)."""
    by_name = {m.metric.name: m for m in metrics}
    for phase in ("Failed", "Inconclusive"):
        for state in states:
            if state.phase == phase and (resolved := by_name.get(state.name)) is not None:
                metric = resolved.metric
                named = [f"{label} {text}" for label, text in (("successCondition", metric.success_condition),
                                                               ("failureCondition", metric.failure_condition))
                         if text and text not in state.message]
                return (f"metric {state.name} ({resolved.template}) {phase.lower()}: {resolved.shown}:"
                        f" {state.message}" + "".join(f"; {text}" for text in named))
    return ""


def due_at(state: MetricStatus, metric: Metric, started: datetime) -> datetime:
    """When the next measurement of a running metric is due: after the initial delay, then
    every interval after the last one (an error is retried at the same interval)."""
    if not state.measurements:
        return started + timedelta(seconds=metric.initial_delay_seconds)
    return parse_time_or(state.measurements[-1].at, started) + timedelta(seconds=metric.interval_seconds)


def advance(previous: AnalysisRunStatus | None, run: str, started: str, metrics: Sequence[ResolvedMetric],
            found: AnalysisObserved, now: datetime, payload: Mapping[str, Any]) -> RunOutcome:
    """Fold what was measured, and ask for what is due next (while the run is Running)."""
    status = fold(previous, run, started, metrics, found.results)
    by_name = {m.metric.name: m for m in metrics}
    for (result_run, name, _), result in found.results.items():
        if result_run == run and result.invalid and (resolved := by_name.get(name)) is not None:
            message = f"{resolved.target_field}: {result.error}"
            return RunOutcome(status, problem=Problem("AnalysisTemplateInvalid", message),
                              wake_at=now + timedelta(seconds=BLOCKED_RECHECK_SECONDS))
    if status.phase != "Running":
        return RunOutcome(status)
    start = parse_time_or(started, now)
    requests = []
    for resolved, state in zip(metrics, status.metrics, strict=True):
        if state.phase != "Running":
            continue
        metric = resolved.metric
        web = metric.provider.web
        requests.append(MeasurementRequest(
            run=run, metric=metric.name, seq=state.count, due=due_at(state, metric, start), kind=resolved.kind,
            address=resolved.address, target=resolved.target,
            timeout=float(web.timeout_seconds) if web is not None else 10.0,
            payload=payload if web is not None else {},
            headers=tuple((h.name, h.value) for h in web.headers) if web is not None else (),
        ))
    wake = min(r.due for r in requests) if requests else None
    return RunOutcome(status, tuple(requests), wake_at=max(wake, now) if wake else None)


def progress_text(status: AnalysisRunStatus, metrics: Sequence[ResolvedMetric]) -> str:
    """Where a running analysis is, for waiting_for: each metric's measurements so far."""
    counts = {m.metric.name: m.count for m in metrics}
    return ", ".join(f"{s.name} {s.count - s.error}/{counts.get(s.name) or '∞'}" for s in status.metrics)
