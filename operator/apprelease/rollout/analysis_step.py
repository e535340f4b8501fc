"""A canary's analysis runs, step and background: run one and say what it means for the
rollout. Pure. Both runs live in status.analysis (one object: ``step`` and ``background``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..api.analysis import AnalysisRef, AnalysisRunStatus, AnalysisStatus, BackgroundAnalysis
from . import analysis as A
from .outcome import Event, Inputs
from .state import Stepping


@dataclass(frozen=True)
class Verdict:
    """``phase`` Running (wait), Successful (go on), Failed (abort), Inconclusive (paused for
    a person), or Blocked (the analysis cannot run as written: ``outcome.problem``)."""

    phase: str
    outcome: A.RunOutcome
    waiting_for: str = ""
    event: Event | None = None


def run_pre_promotion(inp: Inputs, ref: AnalysisRef, ready_since: str, label: str, attempt: str) -> Verdict:
    """Blue-green: the analysis of the ready preview, before the switch (status.analysis.step)."""
    run = A.run_key(inp.current.hash, "pre-promotion" + (f"-retry-{attempt}" if attempt else ""), ready_since)
    previous = inp.analysis.step if inp.analysis is not None else None
    return _run(inp, ref, previous, run, ready_since, "spec.strategy.blueGreen.prePromotionAnalysis", label,
                "prePromotionAnalysis", background=False)


def run_post_promotion(inp: Inputs, ref: AnalysisRef, switched_at: str, label: str) -> Verdict:
    """Blue-green: the analysis of the new revision serving, before the old one goes."""
    run = A.run_key(inp.current.hash, "post-promotion", switched_at)
    previous = inp.analysis.step if inp.analysis is not None else None
    return _run(inp, ref, previous, run, switched_at, "spec.strategy.blueGreen.postPromotionAnalysis", label,
                "postPromotionAnalysis", background=False)


def run_step(inp: Inputs, ref: AnalysisRef, state: Stepping, label: str, attempt: str) -> Verdict:
    where = f"spec.strategy.canary.steps[{state.step}].analysis"
    run = A.run_key(inp.current.hash, f"step-{state.step}" + (f"-retry-{attempt}" if attempt else ""),
                    state.step_start)
    previous = inp.analysis.step if inp.analysis is not None else None
    return _run(inp, ref, previous, run, state.step_start, where, label, "analysis", background=False)


def run_background(inp: Inputs, ref: BackgroundAnalysis, label: str, attempt: str, *, promoted: str) -> Verdict:
    """The background run started when the rollout reached ``startingStep`` (kept in status).
    A promote while it is inconclusive starts it anew (the person decided to go on)."""
    prefix = f"{inp.current.hash}/background" + (f"-retry-{attempt}" if attempt else "") + "/"
    previous = inp.analysis.background if inp.analysis is not None else None
    restart = bool(promoted) and previous is not None and previous.phase == "Inconclusive"
    if previous is not None and previous.run.startswith(prefix) and not restart:
        run, started = previous.run, previous.started_at
    else:  # the promote's value keeps a run started anew in the same second apart
        run, started, previous = prefix + inp.stamp + (f"/promote-{promoted}" if restart else ""), inp.stamp, None
    return _run(inp, ref, previous, run, started, "spec.strategy.canary.analysis", label,
                "background analysis", background=True)


def _run(inp: Inputs, ref: AnalysisRef, previous: AnalysisRunStatus | None, run: str, started: str, where: str,
         label: str, what: str, *, background: bool) -> Verdict:
    found = inp.observed.analysis or A.AnalysisObserved()
    release = A.release_args(inp.app.name, inp.app.namespace, inp.current.number, inp.current.hash, inp.stable.hash)
    metrics = A.resolve(ref, found, release, where, background=background)
    if isinstance(metrics, A.Problem):
        status = AnalysisRunStatus(run=run, phase="Inconclusive", message=metrics.message, started_at=started)
        recheck = inp.now + timedelta(seconds=A.BLOCKED_RECHECK_SECONDS)
        return Verdict("Blocked", A.RunOutcome(status, problem=metrics, wake_at=recheck),
                       f"{label}: {what} cannot run: {metrics.message}")
    payload = {"name": inp.app.name, "namespace": inp.app.namespace, "phase": "analysis",
               "revision": inp.current.number, "canaryHash": inp.current.hash, "stableHash": inp.stable.hash,
               "metadata": {a.name: a.value for a in ref.args}}
    outcome = A.advance(previous, run, started, metrics, found, inp.now, payload)
    status = outcome.status
    if outcome.problem is not None:
        return Verdict("Blocked", outcome, f"{label}: {what} cannot run: {outcome.problem.message}")
    if status.phase == "Running":
        return Verdict("Running", outcome, f"{label}: {what} running ({A.progress_text(status, metrics)})")
    if status.phase == "Successful":
        passed = previous is None or previous.run != run or previous.phase != "Successful"
        done = Event("Normal", "AnalysisSuccessful", f"{label}: {what} passed ({A.progress_text(status, metrics)})")
        return Verdict("Successful", outcome, event=done if passed else None)
    if status.phase == "Failed":
        return Verdict("Failed", outcome, f"{what} at {label} failed: {status.message}")
    first = previous is None or previous.run != run or previous.phase != "Inconclusive"
    event = Event("Warning", "AnalysisInconclusive", f"{label}: {what}: {status.message}") if first else None
    name = inp.app.name
    skip = "skips the analysis" if not background else "starts the background analysis anew"
    return Verdict("Inconclusive", outcome, (
        f"paused at {label}: {what} inconclusive: {status.message}; `apprelease promote {name}` {skip},"
        f" `apprelease abort {name}` aborts"), event)


def carried(inp: Inputs) -> AnalysisStatus | None:
    """The runs of the current revision, kept (shown) until new runs replace them."""
    previous = inp.analysis
    if previous is None:
        return None
    mine = f"{inp.current.hash}/"
    step = previous.step if previous.step is not None and previous.step.run.startswith(mine) else None
    background = (previous.background if previous.background is not None
                  and previous.background.run.startswith(mine) else None)
    return AnalysisStatus(step=step, background=background) if step or background else None


def with_run(current: AnalysisStatus | None, *, step: AnalysisRunStatus | None = None,
             background: AnalysisRunStatus | None = None) -> AnalysisStatus:
    current = current or AnalysisStatus()
    return current.model_copy(update={k: v for k, v in (("step", step), ("background", background)) if v is not None})
