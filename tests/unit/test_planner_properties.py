"""Property tests: random step lists and random operator/cluster events never break the
planner's promises (no step skipped or repeated, bounds hold, Healthy means converged)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apprelease.rollout import requests

from .sim import Sim, make_app

step_strategy = st.one_of(
    st.integers(0, 100).map(lambda w: {"setWeight": w}),
    st.just({"pause": {}}),
    st.integers(1, 120).map(lambda s: {"pause": {"duration": f"{s}s"}}),
)
action_strategy = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 200)),
    st.tuples(st.just("promote"), st.booleans()),
    st.tuples(st.just("abort"), st.just(None)),
    st.tuples(st.just("retry"), st.just(None)),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("image"), st.sampled_from(["v1", "v2", "v3"])),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(st.just("replicas"), st.integers(0, 7)),
)

RESTARTS = {"CanaryStarted", "CanaryRestarted", "Retried", "RolledBack", "Restarted"}


def admissible(steps: list[dict]) -> list[dict]:
    """Steps the CRD admits: setWeight never decreases, and some weight is above 0."""
    weights = iter(sorted(s["setWeight"] for s in steps if "setWeight" in s))
    result = [{"setWeight": next(weights)} if "setWeight" in s else s for s in steps]
    if result and any("setWeight" in s for s in result) and not any(s.get("setWeight") for s in result):
        result[-1] = {"setWeight": 100} if "setWeight" in result[-1] else result[-1]
        result.append({"setWeight": 100})
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step_strategy, min_size=0, max_size=6).map(admissible),
    actions=st.lists(action_strategy, min_size=1, max_size=25),
)
def test_random_rollouts_keep_invariants(steps: list, actions: list) -> None:
    sim = Sim(make_app({"strategy": {"canary": {"steps": steps}}, "progressDeadlineSeconds": 300}))
    sim.settle()
    for counter, (kind, value) in enumerate(actions, start=1):
        if kind == "tick":
            pass
        elif kind == "promote":
            sim.annotate(requests.PROMOTE, requests.request_value(value, str(counter)))
        elif kind == "abort":
            sim.annotate(requests.ABORT, str(counter))
        elif kind == "retry":
            sim.annotate(requests.RETRY, str(counter))
        elif kind == "ready":
            sim.pods_ready["canary"] = value
        elif kind == "image":
            sim.edit(image=f"registry/shop:{value}")
        elif kind == "paused":
            sim.edit(paused=value)
        elif kind == "replicas":
            sim.edit(replicas=value)

        before = sim.status
        events_before = len(sim.events)
        result = sim.tick(value if kind == "tick" else 0)
        status = result.status
        new_events = [r for r, _ in sim.events[events_before:]]

        n = len(steps)
        if status.canary_revision is not None:
            assert status.current_step_index is not None
            assert 0 <= status.current_step_index <= n
            assert 0 <= (status.set_weight or 0) <= 100
            assert sim.canary_replicas() <= sim.app.spec.replicas
            same_canary = before.canary_revision_hash == status.canary_revision_hash
            if same_canary and not RESTARTS & set(new_events) and before.current_step_index is not None:
                moved = status.current_step_index - before.current_step_index
                assert moved >= 0, "the step index never goes back within one canary"
                explained = new_events.count("StepCompleted") + new_events.count("Promoted")
                if not status.promote_full:
                    assert moved == explained, (moved, new_events)
        if status.phase == "Healthy":
            assert status.canary_revision is None
            assert status.stable_revision_hash == status.current_revision_hash
        if status.aborted:
            assert sim.canary_replicas() == 0
            assert status.phase == "Degraded"
        assert status.observed_generation == sim.app.generation

    # Level-triggered: with nothing new to see, another pass changes nothing.
    sim.settle(max_ticks=20)
    again = sim.tick()
    assert again.status == sim.status
    assert again.revisions_to_save == ()
