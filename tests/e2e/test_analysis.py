"""Analysis steps on the real control plane with a real Prometheus: a canary that passes and
promotes by itself, one that fails and aborts with the value in status, Prometheus stopped
mid-analysis (inconclusive, paused with the reason, then promoted), and a web hook gate."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import yaml

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess, other_namespaces_gone

pytestmark = pytest.mark.e2e

METRIC = "canary_error_ratio"


def template(name: str, provider: dict[str, Any], **metric: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": [{"name": "errors", "interval": "2s", "count": 2, "consecutiveErrorLimit": 30,
                              "provider": provider, **metric}]},
    }


def prometheus_template(address: str, **metric: Any) -> dict[str, Any]:
    # Revision hashes depend on the pod template only: the same image in two namespaces has the
    # same hash, so the query selects the app too (as a real template would).
    query = METRIC + '{namespace="{{args.namespace}}", app="{{args.app}}", revision_hash="{{args.canary-hash}}"}'
    return template("error-rate", {"prometheus": {"address": address, "query": query}},
                    successCondition="result[0] < 0.01", **metric)


def app_with_analysis(name: str, template_name: str = "error-rate") -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.local/shop:v1", "replicas": 2, "port": 8080,
            "strategy": {"canary": {"steps": [
                {"setWeight": 50}, {"analysis": {"templates": [{"templateName": template_name}]}}]}},
        },
    }


def start_canary(arl: AppReleases, kube_cluster: KubeCluster, app: dict[str, Any], *templates: dict[str, Any]) -> str:
    for body in templates:
        kube_cluster.apply({**body, "metadata": {**body["metadata"], "namespace": arl.namespace}},
                           namespace=arl.namespace, server_side=True)
    name = app["metadata"]["name"]
    arl.apply(app)
    arl.wait_phase(name, "Healthy", timeout=60, stableRevision=1)
    arl.patch(name, {"spec": {"image": "registry.local/shop:v2"}})
    status = arl.wait(name, lambda s: s.get("currentStepIndex") == 1 and s.get("canaryRevisionHash"), 60,
                      "the canary at its analysis step")
    return str(status["canaryRevisionHash"])


def series(arl: AppReleases, app: str, revision_hash: str) -> dict[str, str]:
    return {"namespace": arl.namespace, "app": app, "revision_hash": revision_hash}


def reasons(arl: AppReleases, name: str) -> list[str]:
    return [e["reason"] for e in arl.events(name)]


def test_a_canary_that_passes_its_analysis_promotes_by_itself(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    hash_ = start_canary(arl, kube_cluster, app_with_analysis("passes"), prometheus_template(prometheus_server.url))
    prometheus_server.exporter.set(METRIC, series(arl, "passes", hash_), 0.001)
    status = arl.wait_phase("passes", "Healthy", timeout=90, stableRevision=2)
    assert status.get("analysis") is None  # the run ended with the rollout
    assert "AnalysisSuccessful" in reasons(arl, "passes")


def test_a_canary_that_fails_its_analysis_aborts_with_the_value_in_status(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    hash_ = start_canary(arl, kube_cluster, app_with_analysis("fails"), prometheus_template(prometheus_server.url))
    prometheus_server.exporter.set(METRIC, series(arl, "fails", hash_), 0.5)
    status = arl.wait("fails", lambda s: s.get("aborted"), 90, "the canary aborted")
    assert status["abortReason"] == "AnalysisFailed"
    assert "[0.5]" in status["abortMessage"] and "result[0] < 0.01" in status["abortMessage"]
    assert f'revision_hash="{hash_}"' in status["abortMessage"]
    measurements = status["analysis"]["step"]["metrics"][0]["measurements"]
    assert measurements[-1]["value"] == "[0.5]" and measurements[-1]["phase"] == "Failed"
    assert status["stableRevision"] == 1
    shown = arl.cli("get", "fails").stdout
    assert "Analysis:" in shown and "[0.5]" in shown


def test_prometheus_down_mid_analysis_pauses_then_promote_resumes(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    # Selected by app here, so that the value is scraped before the first measurement: every
    # error in this test is the outage's.
    by_app = METRIC + "_by_app"
    query = by_app + '{namespace="{{args.namespace}}", app="{{args.app}}"}'
    prometheus_server.exporter.set(by_app, {"namespace": arl.namespace, "app": "outage"}, 0.001)
    prometheus_server.wait_for_value(by_app + f'{{namespace="{arl.namespace}", app="outage"}}',
                                     lambda values: values == (0.001,))
    body = template("error-rate", {"prometheus": {"address": prometheus_server.url, "query": query}},
                    successCondition="result[0] < 0.01", count=1000, consecutiveErrorLimit=1, interval="1s")
    start_canary(arl, kube_cluster, app_with_analysis("outage"), body)
    arl.wait("outage", lambda s: (((s.get("analysis") or {}).get("step") or {}).get("metrics") or [{}])[0]
             .get("successful", 0) >= 1, 60, "a successful measurement")
    prometheus_server.stop()
    try:
        status = arl.wait_phase("outage", "Paused", timeout=60)
        paused = next(c for c in status["conditions"] if c["type"] == "Paused")
        assert paused["reason"] == "AnalysisInconclusive"
        assert "analysis inconclusive" in status["message"] and "errors in a row" in status["message"]
        assert not status.get("aborted") and status["stableRevision"] == 1
        assert "AnalysisInconclusive" in reasons(arl, "outage")
    finally:
        prometheus_server.start()
    arl.cli("promote", "outage")
    arl.wait_phase("outage", "Healthy", timeout=60, stableRevision=2)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    answer = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).answer)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web_hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "answer": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/gate", handler
    server.shutdown()


def test_a_web_hook_gates_the_step(arl: AppReleases, kube_cluster: KubeCluster,
                                   web_hook: tuple[str, type[_Hook]]) -> None:
    url, hook = web_hook
    gate = template("gate", {"web": {"url": url, "timeoutSeconds": 5}}, count=2)
    hash_ = start_canary(arl, kube_cluster, app_with_analysis("hooked", "gate"), gate)
    arl.wait_phase("hooked", "Healthy", timeout=60, stableRevision=2)
    assert len(hook.received) == 2  # count 2: asked twice, then passed
    payload = hook.received[0]
    assert payload["name"] == "hooked" and payload["namespace"] == arl.namespace
    assert payload["canaryHash"] == hash_ and payload["phase"] == "analysis"
    assert "AnalysisSuccessful" in reasons(arl, "hooked")


def test_a_refusing_web_hook_aborts(arl: AppReleases, kube_cluster: KubeCluster,
                                    web_hook: tuple[str, type[_Hook]]) -> None:
    url, hook = web_hook
    hook.answer = 403  # the hook's "no" (a 5xx or 429 is no answer yet: retried, then an Error)
    gate = template("gate", {"web": {"url": url, "timeoutSeconds": 5}}, count=1)
    start_canary(arl, kube_cluster, app_with_analysis("refused", "gate"), gate)
    status = arl.wait("refused", lambda s: s.get("aborted"), 60, "the canary aborted")
    assert status["abortReason"] == "AnalysisFailed" and url.removesuffix("/gate") + "/..." in status["abortMessage"]
    assert "the web hook did not pass: HTTP 403: ok" in status["abortMessage"]
    assert len(hook.received) == 1  # an answer is never asked for twice


def test_a_missing_template_and_a_refused_address_are_verdicts_naming_the_field(
        arl: AppReleases, kube_cluster: KubeCluster) -> None:
    start_canary(arl, kube_cluster, app_with_analysis("nameless", "no-such-template"))
    status = arl.wait("nameless", lambda s: (s.get("failure") or {}).get("reason") == "AnalysisInvalid", 60,
                      "the missing template named")
    assert ("spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate no-such-template not found"
            in status["failure"]["message"])
    # A cloud metadata address: refused whatever the networks allowed.
    metadata = prometheus_template("http://169.254.169.254:9090")
    start_canary(arl, kube_cluster, app_with_analysis("metadata"), metadata)
    status = arl.wait("metadata", lambda s: (s.get("failure") or {}).get("reason") == "PolicyViolation", 60,
                      "the refused address named")
    assert "AnalysisTemplate error-rate spec.metrics[0].provider.prometheus.address" in status["failure"]["message"]
    assert status["stableRevision"] == 1 and not status.get("aborted")


def test_background_analysis_aborts_a_canary_paused_at_a_step(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    app = app_with_analysis("background")
    app["spec"]["strategy"]["canary"] = {
        "steps": [{"setWeight": 50}, {"pause": {}}],
        "analysis": {"templates": [{"templateName": "error-rate"}], "startingStep": 1},
    }
    endless = prometheus_template(prometheus_server.url)
    del endless["spec"]["metrics"][0]["count"]  # background: measured until the promotion
    hash_ = start_canary(arl, kube_cluster, app, endless)
    arl.wait_phase("background", "Paused", timeout=60, currentStepIndex=1)
    prometheus_server.exporter.set(METRIC, series(arl, "background", hash_), 0.001)
    arl.wait("background", lambda s: (((s.get("analysis") or {}).get("background") or {}).get("metrics") or [{}])[0]
             .get("successful", 0) >= 2, 60, "background measurements passing")
    prometheus_server.exporter.set(METRIC, series(arl, "background", hash_), 0.7)
    status = arl.wait("background", lambda s: s.get("aborted"), 60, "the canary aborted")
    assert status["abortReason"] == "AnalysisFailed" and "background analysis" in status["abortMessage"]
    assert "[0.7]" in status["abortMessage"]


def start_blue_green(arl: AppReleases, kube_cluster: KubeCluster, name: str, gate: str, address: str) -> None:
    """A blue-green app with ``gate`` (prePromotionAnalysis or postPromotionAnalysis) running
    the error-rate template, at revision 1, then given revision 2."""
    app = app_with_analysis(name)
    app["spec"]["strategy"] = {"blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 0,
                                             gate: {"templates": [{"templateName": "error-rate"}]}}}
    body = prometheus_template(address)
    kube_cluster.apply({**body, "metadata": {**body["metadata"], "namespace": arl.namespace}},
                       namespace=arl.namespace, server_side=True)
    arl.apply(app)
    arl.wait_phase(name, "Healthy", timeout=60, stableRevision=1)
    arl.patch(name, {"spec": {"image": "registry.local/shop:v2"}})


def test_blue_green_switches_after_its_pre_promotion_analysis(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    start_blue_green(arl, kube_cluster, "bluegreen", "prePromotionAnalysis", prometheus_server.url)
    status = arl.wait("bluegreen", lambda s: "prePromotionAnalysis running" in s.get("message", ""), 60,
                      "the preview analysed")
    assert status["stableRevision"] == 1
    prometheus_server.exporter.set(METRIC, series(arl, "bluegreen", status["canaryRevisionHash"]), 0.001)
    arl.wait_phase("bluegreen", "Healthy", timeout=90, stableRevision=2)
    assert "AnalysisSuccessful" in reasons(arl, "bluegreen")


def test_a_running_analysis_writes_status_once_per_measurement(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any, operator: OperatorProcess) -> None:
    other_namespaces_gone(arl.cluster, arl.namespace)  # their writes would count too
    long_run = prometheus_template(prometheus_server.url, count=1000)
    hash_ = start_canary(arl, kube_cluster, app_with_analysis("writes"), long_run)
    prometheus_server.exporter.set(METRIC, series(arl, "writes", hash_), 0.001)

    def measured() -> int:
        metrics = ((arl.status("writes").get("analysis") or {}).get("step") or {}).get("metrics") or [{}]
        return int(metrics[0].get("count", 0))

    arl.wait("writes", lambda s: measured() >= 2, 60, "measurements under way")
    writes, count = operator.writes(), measured()
    arl.wait("writes", lambda s: measured() >= count + 4, 60, "four more measurements")
    more_writes, more_count = operator.writes(), measured()
    # One status write per measurement (a write may land just after the count was read).
    assert 1 <= more_writes - writes <= more_count - count + 1, operator.writes_by_kind()


def test_a_failed_post_promotion_analysis_switches_traffic_back(
        arl: AppReleases, kube_cluster: KubeCluster, prometheus_server: Any) -> None:
    from tests.e2e.test_bluegreen import selector

    start_blue_green(arl, kube_cluster, "after", "postPromotionAnalysis", prometheus_server.url)
    status = arl.wait("after", lambda s: "postPromotionAnalysis running" in s.get("message", ""), 60,
                      "the switched revision analysed")
    assert selector(arl, "after") == "2"  # switched; the old pods stay meanwhile
    prometheus_server.exporter.set(METRIC, series(arl, "after", status["canaryRevisionHash"]), 0.5)
    status = arl.wait("after", lambda s: s.get("aborted"), 60, "switched back")
    assert status["abortReason"] == "AnalysisFailed" and "[0.5]" in status["abortMessage"]
    assert selector(arl, "after") == "stable" and status["stableRevision"] == 1


@pytest.mark.parametrize(("metric", "message"), [
    ({"provider": {"prometheus": {"address": "http://prom:9090", "query": "up"}}},
     "spec.metrics[0].successCondition: Invalid value: a prometheus metric needs successCondition"),
    ({"successCondition": "result[0] < 1", "provider": {}}, "a provider is exactly one of prometheus, web"),
    ({"successCondition": "result[0] < 1", "interval": "5 minutes",
      "provider": {"web": {"url": "http://hook:8080/"}}}, "spec.metrics[0].interval"),
])
def test_invalid_templates_are_rejected_at_admission_naming_the_field(
        kube_cluster: KubeCluster, crd: None, namespace: str, metric: dict[str, Any], message: str) -> None:
    def established() -> bool:  # the crd fixture waits for the AppRelease CRD only
        found = kube_cluster.get_json("crd", "analysistemplates.apprelease.io")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (found.get("status") or {}).get("conditions") or [])

    wait_for(established, 60, message="the AnalysisTemplate CRD to be Established")
    body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "bad", "namespace": namespace},
            "spec": {"metrics": [{"name": "errors", **metric}]}}
    result = kube_cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                                  input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
