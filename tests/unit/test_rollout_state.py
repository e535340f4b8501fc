"""The rollout state as stored in status: one tagged object per strategy, a strategy change as
an explicit transition, and statuses written by the previous version read once."""

from __future__ import annotations

import pytest
import yaml

from apprelease.api.status import (
    AppReleaseStatus,
    BlueGreenRolloutState,
    BlueGreenStatus,
    CanaryRolloutState,
    RolloutStatus,
)
from apprelease.rollout import requests
from apprelease.rollout.state import (
    Aborted,
    Previewing,
    Promoting,
    RolloutState,
    Steady,
    Stepping,
    Stored,
    Switched,
    of,
    of_wire,
    status_fields,
    stored,
)
from tests.support import ROOT

from .sim import CANARY, Sim, make_app


def _blue_green_previewing() -> Sim:
    sim = Sim(make_app({"strategy": {"blueGreen": {"scaleDownDelaySeconds": 30}}}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.phase == "Paused" and "preview" in sim.deployments
    return sim


def test_a_preview_switched_to_canary_starts_the_canary_and_a_promote_moves_it_on() -> None:
    sim = _blue_green_previewing()
    sim.edit(strategy=CANARY)
    sim.settle()
    # The preview is abandoned: stable keeps serving, the canary starts at step 1 and
    # waits at its first pause (step 2/4) with the spec's revision as candidate.
    assert sim.status.phase == "Paused" and sim.status.step == "2/4", sim.status.message
    assert "preview" not in sim.deployments and sim.stable_image() == "registry/shop:v1"
    assert sim.canary_image() == "registry/shop:v2" and sim.canary_replicas() == 1
    assert "StrategyChanged" in sim.reasons()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert sim.status.step == "4/4"
    sim.tick(30)
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.stable_image() == "registry/shop:v2"
    assert "canary" not in sim.deployments



def _canary_paused() -> Sim:
    sim = Sim(make_app({"strategy": CANARY}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.phase == "Paused" and sim.status.step == "2/4"
    return sim


BLUE_GREEN = {"blueGreen": {"scaleDownDelaySeconds": 30}}


def test_a_canary_switched_to_blue_green_previews_the_revision_and_stable_keeps_serving() -> None:
    sim = _canary_paused()
    stable_pods = [p.name for p in sim.pods["stable"]]
    sim.edit(strategy=BLUE_GREEN)
    sim.settle()
    assert sim.status.rollout == RolloutStatus(blue_green=BlueGreenRolloutState(
        phase="Previewing", since=T, ready_since=T))
    assert "canary" not in sim.deployments and sim.image_of("preview") == "registry/shop:v2"
    assert [p.name for p in sim.pods["stable"]] == stable_pods and sim.status.phase == "Paused"
    assert "the canary of revision 2 is abandoned at step 2" in dict(sim.events)["StrategyChanged"]
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.stable_image() == "registry/shop:v2"


def test_a_switched_preview_changed_to_canary_sends_traffic_back_to_the_old_pods_still_running() -> None:
    sim = _blue_green_previewing()
    sim.annotate(requests.PROMOTE, "step:1")
    sim.tick()
    assert sim.status.rollout is not None and sim.status.rollout.blue_green is not None
    serial, stable_pods = sim.serial, [p.name for p in sim.pods["stable"]]
    sim.edit(strategy=CANARY)
    sim.tick()
    assert [p.name for p in sim.pods["stable"]] == stable_pods and sim.stable_image() == "registry/shop:v1"
    assert sim.serial == serial + 1 and sim.canary_replicas() == 1  # only the canary's one pod is new
    assert "traffic goes back from revision 2 to stable revision 1" in dict(sim.events)["StrategyChanged"]
    sim.settle()
    assert sim.status.step == "2/4" and sim.status.phase == "Paused"


def test_a_promotion_under_way_is_finished_when_the_strategy_changes() -> None:
    sim = _canary_paused()
    sim.pods_ready["stable"] = False  # the promotion does not complete by itself
    sim.annotate(requests.PROMOTE, "full:1")
    sim.tick()
    assert sim.status.promoting and sim.stable_image() == "registry/shop:v2"
    sim.edit(strategy=BLUE_GREEN)
    sim.tick()
    assert sim.status.rollout == RolloutStatus() and sim.status.canary_revision is None
    assert sim.stable_image() == "registry/shop:v2" and set(sim.deployments) == {"stable"}
    assert "goes to the stable Deployment" in dict(sim.events)["StrategyChanged"]
    sim.pods_ready["stable"] = True
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.status.stable_revision == 2


def test_an_aborted_canary_stays_aborted_under_blue_green_until_retried() -> None:
    sim = _canary_paused()
    sim.annotate(requests.ABORT, "x:1")
    sim.settle()
    sim.edit(strategy=BLUE_GREEN)
    sim.settle()
    assert sim.status.phase == "Degraded" and sim.status.rollout is not None
    assert sim.status.rollout.blue_green is not None and sim.status.rollout.blue_green.phase == "Aborted"
    assert sim.deployments["preview"].replicas == 0 and "canary" not in sim.deployments
    assert "revision 2 stays aborted" in dict(sim.events)["StrategyChanged"]
    sim.annotate(requests.RETRY, "x:1")
    sim.settle()
    assert sim.status.phase == "Paused" and sim.image_of("preview") == "registry/shop:v2"


def test_a_canary_changed_to_rolling_rolls_the_revision_out_on_stable() -> None:
    sim = _canary_paused()
    sim.edit(strategy={"rolling": {}})
    sim.settle()
    assert sim.status.phase == "Healthy" and sim.stable_image() == "registry/shop:v2"
    assert set(sim.deployments) == {"stable"} and sim.status.rollout == RolloutStatus()
    assert "StrategyChanged" in sim.reasons()


def test_a_new_revision_with_the_strategy_change_supersedes_the_preview() -> None:
    sim = _blue_green_previewing()
    sim.edit(strategy=CANARY, image="registry/shop:v3")
    sim.settle()
    assert sim.canary_image() == "registry/shop:v3" and sim.status.step == "2/4"
    assert next(r for r in sim.revisions.values() if r.number == 2).abort_reason == "Superseded"


# The stored object -------------------------------------------------------------------------

def _stored_as(state: RolloutState, running: str) -> AppReleaseStatus:
    fields = status_fields(state, running=running)
    wire = AppReleaseStatus(canary_revision_hash="abc", strategy=running, **fields).to_wire()  # type: ignore[arg-type]
    return AppReleaseStatus.model_validate(wire)


STATES: list[tuple[str, RolloutState]] = [
    ("canary", Stepping(2, "2026-11-23T10:00:00Z")),
    ("canary", Stepping(1, "2026-11-23T10:00:00Z", "2026-11-23T10:01:00Z")),
    ("canary", Promoting(4, "2026-11-23T10:00:00Z")),
    ("canary", Promoting(1, "2026-11-23T10:00:00Z", full=True, phase="ScaleCanary")),
    ("canary", Aborted(1, "2026-11-23T10:00:00Z", "CrashLoop", "canary pod x restarted 4 times")),
    ("blueGreen", Previewing("2026-11-23T10:00:00Z")),
    ("blueGreen", Previewing("2026-11-23T10:00:00Z", "2026-11-23T10:00:30Z")),
    ("blueGreen", Switched("2026-11-23T10:01:00Z")),
    ("blueGreen", Promoting(0, "2026-11-23T10:02:00Z", full=True, phase="UpdateStable")),
    ("blueGreen", Aborted(0, "2026-11-23T10:00:00Z", "AbortedByUser", "aborted on request")),
]


@pytest.mark.parametrize(("running", "state"), STATES)
def test_each_state_is_stored_under_its_strategy_and_read_back_unchanged(running: str, state: RolloutState) -> None:
    status = _stored_as(state, running)
    assert stored(status) == Stored(state, running)  # type: ignore[arg-type]
    assert status.rollout is not None
    assert (status.rollout.canary is not None) == (running == "canary")
    assert (status.rollout.blue_green is not None) == (running == "blueGreen")
    # The derived old fields say the same to an older reader (the previous version's parse).
    legacy = status.model_copy(update={"rollout": None})
    assert of(legacy) == state


def test_steady_is_an_empty_rollout_and_the_old_fields_are_never_read_back() -> None:
    status = _stored_as(Steady(), "canary")
    assert status.to_wire()["rollout"] == {}
    # A derived field that disagrees (as an older operator, or a person, might leave it) does
    # not change the state the operator resumes from.
    assert of(status.model_copy(update={"aborted": True, "current_step_index": 2})) == Steady()
    paused = Stepping(1, "2026-11-23T10:00:00Z", "2026-11-23T10:01:00Z")
    status = _stored_as(paused, "canary")
    assert of(status.model_copy(update={"blue_green": BlueGreenStatus(preview_since="x")})) == paused


# Statuses written by the previous version ---------------------------------------------------

OLD = yaml.safe_load((ROOT / "tests" / "data" / "status_before_rollout.yaml").read_text())
T = "2026-11-23T10:00:00Z"
OLD_STATES: dict[str, Stored] = {
    "canarySteady": Stored(Steady()),
    "canaryStepping": Stored(Stepping(0, T), "canary"),
    "canaryPaused": Stored(Stepping(1, T, T), "canary"),
    "canaryPromoting": Stored(Promoting(1, T, full=True), "canary"),
    "canaryPromotingScaleCanary": Stored(Promoting(1, T, full=True, phase="ScaleCanary"), "canary"),
    "canaryPromotingUpdateStable": Stored(Promoting(1, T, full=True, phase="UpdateStable"), "canary"),
    "canaryAborted": Stored(Aborted(1, T, "AbortedByUser", "aborted on request"), "canary"),
    "blueGreenPreviewing": Stored(Previewing(T, T), "blueGreen"),
    "blueGreenSwitched": Stored(Switched(T), "blueGreen"),
    "blueGreenPromoting": Stored(Promoting(0, "2026-11-23T10:00:31Z", phase="UpdateStable"), "blueGreen"),
    "blueGreenAborted": Stored(Aborted(0, T, "AbortedByUser", "aborted on request"), "blueGreen"),
    # The old fields said "canary" but held a preview: it is the preview it was.
    "canaryStuckOnAPreview": Stored(Previewing(T, T), "blueGreen"),
}


@pytest.mark.parametrize("name", sorted(OLD_STATES))
def test_a_status_written_by_the_previous_version_reads_as_the_same_state(name: str) -> None:
    raw = OLD[name]
    assert "rollout" not in raw
    assert stored(AppReleaseStatus.model_validate(raw)) == OLD_STATES[name]
    assert of_wire(raw) == OLD_STATES[name]  # the CLI's and the console's reading


def test_after_the_upgrade_a_paused_canary_resumes_at_its_step_and_stores_the_state_once() -> None:
    sim = Sim(make_app({"strategy": CANARY}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    assert sim.status.step == "2/4"
    sim.status = AppReleaseStatus.model_validate(OLD["canaryPaused"])  # what the old version left
    result = sim.tick()
    assert result.status.rollout == RolloutStatus(canary=CanaryRolloutState(
        phase="Stepping", step=1, step_start_time=T, pause_start_time=T))
    assert result.status.step == "2/4" and result.status.phase == "Paused" and result.events == ()
    assert sim.canary_replicas() == 1 and sim.stable_image() == "registry/shop:v1"
    assert sim.tick().status == result.status  # stored once: nothing changes after that
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert sim.status.step == "4/4"


def test_after_the_upgrade_an_app_stuck_on_a_preview_under_canary_starts_its_canary() -> None:
    sim = _blue_green_previewing()
    sim.edit(strategy=CANARY)
    sim.status = AppReleaseStatus.model_validate(OLD["canaryStuckOnAPreview"])
    sim.settle()
    assert sim.status.phase == "Paused" and sim.status.step == "2/4", sim.status.message
    assert "StrategyChanged" in sim.reasons() and "preview" not in sim.deployments
