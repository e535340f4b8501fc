"""A stage's analysis gates the promotion out of it, on the real control plane with a real
Prometheus: test → pre (auto gate) with an analysis of test; the exporter's value for the
artifact in test good → pre takes it; bad → refused, the value in the pipeline's status. The
template is created after the pipeline: its creation wakes the pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.pipeline import Stages, app
from tests.plugins.prometheus import unique_metric

pytestmark = pytest.mark.e2e


def test_stage_analysis_promotes_a_good_artifact_and_refuses_a_bad_one(stages: Stages,
                                                                        prometheus_server: Any) -> None:
    metric = unique_metric("stage_errors")
    query = metric + '{namespace="{{args.namespace}}", app=~"{{args.app}}", artifact="{{args.revision}}"}'
    files = {"application.yml": "greeting: hello\n"}
    for namespace in (stages.test, stages.pre):
        stages.apply(namespace, app("registry.local/shop:v1", files, 1, "stage"))
        stages.healthy(namespace, 1)
    stages.cluster.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
        "metadata": {"name": "shop", "namespace": stages.pipelines},
        "spec": {"apps": {"names": ["shop"]}, "stages": [
            {"name": "test", "namespace": stages.test,
             "analysis": {"templates": [{"templateName": "stage-errors"}]}},
            {"name": "pre", "namespace": stages.pre, "gate": {"auto": {"soakSeconds": 0}}},
        ]},
    }, namespace=stages.pipelines)

    # The template does not exist yet: the stage's analysis says so, naming it. Created now, it
    # wakes the pipeline (a watch), well before the pipeline's 60 s resync would.
    def analysis_of_test_stage(status: dict[str, Any]) -> dict[str, Any]:
        return next((s.get("analysis") or {} for s in status.get("stages") or [] if s["name"] == "test"), {})

    stages.wait_status(lambda s: "AnalysisTemplate stage-errors not found" in analysis_of_test_stage(s).get("message", ""),
                       "the missing template named", timeout=30)
    stages.cluster.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "stage-errors", "namespace": stages.test},
        "spec": {"metrics": [{"name": "errors", "interval": "2s", "count": 1, "consecutiveErrorLimit": 60,
                              "successCondition": "result[0] < 1",
                              "provider": {"prometheus": {"address": prometheus_server.url, "query": query}}}]},
    }, namespace=stages.test, server_side=True)
    stages.wait_status(lambda s: analysis_of_test_stage(s) and "not found" not in analysis_of_test_stage(s).get("message", ""),
                       "the stage's analysis running with the template created after the pipeline", timeout=30)

    def settled_on(image: str) -> str:
        stages.apply(stages.test, app(image, files, 1, "stage"))
        stages.healthy(stages.test, None)
        status = stages.wait_status(
            lambda s: stages.stage(s, "test").get("apps", [{}])[0].get("image") == image
            and any(p["reason"] == "Analyzing" for p in s.get("pending") or []),
            f"{image} in test, waiting for its analysis")
        return str(stages.stage(status, "test")["digest"])

    # Good: the exporter says no errors for this artifact in test → pre takes it by itself.
    good = settled_on("registry.local/shop:v2")
    assert stages.shop(stages.pre)["spec"]["image"] == "registry.local/shop:v1"  # held until the verdict
    prometheus_server.exporter.set(metric, {"namespace": stages.test, "app": "shop", "artifact": good}, 0.0)
    status = stages.wait_status(lambda s: stages.stage(s, "pre").get("lastPromoted") == good, "pre promoted")
    assert stages.stage(status, "test")["analysis"]["phase"] == "Successful"
    assert stages.shop(stages.pre)["spec"]["image"] == "registry.local/shop:v2"

    # Bad: 5 errors → refused, the query's value and the condition in the status, an Event.
    bad = settled_on("registry.local/shop:v3")
    prometheus_server.exporter.set(metric, {"namespace": stages.test, "app": "shop", "artifact": bad}, 5.0)
    status = stages.wait_status(lambda s: [p["reason"] for p in s.get("pending") or []] == ["AnalysisFailed"],
                                "the promotion refused by the analysis")
    (pending,) = status["pending"]
    assert "[5]" in pending["message"] and "result[0] < 1" in pending["message"] and bad in pending["message"]
    refused = status["history"][-1]
    assert (refused["stage"], refused["decision"], refused["by"], refused["digest"]) == ("pre", "Refused",
                                                                                        "analysis", bad)
    events = stages.cluster.get_json("events", "-n", stages.pipelines)["items"]
    assert any(e["reason"] == "AnalysisFailed" and "[5]" in e["message"] for e in events)
    assert stages.shop(stages.pre)["spec"]["image"] == "registry.local/shop:v2"
