"""A canary's analysis step: run the step's analysis and say what it means for the step. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..api.analysis import AnalysisRef, AnalysisRunStatus
from . import analysis as A
from .outcome import Event, Inputs
from .state import Stepping


@dataclass(frozen=True)
class StepVerdict:
    """``phase`` Running (wait), Successful (next step), Failed (abort), Inconclusive (paused
    for a person), or Blocked (the analysis cannot run as written: ``outcome.problem``)."""

    phase: str
    outcome: A.RunOutcome
    waiting_for: str = ""
    event: Event | None = None


def run_step(inp: Inputs, ref: AnalysisRef, state: Stepping, label: str, attempt: str) -> StepVerdict:
    where = f"spec.strategy.canary.steps[{state.step}].analysis"
    previous = inp.analysis
    run = A.run_key(inp.current.hash, f"step-{state.step}" + (f"-retry-{attempt}" if attempt else ""),
                    state.step_start)
    found = inp.observed.analysis or A.AnalysisObserved()
    release = A.release_args(inp.app.name, inp.app.namespace, inp.current.number, inp.current.hash, inp.stable.hash)
    metrics = A.resolve(ref, found, release, where)
    if isinstance(metrics, A.Problem):
        status = AnalysisRunStatus(run=run, phase="Inconclusive", message=metrics.message, started_at=state.step_start)
        recheck = inp.now + timedelta(seconds=A.BLOCKED_RECHECK_SECONDS)
        return StepVerdict("Blocked", A.RunOutcome(status, problem=metrics, wake_at=recheck),
                           f"{label}: analysis cannot run: {metrics.message}")
    payload = {"name": inp.app.name, "namespace": inp.app.namespace, "phase": "analysis",
               "revision": inp.current.number, "canaryHash": inp.current.hash, "stableHash": inp.stable.hash,
               "step": state.step + 1, "metadata": {a.name: a.value for a in ref.args}}
    outcome = A.advance(previous, run, state.step_start, metrics, found, inp.now, payload)
    status = outcome.status
    if outcome.problem is not None:
        return StepVerdict("Blocked", outcome, f"{label}: analysis cannot run: {outcome.problem.message}")
    if status.phase == "Running":
        return StepVerdict("Running", outcome, f"{label}: analysis running ({A.progress_text(status, metrics)})")
    if status.phase == "Successful":
        return StepVerdict("Successful", outcome, event=Event(
            "Normal", "AnalysisSuccessful", f"{label}: analysis passed ({A.progress_text(status, metrics)})"))
    if status.phase == "Failed":
        return StepVerdict("Failed", outcome)
    first = previous is None or previous.run != run or previous.phase != "Inconclusive"
    event = Event("Warning", "AnalysisInconclusive", f"{label}: {status.message}") if first else None
    name = inp.app.name
    return StepVerdict("Inconclusive", outcome, (
        f"paused at {label}: analysis inconclusive: {status.message}; `apprelease promote {name}` skips the"
        f" analysis, `apprelease abort {name}` aborts"), event)


def carried(inp: Inputs) -> AnalysisRunStatus | None:
    """The last run's status, kept for the current revision (shown until a new run starts)."""
    previous = inp.analysis
    if previous is None or not previous.run.startswith(f"{inp.current.hash}/"):
        return None
    return previous
