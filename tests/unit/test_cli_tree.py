"""`apprelease get`'s view: blue-green roles, HPA-chosen counts, registration per pod."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from apprelease.cli.tree import render_view


def _deployment(name: str, track: str, revision: int, image: str, replicas: int) -> dict:
    return {
        "metadata": {"name": name, "labels": {"apprelease.io/track": track},
                     "annotations": {"apprelease.io/revision": str(revision)}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {"readyReplicas": replicas},
    }


def _pod(name: str, track: str, revision: int, gate: str) -> dict:
    return {
        "metadata": {"name": name, "labels": {"apprelease.io/track": track, "apprelease.io/revision": str(revision)}},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "apprelease.io/registered", "status": "True", "reason": gate}]},
    }


def text_of(group: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(group)
    return out.getvalue()


SWITCHED = {"rollout": {"blueGreen": {"phase": "Switched", "since": "2026-12-01T10:00:00Z"}},
            "blueGreen": {"switchedAt": "2026-12-01T10:00:00Z"}}  # derived, for older readers
# What the operator wrote before status.rollout: read once by the old fields' precedence.
SWITCHED_BEFORE_ROLLOUT = {"canaryRevisionHash": "h2", "blueGreen": {"switchedAt": "2026-12-01T10:00:00Z"}}


@pytest.mark.parametrize("state", [SWITCHED, SWITCHED_BEFORE_ROLLOUT])
def test_blue_green_roles_hpa_and_registration_are_shown(state: dict[str, Any]) -> None:
    app = {
        "metadata": {"name": "shop", "namespace": "ns"},
        "spec": {"image": "shop:v2", "replicas": 4},
        "status": {
            "phase": "Progressing", "strategy": "blueGreen", "stableRevision": 1, "canaryRevision": 2,
            **state, "replicas": 4,
            "conditions": [{"type": "Autoscaling", "status": "True", "reason": "HPA",
                            "message": "replicas chosen by HPA shop (2-10): now 4"}],
        },
    }
    view = text_of(render_view(
        app,
        [_deployment("shop", "stable", 1, "shop:v1", 4), _deployment("shop-preview", "preview", 2, "shop:v2", 4)],
        [_pod("shop-preview-a", "preview", 2, "Serving"), _pod("shop-b", "stable", 1, "Offline")],
    ))
    assert "Active:" in view and "revision 2" in view and "Preview:" in view
    assert "2026-12-01T10:00:00Z (old pods kept for an instant rollback)" in view
    assert "shop-preview  Deployment  preview  active" in view and "shop  Deployment  stable  idle" in view
    assert "4  (replicas chosen by HPA shop (2-10))" in view
    assert "registry:Serving" in view and "registry:Offline" in view


def test_an_hpa_on_the_wrong_target_is_shown_in_red_words() -> None:
    app = {"metadata": {"name": "shop", "namespace": "ns"}, "spec": {"replicas": 2},
           "status": {"phase": "Healthy", "conditions": [
               {"type": "Autoscaling", "status": "False", "reason": "HPATargetsDeployment",
                "message": "HPA web scales Deployment shop, whose replicas this AppRelease sets: change it"}]}}
    assert "HPA web scales Deployment shop" in text_of(render_view(app, [], []))


def test_adopted_pods_show_under_the_stable_deployment_as_adopted() -> None:
    app = {"metadata": {"name": "shop", "namespace": "ns"},
           "spec": {"image": "shop:v1", "replicas": 1, "adopt": {"selector": {"app": "shop"}}},
           "status": {"phase": "Healthy", "strategy": "rolling", "stableRevision": 1}}
    adopted = {"metadata": {"name": "shop-5d9f-a", "labels": {"app": "shop", "pod-template-hash": "5d9f"}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    view = text_of(render_view(app, [_deployment("shop", "stable", 1, "shop:v1", 1)], [adopted]))
    assert "shop-5d9f-a  Pod  Running  ready:1/1  restarts:0  rev:adopted" in view


def test_the_current_analysis_shows_each_metric_with_its_last_measurements() -> None:
    analysis = {"run": "h2/step-1/t", "phase": "Failed",
                "message": "metric errors (error-rate) failed: errors returned [0.5]; successCondition result[0] < 0.01",
                "metrics": [{"name": "errors", "template": "error-rate", "phase": "Failed", "count": 2,
                             "successful": 1, "failed": 1, "measurements": [
                                 {"phase": "Successful", "at": "2026-12-01T10:00:00Z", "value": "[0.001]"},
                                 {"phase": "Failed", "at": "2026-12-01T10:00:10Z", "value": "[0.5]"}]}]}
    app = {"metadata": {"name": "shop", "namespace": "ns"}, "spec": {"replicas": 2},
           "status": {"phase": "Degraded", "strategy": "canary", "analysis": {"step": analysis}}}
    view = text_of(render_view(app, [], []))
    assert "Analysis:" in view and "successCondition result[0] < 0.01" in view
    assert "errors:" in view and "2 measured (1 ok, 1 failed" in view and "last: [0.5]" in view
    assert "errors (error-rate)  Failed  2 measured" in view
    assert "2026-12-01T10:00:00Z  [0.001]" in view and "2026-12-01T10:00:10Z  [0.5]" in view


def test_the_watched_view_shows_the_adopted_pods_as_get_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from apprelease.cli import tree
    from apprelease.k8s.watch import WatchEvent

    app = {"metadata": {"name": "shop", "namespace": "ns"},
           "spec": {"image": "shop:v1", "replicas": 1, "adopt": {"selector": {"app": "shop"}}},
           "status": {"phase": "Healthy", "strategy": "rolling", "stableRevision": 1}}
    adopted = {"metadata": {"name": "shop-5d9f-a", "labels": {"app": "shop", "pod-template-hash": "5d9f"}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    ours = _pod("shop-7c4e-b", "stable", 1, "Serving")
    listed = {("AppRelease", None): [app], ("Deployment", "ours"): [_deployment("shop", "stable", 1, "shop:v1", 1)],
              ("Pod", "ours"): [ours], ("Pod", "adopted"): [adopted]}

    def fake_watch(_kube: object, kind: str, _namespace: str, *, until: object = None,
                   label_selector: str | None = None, field_selector: str | None = None) -> Any:
        which = None if label_selector is None else "adopted" if "app=shop" in label_selector.split(",") else "ours"
        yield WatchEvent("LISTED", listed.get((kind, which), []))

    class Kube:
        def list(self, *_: object, **__: object) -> list:
            return []

    class Ctx:
        namespace = "ns"
        kube = Kube()

    monkeypatch.setattr(tree, "watch", fake_watch)
    view = tree._WatchedView(Ctx(), "shop", None, {"app": "shop"})  # type: ignore[arg-type]
    view.start()
    ended = 0
    while ended < 4:  # each watch lists, then ends
        source, event = view._events.get(timeout=5)
        if event is None:
            ended += 1
        else:
            view._apply(source, event)  # type: ignore[arg-type]
    shown = text_of(view.render())
    assert "shop-5d9f-a  Pod  Running  ready:1/1  restarts:0  rev:adopted" in shown
    assert "shop-7c4e-b  Pod" in shown
