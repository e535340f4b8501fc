"""The rollout state stored in status.rollout, on the real control plane: a strategy change
mid-rollout is a transition of its own, and a status written by the previous version (the
old scattered fields, no status.rollout) resumes where it was after the upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.cluster import wait_for
from tests.plugins.operator import (
    AppReleases,
    OperatorProcess,
    hold_still,
    other_namespaces_gone,
    settled,
)

from .test_bluegreen import blue_green_app, endpoints, pods_of, previewing, selector

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}, {"pause": {}}]


def test_a_preview_switched_to_canary_reaches_a_canary_step_and_a_promote_finishes_it(arl: AppReleases) -> None:
    previewing(arl, blue_green_app())
    assert arl.status("web")["rollout"]["blueGreen"]["phase"] == "Previewing"
    blue = pods_of(arl, "web", 1)
    arl.patch("web", {"spec": {"strategy": {"blueGreen": None, "canary": {"steps": STEPS}}}})
    status = arl.wait_phase("web", "Paused", timeout=60, currentStepIndex=1)
    assert status["rollout"] == {"canary": {
        "phase": "Stepping", "step": 1, "stepStartTime": status["stepStartTime"],
        "pauseStartTime": status["pauseStartTime"]}}
    assert status["canaryRevision"] == 2 and status["step"] == "2/4"
    # Stable kept serving: the same blue pods, now beside one canary pod; the preview is gone.
    assert pods_of(arl, "web", 1) == blue and selector(arl, "web") is None
    wait_for(lambda: not arl.kubectl_json("deployments", "--field-selector", "metadata.name=web-preview")["items"],
             30, 0.3, "the preview Deployment gone")
    wait_for(lambda: endpoints(arl, "web") >= blue and len(endpoints(arl, "web")) == 3, 30, 0.3,
             "blue and the canary pod behind the Service")
    changed = [e["message"] for e in arl.events("web") if e["reason"] == "StrategyChanged"]
    assert len(changed) == 1 and "the preview of revision 2 is abandoned" in changed[0], changed

    arl.cli("promote", "web")
    arl.wait_phase("web", "Paused", timeout=60, currentStepIndex=3)
    arl.cli("promote", "web")
    status = arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)
    assert status["rollout"] == {} and not pods_of(arl, "web", 1)
    assert len(pods_of(arl, "web", 2)) == 2


def canary_app() -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": "upgraded"},
        "spec": {"image": "registry.local/upgraded:v1", "replicas": 2, "port": 8080,
                 "strategy": {"canary": {"steps": STEPS}}},
    }


def pod_uids(arl: AppReleases) -> set[str]:
    items = arl.kubectl_json("pods", "-l", "app.kubernetes.io/instance=upgraded")["items"]
    return {p["metadata"]["uid"] for p in items if not p["metadata"].get("deletionTimestamp")}


def test_a_canary_stored_by_the_previous_version_resumes_at_its_step(
    arl: AppReleases, operator: OperatorProcess
) -> None:
    other_namespaces_gone(arl.cluster, arl.namespace)  # their clean-up would count as writes
    arl.apply(canary_app())
    arl.wait_phase("upgraded", "Healthy", timeout=60, stableRevision=1)
    arl.patch("upgraded", {"spec": {"image": "registry.local/upgraded:v2"}})
    paused = arl.wait_phase("upgraded", "Paused", timeout=60, currentStepIndex=1)
    settled(lambda: arl.status("upgraded"), 4, timeout=30)
    pods = pod_uids(arl)

    # The previous version: the same status without status.rollout (its fields are what the
    # operator still derives), left behind when the new version starts.
    operator.stop()
    arl.cluster.kubectl("patch", "appreleases", "upgraded", "-n", arl.namespace, "--subresource=status",
                        "--type=json", "-p", '[{"op": "remove", "path": "/status/rollout"}]')
    old = arl.status("upgraded")
    assert "rollout" not in old and old["currentStepIndex"] == 1 and old["pauseStartTime"] == paused["pauseStartTime"]
    operator.start()

    status = arl.wait("upgraded", lambda s: "rollout" in s, 30, "the state stored in status.rollout")
    assert status["rollout"] == {"canary": {
        "phase": "Stepping", "step": 1, "stepStartTime": paused["stepStartTime"],
        "pauseStartTime": paused["pauseStartTime"]}}
    assert status["phase"] == "Paused" and status["step"] == "2/4"
    hold_still(operator.writes_by_kind, 3)
    assert pod_uids(arl) == pods and arl.status("upgraded")["currentStepIndex"] == 1  # resumed in place
    assert operator.writes_by_kind() == {"{code=200,resource=AppRelease/status,verb=patch}": 1}  # the conversion

    arl.cli("promote", "upgraded")
    arl.wait_phase("upgraded", "Paused", timeout=60, currentStepIndex=3)
    arl.cli("promote", "upgraded")
    arl.wait_phase("upgraded", "Healthy", timeout=90, stableRevision=2)
