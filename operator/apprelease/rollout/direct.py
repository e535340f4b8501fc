"""The rolling and recreate strategies: the stable Deployment itself rolls to the newest
revision (Kubernetes' own RollingUpdate or Recreate), so the state is always Steady."""

from __future__ import annotations

from .outcome import Decision, Event, Inputs
from .state import RolloutState, Steady


def transition(state: RolloutState, inp: Inputs) -> Decision:
    events: tuple[Event, ...] = ()
    if inp.stable.hash != inp.current.hash:
        events = (Event(
            "Normal", "RolloutStarted",
            f"rolling out revision {inp.current.number} ({inp.current.template.image})",
        ),)
    return Decision(state=Steady(), stable=inp.current, events=events, handled=inp.handled)
