"""A strategy change is a transition of its own. Pure.

The stored state belongs to the strategy that ran it (status.rollout.canary or .blueGreen).
When spec.strategy names another one, the old rollout is finished or abandoned before the new
strategy's transition sees anything, and an Event says which:

    Stepping, Previewing, Switched ──► abandoned: the new strategy starts from its beginning
                                       with the spec's revision; stable serves meanwhile
    Promoting                      ──► finished: the revision goes to the stable Deployment
                                       (abandoned like the others if the spec names a newer one)
    Aborted                        ──► stays aborted: `retry` starts the new strategy
    any, to rolling or recreate    ──► the revision rolls out on the stable Deployment

Abandoning is safe for traffic: the stable Deployment never stops running the stable revision
at full size before a promotion (Switched keeps the old pods for an instant rollback), so
traffic goes back to pods that serve. A promotion has already moved the stable Deployment, so
it is completed rather than turned back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .outcome import Decision, Event, Inputs
from .state import Aborted, Previewing, Promoting, RolloutState, Steady, Stepping, Stored, Switched


@dataclass(frozen=True)
class Carried:
    """The state the spec's strategy continues from, with the inputs it sees; or, when the old
    rollout was finished, the decision itself."""

    state: RolloutState
    inputs: Inputs
    event: Event | None = None
    finished: Decision | None = None


def carry_over(saved: Stored, inputs: Inputs) -> Carried:
    running = inputs.app.spec.strategy.kind
    old = saved.strategy
    state = saved.state
    if old is None or old == running or isinstance(state, Steady):
        return Carried(state, inputs)
    candidate = inputs.candidate.number if inputs.candidate is not None else inputs.current.number
    stable = inputs.stable.number
    changed = f"strategy changed from {old} to {running}"
    same_revision = inputs.candidate is not None and inputs.candidate.hash == inputs.current.hash
    if running in ("rolling", "recreate"):
        event = Event("Normal", "StrategyChanged",
                      f"{changed}: revision {inputs.current.number} rolls out on the stable Deployment")
        return Carried(Steady(), inputs, event)
    if isinstance(state, Aborted):
        event = Event("Normal", "StrategyChanged",
                      f"{changed}: revision {candidate} stays aborted; `apprelease retry {inputs.app.name}`"
                      f" starts the {running} rollout")
        return Carried(state, inputs, event)
    if isinstance(state, Promoting) and same_revision:
        event = Event("Normal", "StrategyChanged",
                      f"{changed} during the promotion of revision {candidate}: it goes to the stable"
                      f" Deployment without the {running} steps")
        return Carried(state, inputs, event, finished=Decision(
            state=Steady(), stable=inputs.current, events=(event,), handled=inputs.handled))
    event = Event("Normal", "StrategyChanged",
                  f"{changed}: {_abandoned(state, candidate, stable)}; the {running} rollout of revision"
                  f" {inputs.current.number} starts from its beginning")
    if same_revision:
        # The same revision starts afresh: it is not superseded (a new revision would be).
        inputs = replace(inputs, candidate=None)
    return Carried(Steady(), inputs, event)


def _abandoned(state: RolloutState, candidate: int, stable: int) -> str:
    if isinstance(state, Switched):
        return f"traffic goes back from revision {candidate} to stable revision {stable}, whose pods still run"
    if isinstance(state, Stepping):
        return f"the canary of revision {candidate} is abandoned at step {state.step + 1}; stable revision {stable} serves"
    if isinstance(state, Previewing):
        return f"the preview of revision {candidate} is abandoned; stable revision {stable} keeps serving"
    return f"the rollout of revision {candidate} is abandoned; stable revision {stable} serves"
