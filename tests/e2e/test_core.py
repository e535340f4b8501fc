"""The core reconcile loop on the real control plane: children, ownership, rollout, drift,
garbage collection, scale subresource, stalled specs, idleness."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from apprelease.controller.reconciler import STATUS_COALESCE_SECONDS
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import (
    AppReleases,
    OperatorProcess,
    hold_still,
    other_namespaces_gone,
    settled,
)
from tests.support import EXAMPLE, load_yaml

pytestmark = pytest.mark.e2e


def example(**spec: Any) -> dict[str, Any]:
    body = load_yaml(EXAMPLE)
    # The e2e Nacos tests cover the registry; here the example runs without one.
    body["spec"].pop("registry")
    body["spec"].update(spec)
    return body


def rolling_app(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": name},
        "spec": {"image": "registry.local/web:v1", "replicas": 2, "port": 8080, **spec},
    }


def children(arl: AppReleases, name: str) -> dict[str, list[dict]]:
    selector = f"app.kubernetes.io/instance={name}"
    found = {}
    for kind in ("deployments", "services", "ingresses", "configmaps", "controllerrevisions"):
        found[kind] = arl.kubectl_json(kind, "-l", selector)["items"]
    return found


def test_example_creates_four_owned_children_that_become_ready(arl: AppReleases) -> None:
    arl.apply(example())
    status = arl.wait_phase("order-service", "Healthy", timeout=90)
    assert status["readyReplicas"] == 3
    assert status["ready"] == "3/3"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Reconciling"]["status"] == "False"

    owner_uid = arl.get("order-service")["metadata"]["uid"]
    found = children(arl, "order-service")
    assert [d["metadata"]["name"] for d in found["deployments"]] == ["order-service"]
    assert [s["metadata"]["name"] for s in found["services"]] == ["order-service"]
    assert [i["metadata"]["name"] for i in found["ingresses"]] == ["order-service"]
    assert len(found["configmaps"]) == 1 and found["configmaps"][0]["immutable"] is True
    for kind in ("deployments", "services", "ingresses", "configmaps", "controllerrevisions"):
        for obj in found[kind]:
            refs = obj["metadata"]["ownerReferences"]
            assert refs[0]["uid"] == owner_uid and refs[0]["controller"] is True, kind

    deployment = found["deployments"][0]
    assert deployment["status"]["readyReplicas"] == 3  # from the real deployment controller
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "harbor.company.com/order/order-service:20250920v1"
    assert {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "order-service-secret", "key": "db-password"}},
    } in container["env"]
    service = found["services"][0]
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = found["ingresses"][0]
    assert ingress["spec"]["rules"][0]["host"] == "order.company.com"
    pods = arl.kubectl_json("pods", "-l", "app.kubernetes.io/instance=order-service")["items"]
    assert len(pods) == 3
    assert all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        for p in pods
    )


def test_image_change_rolls_out_with_a_real_rolling_update(arl: AppReleases) -> None:
    arl.apply(rolling_app(replicas=3))
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.patch("web", {"spec": {"image": "registry.local/web:v2"}})
    status = arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)
    assert status["currentRevision"] == 2
    deployment = arl.kubectl_json("deployment", "web")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/web:v2"
    )
    assert deployment["status"]["updatedReplicas"] == 3
    pods = arl.kubectl_json("pods", "-l", "app.kubernetes.io/instance=web")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in live} == {"registry.local/web:v2"}
    reasons = [e["reason"] for e in arl.events("web")]
    assert "RolloutStarted" in reasons


def test_recreate_strategy(arl: AppReleases) -> None:
    arl.apply(rolling_app(strategy={"recreate": {}}))
    arl.wait_phase("web", "Healthy", timeout=60)
    assert arl.kubectl_json("deployment", "web")["spec"]["strategy"]["type"] == "Recreate"
    arl.patch("web", {"spec": {"image": "registry.local/web:v2"}})
    arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)


def test_delete_garbage_collects_children(arl: AppReleases, kube_cluster: KubeCluster) -> None:
    arl.apply(example())
    arl.wait_phase("order-service", "Healthy", timeout=90)
    kube_cluster.kubectl("delete", "appreleases", "order-service", "-n", arl.namespace)

    def gone() -> bool:
        left = [o for v in children(arl, "order-service").values() for o in v]
        pods = arl.kubectl_json("pods", "-l", "app.kubernetes.io/instance=order-service")["items"]
        return not left and not pods

    wait_for(gone, 90, 0.5, "children garbage-collected")


def test_drift_on_owned_fields_is_reverted(arl: AppReleases) -> None:
    arl.apply(rolling_app())
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.cluster.kubectl("set", "image", "deployment/web", "web=evil:latest", "-n", arl.namespace)
    arl.patch(
        "web",
        {"spec": {"ports": [{"port": 9999, "targetPort": 9999, "name": "x"}]}},
        kind="service",
    )

    def reverted() -> bool | str:
        dep = arl.kubectl_json("deployment", "web")
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        svc_ports = [p["port"] for p in arl.kubectl_json("service", "web")["spec"]["ports"]]
        return (
            True
            if image == "registry.local/web:v1" and 9999 not in svc_ports
            else f"{image} {svc_ports}"
        )

    wait_for(reverted, 30, 0.3, "drift reverted")


def test_fields_owned_by_others_are_left_alone(arl: AppReleases) -> None:
    arl.apply(rolling_app())
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.cluster.kubectl(
        "annotate", "deployment/web", "team.example.com/owner=payments", "-n", arl.namespace
    )
    arl.cluster.kubectl("label", "service/web", "cost-center=42", "-n", arl.namespace)
    # A spec change makes the operator apply again; the other manager's fields must stay.
    arl.patch("web", {"spec": {"env": [{"name": "LOG_LEVEL", "value": "debug"}]}})
    arl.wait_phase("web", "Healthy", timeout=90, stableRevision=2)
    dep = arl.kubectl_json("deployment", "web")
    assert dep["metadata"]["annotations"]["team.example.com/owner"] == "payments"
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "LOG_LEVEL", "value": "debug"}
    ]
    assert arl.kubectl_json("service", "web")["metadata"]["labels"]["cost-center"] == "42"
    managed = arl.kubectl_json("deployment", "web", "--show-managed-fields")["metadata"]["managedFields"]
    managers = {m["manager"] for m in managed}
    assert "apprelease" in managers and len(managers) >= 2


def test_removing_the_ingress_prunes_it(arl: AppReleases) -> None:
    arl.apply(rolling_app(ingress={"host": "web.example.com"}))
    arl.wait_phase("web", "Healthy", timeout=60)
    assert arl.kubectl_json("ingress", "web")["spec"]["rules"][0]["host"] == "web.example.com"
    body = rolling_app()
    arl.apply(body)  # server-side apply of the file without ingress removes spec.ingress

    def pruned() -> bool:
        return not arl.kubectl_json("ingresses", "-l", "app.kubernetes.io/instance=web")["items"]

    wait_for(pruned, 30, 0.3, "ingress pruned")


def test_scale_subresource_drives_replicas(arl: AppReleases) -> None:
    arl.apply(rolling_app())
    arl.wait_phase("web", "Healthy", timeout=60)
    arl.cluster.kubectl("scale", "appreleases/web", "--replicas=4", "-n", arl.namespace)
    status = arl.wait_phase("web", "Healthy", timeout=60, readyReplicas=4)
    assert status["replicas"] == 4
    scale = json.loads(
        arl.cluster.kubectl(
            "get",
            "--raw",
            f"/apis/apprelease.io/v1alpha1/namespaces/{arl.namespace}/appreleases/web/scale",
        ).stdout
    )
    assert scale["status"]["replicas"] == 4
    assert "app.kubernetes.io/instance=web" in scale["status"]["selector"]


def test_unreconcilable_spec_is_stalled_with_the_apiserver_reason_then_recovers(
    arl: AppReleases,
) -> None:
    # Passes admission (podTemplate is free-form) but the apiserver rejects the Deployment.
    arl.apply(rolling_app(podTemplate={"spec": {"restartPolicy": "Never"}}))
    status = arl.wait(
        "web",
        lambda s: any(
            c["type"] == "Stalled" and c["status"] == "True" for c in s.get("conditions", [])
        ),
        timeout=60,
        what="Stalled=True",
    )
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "ChildRejected"
    assert "restartPolicy" in stalled["message"]
    assert status["phase"] == "Degraded" and status["failure"]["reason"] == "ChildRejected"
    events = [e for e in arl.events("web") if e["reason"] == "ChildRejected"]
    assert events and events[0]["type"] == "Warning"
    arl.patch("web", {"spec": {"podTemplate": None}})
    arl.wait_phase("web", "Healthy", timeout=60)


def test_bad_app_does_not_affect_others(arl: AppReleases) -> None:
    arl.apply(rolling_app("broken", podTemplate={"spec": {"restartPolicy": "Never"}}))
    arl.apply(rolling_app("fine"))
    arl.wait_phase("fine", "Healthy", timeout=60)
    arl.wait_phase("broken", "Degraded", timeout=60)


def test_converged_operator_makes_no_writes(arl: AppReleases, operator: OperatorProcess) -> None:
    other_namespaces_gone(arl.cluster, arl.namespace)
    for name in ("idle-a", "idle-b", "idle-c"):
        arl.apply(rolling_app(name))
    for name in ("idle-a", "idle-b", "idle-c"):
        arl.wait_phase(name, "Healthy", timeout=60)
    # Let trailing watch events settle: writes stop changing.
    settled(operator.writes_by_kind, STATUS_COALESCE_SECONDS + 1, timeout=60)
    hold_still(operator.writes_by_kind, 15)


def test_restart_makes_no_writes(arl: AppReleases, operator: OperatorProcess) -> None:
    other_namespaces_gone(arl.cluster, arl.namespace)
    arl.apply(rolling_app("restart-a"))
    arl.wait_phase("restart-a", "Healthy", timeout=60)
    # A coalesced count-only write may still be due; restart from a settled status.
    before = copy.deepcopy(settled(lambda: arl.status("restart-a"), STATUS_COALESCE_SECONDS + 1, timeout=30))
    operator.restart()
    wait_for(
        lambda: operator.metrics().get("apprelease_reconcile_total{result=ok}", 0) >= 1,
        30,
        0.2,
        "a reconcile after restart",
    )
    hold_still(operator.writes_by_kind, 5)
    assert operator.writes_by_kind() == {}
    assert arl.status("restart-a") == before


def test_metrics_cover_reconciles_phases_and_api_requests(arl: AppReleases, operator: OperatorProcess) -> None:
    arl.apply(rolling_app("metrics-a"))
    arl.wait_phase("metrics-a", "Healthy", timeout=60)
    metrics = operator.metrics()
    assert metrics.get("apprelease_reconcile_total{result=ok}", 0) >= 1
    assert any(k.startswith("apprelease_reconcile_duration_seconds_bucket{") for k in metrics)
    assert metrics.get("apprelease_appreleases{phase=Healthy}", 0) >= 1
    assert any("resource=Deployment" in k and "verb=patch" in k for k in metrics)


def test_namespaced_operator_ignores_other_namespaces(
    arl: AppReleases, operator: OperatorProcess, kube_cluster: KubeCluster
) -> None:
    other = f"{arl.namespace}-x"
    kube_cluster.kubectl("create", "namespace", other)
    try:
        with operator.replaced_by(kube_cluster.kubeconfig, extra_args=("--namespace", arl.namespace)):
            arl.apply(rolling_app("mine"))
            body = rolling_app("theirs")
            body["metadata"]["namespace"] = other
            kube_cluster.apply(body, server_side=True)
            arl.wait_phase("mine", "Healthy", timeout=60)
            hold_still(lambda: kube_cluster.get_json("appreleases", "theirs", "-n", other).get("status"), 3)
            assert not kube_cluster.get_json("appreleases", "theirs", "-n", other).get("status")
    finally:
        kube_cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
