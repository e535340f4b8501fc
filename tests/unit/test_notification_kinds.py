"""Which notifications a written status change makes: the Event reasons and phase changes the
planner already decided, one notification each, none again for an unchanged status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from apprelease.api.notifications import NotificationRule, PipelineNotificationRule
from apprelease.api.spec import AppRelease
from apprelease.api.status import AppReleaseStatus
from apprelease.rollout.canary import GATE_WAITING
from apprelease.rollout.notifications import (
    KIND_OF_REASON,
    notifications_for,
    pipeline_notification,
)
from apprelease.rollout.outcome import Event
from apprelease.rollout.pipeline import Notification

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def status(**fields: object) -> AppReleaseStatus:
    return AppReleaseStatus.model_validate(fields)


def kinds(before: AppReleaseStatus, after: AppReleaseStatus, *events: Event) -> list[str]:
    return [n.kind for n in notifications_for("shop", "cart", "img:v2", before, after, events, NOW)]


def test_every_kind_in_the_table_is_one_a_user_can_select() -> None:
    from apprelease.api.notifications import ROLLOUT_KINDS
    assert set(KIND_OF_REASON.values()) <= set(ROLLOUT_KINDS)


def test_events_map_to_kinds_with_the_rollouts_facts() -> None:
    before = status(phase="Healthy", currentRevision=1, stableRevision=1)
    after = status(phase="Progressing", currentRevision=2, canaryRevision=2, stepCount=3, step="1/3", setWeight=20)
    found = notifications_for("shop", "cart", "img:v2", before, after, [
        Event("Normal", "CanaryStarted", "canary of revision 2 (img:v2) starts at step 1"),
        Event("Normal", "ConfigPublished", "not told"),
    ], NOW)
    assert [(n.kind, n.reason, n.revision, n.image, n.step, n.weight) for n in found] == [
        ("Started", "CanaryStarted", 2, "img:v2", "1/3", 20)]


def test_paused_comes_from_the_phase_even_when_a_step_event_explains_the_pass() -> None:
    before = status(phase="Progressing", canaryRevision=2, stepCount=2, step="1/2")
    after = status(phase="Paused", canaryRevision=2, stepCount=2, step="2/2",
                   message="canary revision 2 paused at step 2/2: promote to continue")
    assert kinds(before, after, Event("Normal", "StepCompleted", "step 1/2: setWeight 20 reached")) == [
        "StepReached", "Paused"]


def test_an_abort_is_not_told_twice_as_degraded() -> None:
    before = status(phase="Progressing")
    after = status(phase="Degraded")
    assert kinds(before, after, Event("Warning", "Aborted", "canary revision 2 aborted on request")) == ["Aborted"]
    assert kinds(before, after) == ["Degraded"]
    assert kinds(after, after) == []


def test_rolling_promotion_is_the_way_to_healthy() -> None:
    assert kinds(status(phase="Progressing", strategy="rolling"), status(phase="Healthy", strategy="rolling")) == [
        "Promoted"]
    assert kinds(status(phase="Progressing", strategy="canary"), status(phase="Healthy", strategy="canary")) == []
    assert kinds(status(), status(phase="Healthy", strategy="rolling")) == []  # a new app: nothing rolled out


def test_the_registry_gate_wait_is_told_once() -> None:
    waiting = status(phase="Progressing", message=f"canary revision 2: step 1/3: {GATE_WAITING}")
    assert kinds(status(phase="Progressing", message="canary revision 2: step 1/3: waiting for 1 canary pod(s)"),
                 waiting) == ["RegistryGateWaiting"]
    assert kinds(waiting, waiting) == []


def test_pipeline_notes() -> None:
    note = Notification("Promoted", "prod", "abc123", "alice", "artifact abc123 promoted to prod by alice")
    facts = pipeline_notification("release", "shop", note, NOW)
    assert facts is not None
    assert (facts.kind, facts.subject, facts.stage, facts.actor) == ("StagePromoted", "ReleasePipeline", "prod", "alice")
    waiting = pipeline_notification("release", "shop", Notification("WaitingForApproval", "prod", "abc", "", "m"), NOW)
    assert waiting is not None and waiting.kind == "WaitingForApproval"


def test_rules_default_and_validate() -> None:
    assert NotificationRule(sink="team").hears("Promoted")
    assert not NotificationRule(sink="team").hears("StepReached")
    assert NotificationRule.model_validate({"sink": "team", "on": ["StepReached"]}).hears("StepReached")
    assert PipelineNotificationRule(sink="team").hears("WaitingForApproval")
    with pytest.raises(ValidationError):
        NotificationRule.model_validate({"sink": "team", "on": ["WaitingForApproval"]})
    with pytest.raises(ValidationError):
        NotificationRule.model_validate({"sink": "Team_1"})


def test_a_sink_is_listed_once() -> None:
    body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"image": "img:v1", "notifications": [{"sink": "a"}, {"sink": "a", "on": ["Aborted"]}]}}
    with pytest.raises(ValidationError, match="each sink is listed once"):
        AppRelease.model_validate(body)
