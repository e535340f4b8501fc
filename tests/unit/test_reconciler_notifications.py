"""The reconciler hands notifications over after the status write that records them, once:
a pass that writes nothing new tells nothing (the in-memory apiserver of test_reconciler)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from apprelease.api.notifications import NotificationFacts
from apprelease.k8s.client import ApiError

from .test_reconciler import NAME, NS, setup


class Recorder:
    def __init__(self) -> None:
        self.told: list[NotificationFacts] = []

    def submit(self, namespace: str, rules: Sequence[Any], facts: Sequence[NotificationFacts]) -> None:
        assert namespace == NS and [r.sink for r in rules] == ["team"]
        self.told += facts


def test_a_stall_is_told_once_as_degraded() -> None:
    reconciler, kube, clock = setup({"notifications": [{"sink": "team"}]})
    reconciler.notifier = recorder = Recorder()
    kube.fail["Deployment"] = ApiError(503, "ServiceUnavailable", "etcd leader changed")
    reconciler.reconcile((NS, NAME))
    assert recorder.told == []  # a transient failure within its bound is not news yet
    clock.now += timedelta(minutes=6)
    reconciler.reconcile((NS, NAME))
    reconciler.reconcile((NS, NAME))
    assert [(f.kind, f.reason, f.name) for f in recorder.told] == [("Degraded", "Stalled", NAME)]


def test_a_rolling_release_is_told_started_once() -> None:
    reconciler, kube, _ = setup({"notifications": [{"sink": "team", "on": ["Started"]}]})
    reconciler.notifier = recorder = Recorder()
    reconciler.reconcile((NS, NAME))
    app = kube.objects[("AppRelease", NS, NAME)]
    app["spec"]["image"] = "registry/shop:v2"
    app["metadata"]["generation"] = 2
    reconciler.reconcile((NS, NAME))
    reconciler.reconcile((NS, NAME))
    assert [(f.kind, f.reason, f.image, f.revision) for f in recorder.told] == [
        ("Started", "RolloutStarted", "registry/shop:v2", 2)]
