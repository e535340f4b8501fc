"""SIGKILL the operator at many points of a canary: after a restart it continues at the same
step, skips and repeats none, churns no pod the step does not need, and a restart with
paused canaries writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apprelease.controller.reconciler import STATUS_COALESCE_SECONDS
from tests.plugins.cluster import wait_for
from tests.plugins.operator import (
    AppReleases,
    OperatorProcess,
    hold_still,
    other_namespaces_gone,
    settled,
)

pytestmark = pytest.mark.e2e

STEPS = [
    {"setWeight": 33},
    {"pause": {}},
    {"setWeight": 66},
    {"pause": {"duration": "20s"}},
    {"setWeight": 100},
    {"pause": {}},
]


def app(image: str = "registry.local/resume:v1") -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": "resume"},
        "spec": {"image": image, "replicas": 3, "port": 8080,
                 "strategy": {"canary": {"steps": STEPS}}},
    }


def pod_uids(arl: AppReleases, track: str) -> set[str]:
    items = arl.kubectl_json("pods", "-l", f"app.kubernetes.io/instance=resume,apprelease.io/track={track}")["items"]
    return {p["metadata"]["uid"] for p in items if not p["metadata"].get("deletionTimestamp")}


class Scenario:
    """Kill, optionally act while the operator is down, restart, then check the step."""

    def __init__(self, arl: AppReleases, operator: OperatorProcess):
        self.arl = arl
        self.operator = operator
        self.kills = 0

    def kill_and_resume(self, while_down: Callable[[], None] | None = None) -> dict[str, Any]:
        before = self.arl.status("resume")
        self.operator.kill()
        self.kills += 1
        if while_down:
            while_down()
        self.operator.start()
        return before

    def step(self) -> int:
        return int(self.arl.status("resume").get("currentStepIndex", -1))

    def wait_step(self, index: int, phase: str, timeout: float = 60) -> dict[str, Any]:
        return self.arl.wait_phase("resume", phase, timeout=timeout, currentStepIndex=index)


def test_kill_at_every_point_of_a_canary(arl: AppReleases, operator: OperatorProcess) -> None:
    s = Scenario(arl, operator)
    arl.apply(app())
    arl.wait_phase("resume", "Healthy", timeout=60, stableRevision=1)
    stable = pod_uids(arl, "stable")

    # 1: killed right after the spec change, before the canary started.
    s.kill_and_resume(lambda: arl.patch("resume", {"spec": {"image": "registry.local/resume:v2"}}))
    s.wait_step(1, "Paused")
    canary_after_step1 = pod_uids(arl, "canary")
    assert len(canary_after_step1) == 1

    # 2: killed while paused at step 2 (pause {}): stays there, no pod churn.
    s.kill_and_resume()
    hold_still(s.step, 3)
    assert s.step() == 1
    assert pod_uids(arl, "canary") == canary_after_step1 and pod_uids(arl, "stable") == stable

    # 3: promote requested while the operator is down: handled exactly once after restart.
    s.kill_and_resume(lambda: arl.cli("promote", "resume"))
    status = s.wait_step(3, "Paused")
    pause_started = status["pauseStartTime"]
    canary_after_step3 = pod_uids(arl, "canary")
    assert len(canary_after_step3) == 2  # ceil(66% of 3)
    assert canary_after_step1 <= canary_after_step3  # scaled up, never replaced

    # 4 and 5: killed twice during the 20 s duration pause: it keeps its start time.
    s.kill_and_resume()
    assert arl.status("resume")["pauseStartTime"] == pause_started
    s.kill_and_resume()
    assert arl.status("resume")["pauseStartTime"] == pause_started
    status = s.wait_step(5, "Paused", timeout=60)  # setWeight 100 done, waiting at pause {}
    assert pod_uids(arl, "stable") == stable

    # 6: killed while paused at the last step; then promote while down → promotion.
    s.kill_and_resume()
    assert s.step() == 5
    s.kill_and_resume(lambda: arl.cli("promote", "resume"))
    # 7: killed mid-promotion (stable Deployment rolling to the canary revision).
    arl.wait("resume", lambda st: st.get("promoting") is True or st.get("stableRevision") == 2, 60, "promotion")
    s.kill_and_resume()
    arl.wait_phase("resume", "Healthy", timeout=90, stableRevision=2)
    # 8: killed after promotion: nothing to redo.
    s.kill_and_resume()
    hold_still(lambda: arl.status("resume").get("stableRevision"), 3)

    # 9 and 10: a new canary, abort requested while down, then killed mid-abort.
    arl.patch("resume", {"spec": {"image": "registry.local/resume:v3"}})
    s.wait_step(1, "Paused")
    s.kill_and_resume(lambda: arl.cli("abort", "resume"))
    s.kill_and_resume()
    status = arl.wait_phase("resume", "Degraded", timeout=60, aborted=True)
    assert status["abortReason"] == "AbortedByUser"
    wait_for(lambda: not pod_uids(arl, "canary"), 60, 0.3, "canary scaled away")

    # 11: retry while down: restarts at step 1 exactly once.
    s.kill_and_resume(lambda: arl.cli("retry", "resume"))
    s.wait_step(1, "Paused")
    assert s.kills >= 10

    # Events are posted once per status change, so a repeated step would show twice.
    completed = [e["message"] for e in arl.events("resume") if e["reason"] == "StepCompleted"]
    first_canary = [m for m in completed if not m.startswith("step 1/6")]
    assert sorted(first_canary) == sorted(set(first_canary)), completed
    assert {m.split(":")[0] for m in first_canary} == {"step 3/6", "step 4/6", "step 5/6"}, completed


def test_restart_with_paused_canaries_makes_no_writes(arl: AppReleases, operator: OperatorProcess) -> None:
    other_namespaces_gone(arl.cluster, arl.namespace)
    names = [f"paused-{i}" for i in range(5)]
    for name in names:
        body = app()
        body["metadata"]["name"] = name
        arl.apply(body)
    for name in names:
        arl.wait_phase(name, "Healthy", timeout=60, stableRevision=1)
    for name in names:
        arl.patch(name, {"spec": {"image": "registry.local/resume:v2"}})
    for name in names:
        arl.wait_phase(name, "Paused", timeout=60, currentStepIndex=1)
    settled(lambda: [arl.status(name) for name in names], STATUS_COALESCE_SECONDS + 1, timeout=30)
    operator.restart()
    wait_for(lambda: operator.metrics().get("apprelease_reconcile_total{result=ok}", 0) >= len(names),
             30, 0.2, "every AppRelease reconciled after restart")
    hold_still(operator.writes_by_kind, 5)
    assert operator.writes_by_kind() == {}
