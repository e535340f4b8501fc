"""Per-app metrics scraped from the running operator: an app's info series follows its
phase (the old phase's series goes), weights show during a canary, and every series of the
app is gone once it is deleted. JSON logs carry the app on each reconcile line."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_canary import canary_app, start
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess

pytestmark = pytest.mark.e2e


def app_series(operator: OperatorProcess, namespace: str) -> dict[str, float]:
    return {k: v for k, v in operator.metrics().items()
            if k.startswith(("apprelease_app_", "apprelease_canary_step")) and f"namespace={namespace}" in k}


def test_app_series_follow_the_phase_and_go_with_the_app(arl: AppReleases, operator: OperatorProcess) -> None:
    ns = arl.namespace
    start(arl, canary_app())
    healthy = f"apprelease_app_info{{name=shop,namespace={ns},phase=Healthy,strategy=canary}}"
    wait_for(lambda: app_series(operator, ns).get(healthy) == 1, 30, 0.3, "the Healthy info series")

    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    paused = f"apprelease_app_info{{name=shop,namespace={ns},phase=Paused,strategy=canary}}"

    def canary_series() -> dict[str, float] | bool:
        series = app_series(operator, ns)
        return series if series.get(paused) == 1 else False

    series = wait_for(canary_series, 30, 0.3, "the Paused info series")
    assert healthy not in series  # a phase change replaces the series, no stale 1 left
    assert series[f"apprelease_app_set_weight{{name=shop,namespace={ns}}}"] == 20
    assert series[f"apprelease_app_weight{{name=shop,namespace={ns}}}"] == 25
    assert series[f"apprelease_canary_step{{name=shop,namespace={ns}}}"] == 1
    assert [k for k in series if k.startswith("apprelease_app_info")] == [paused]

    arl.cluster.kubectl("delete", "appreleases", "shop", "-n", ns)
    wait_for(lambda: not app_series(operator, ns), 30, 0.3, "every series of the deleted app gone")


def test_json_logs_name_the_app_on_reconcile_lines(
    arl: AppReleases, operator: OperatorProcess, kube_cluster: KubeCluster
) -> None:
    # A Service of the app's name that the operator does not own: a reconcile logs a warning.
    kube_cluster.kubectl("create", "service", "clusterip", "shop", "--tcp=80:8080", "-n", arl.namespace)
    with operator.replaced_by(kube_cluster.kubeconfig, extra_args=("--log-format", "json")):
        arl.apply(canary_app())
        arl.wait("shop", lambda s: (s.get("failure") or {}).get("reason") == "ChildConflict", 60, "ChildConflict")

        def about_shop() -> list[dict]:
            lines = [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.startswith("{")]
            return [x for x in lines if x.get("namespace") == arl.namespace and x.get("name") == "shop"]

        lines = wait_for(about_shop, 30, 0.3, "a JSON log line about shop")
        warning = next(x for x in lines if x["logger"] == "apprelease.reconcile")
        assert warning["level"] == "WARNING" and "ChildConflict" in warning["message"]
        assert warning["revision"] == 1 and warning["time"]
        every = operator.log_path.read_text().splitlines()
        assert all(line.startswith("{") for line in every if line.strip()), every[:5]
