"""The local cluster's add-ons on the real control plane: Gateway API CRDs from the pinned
module (HTTPRoute weights as a rollout would write them), and metrics.k8s.io served by
metrics-server from KWOK's simulated per-pod usage, driving kube-controller-manager's real
HPA controller against a Deployment and against a custom resource's scale subresource."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apprelease_dev import versions
from apprelease_dev.addons import gateway_api_documents
from apprelease_dev.go_runner import download_modules
from apprelease_dev.kwok_metrics import USAGE_CPU_ANNOTATION, USAGE_MEMORY_ANNOTATION
from apprelease_dev.paths import cache_root
from tests.plugins.cluster import KubeCluster, NotYet, wait_for

pytestmark = pytest.mark.e2e

GATEWAY_API = "gateway.networking.k8s.io"
# Metrics appear after two scrapes (10 s resolution) and the HPA acts every 5 s; a scale
# decision that needs fresh metrics for new pods takes ~20-40 s.
METRICS_TIMEOUT = 90.0
SCALE_TIMEOUT = 150.0
CPU_REQUEST_MILLICORES = 100
TARGET_UTILIZATION = 50
MAX_REPLICAS = 4


# --- Gateway API -------------------------------------------------------------------------


def test_gateway_api_standard_crds_are_established(kube_cluster: KubeCluster) -> None:
    module = download_modules(
        {versions.GATEWAY_API_MODULE: versions.GATEWAY_API_VERSION}, cwd=cache_root()
    )[versions.GATEWAY_API_MODULE]
    shipped = {
        doc["metadata"]["name"]: doc
        for doc in gateway_api_documents(module)
        if doc["kind"] == "CustomResourceDefinition"
    }
    assert {
        f"{plural}.{GATEWAY_API}"
        for plural in ("httproutes", "gateways", "gatewayclasses", "referencegrants", "grpcroutes")
    } <= set(shipped)

    for name, doc in shipped.items():
        crd = kube_cluster.get_json("crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)
        annotations = crd["metadata"]["annotations"]
        assert annotations[f"{GATEWAY_API}/bundle-version"] == versions.GATEWAY_API_VERSION
        assert annotations[f"{GATEWAY_API}/channel"] == "standard"
        served = [version["name"] for version in crd["spec"]["versions"] if version["served"]]
        assert served == [v["name"] for v in doc["spec"]["versions"] if v["served"]], name


def _service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _http_route(stable_weight: int, canary_weight: int) -> dict[str, Any]:
    """What a canary step writes: weighted backends, plus a header that pins the canary."""
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "hostnames": ["web.example.test"],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                    "backendRefs": [{"name": "web-canary", "port": 80}],
                },
                {
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": stable_weight},
                        {"name": "web-canary", "port": 80, "weight": canary_weight},
                    ]
                },
            ],
        },
    }


def _weights(route: dict[str, Any]) -> dict[str, int]:
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][1]["backendRefs"]}


def test_http_route_with_two_weighted_backends(kube_cluster: KubeCluster, namespace: str) -> None:
    gateway_class = {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": f"{namespace}-class"},
        "spec": {"controllerName": "example.test/gateway-controller"},
    }
    gateway = {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "Gateway",
        "metadata": {"name": "edge"},
        "spec": {
            "gatewayClassName": f"{namespace}-class",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
    }
    try:
        kube_cluster.apply(gateway_class)
        kube_cluster.apply(
            gateway,
            _service("web-stable", "web-stable"),
            _service("web-canary", "web-canary"),
            _http_route(90, 10),
            namespace=namespace,
            server_side=True,
        )
        created = kube_cluster.get_json("httproute", "web", "-n", namespace)
        assert _weights(created) == {"web-stable": 90, "web-canary": 10}
        assert created["spec"]["rules"][0]["matches"][0]["headers"][0] == {
            "name": "x-canary",
            "type": "Exact",  # defaulted by the CRD's schema
            "value": "always",
        }

        kube_cluster.apply(_http_route(50, 50), namespace=namespace, server_side=True)

        updated = kube_cluster.get_json("httproute", "web", "-n", namespace)
        assert _weights(updated) == {"web-stable": 50, "web-canary": 50}
        assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1

        # The CRD's validation is in force: weights are bounded (0..1,000,000).
        rejected = kube_cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(_http_route(-1, 101)),
            check=False,
        )
        assert rejected.returncode != 0
        assert "weight" in rejected.stderr, rejected.stderr
    finally:
        kube_cluster.kubectl("delete", "gatewayclass", f"{namespace}-class", check=False)


# --- metrics.k8s.io and the HPA ------------------------------------------------------------


def _deployment(name: str, replicas: int, usage_cpu: str, usage_memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    # KWOK's simulated usage for these pods.
                    "annotations": {
                        USAGE_CPU_ANNOTATION: usage_cpu,
                        USAGE_MEMORY_ANNOTATION: usage_memory,
                    },
                },
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "resources": {
                                "requests": {
                                    "cpu": f"{CPU_REQUEST_MILLICORES}m",
                                    "memory": "128Mi",
                                }
                            },
                        }
                    ]
                },
            },
        },
    }


def _millicores(quantity: str) -> float:
    if quantity.endswith("n"):
        return int(quantity[:-1]) / 1e6
    if quantity.endswith("u"):
        return int(quantity[:-1]) / 1e3
    if quantity.endswith("m"):
        return float(quantity[:-1])
    return float(quantity) * 1000


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def _pod_metrics(kube: KubeCluster, namespace: str) -> dict[str, dict[str, str]]:
    """metrics.k8s.io PodMetrics of the namespace: pod name -> its containers' usage."""
    raw = kube.kubectl(
        "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", check=False
    )
    if raw.returncode != 0:
        return {}
    return {
        item["metadata"]["name"]: item["containers"][0]["usage"]
        for item in json.loads(raw.stdout)["items"]
        if item.get("containers")
    }


def _annotate_usage(kube: KubeCluster, namespace: str, selector: str, cpu: str) -> None:
    """Change the simulated CPU usage of the running pods (as load would)."""
    kube.kubectl(
        "annotate",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        f"{USAGE_CPU_ANNOTATION}={cpu}",
        "--overwrite",
    )


def test_metrics_api_serves_the_simulated_usage(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.apply(_deployment("busy", 2, "250m", "64Mi"), namespace=namespace)

    def both_pods_measured() -> dict[str, dict[str, str]] | NotYet:
        metrics = _pod_metrics(kube_cluster, namespace)
        in_range = {
            name: usage
            for name, usage in metrics.items()
            if 200 <= _millicores(usage["cpu"]) <= 300
        }
        return metrics if len(in_range) == 2 else NotYet(metrics)

    metrics = wait_for(
        both_pods_measured, METRICS_TIMEOUT, interval=1, message="PodMetrics of both pods"
    )
    for usage in metrics.values():
        assert _mebibytes(usage["memory"]) == pytest.approx(64, rel=0.01)

    # `kubectl top`, a client of the same API, shows them.
    top = kube_cluster.kubectl("top", "pods", "-n", namespace, "--no-headers")
    assert sorted(line.split()[0] for line in top.stdout.splitlines()) == sorted(metrics)
    node_metrics = json.loads(
        kube_cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout
    )["items"]
    assert node_metrics, "no NodeMetrics"


def _hpa(name: str, target: dict[str, str], min_replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": min_replicas,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": TARGET_UTILIZATION,
                        },
                    },
                }
            ],
            # The default scale-down window is 5 minutes; a test wants the decision itself.
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 0},
                "scaleUp": {"stabilizationWindowSeconds": 0},
            },
        },
    }


def _hpa_status(kube: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kube.get_json("hpa", name, "-n", namespace).get("status", {})
    return status


def _cpu_utilization_seen(kube: KubeCluster, namespace: str, name: str) -> int | NotYet:
    """The pods' average CPU utilization as the HPA last computed it (an HPA without
    metrics yet reports an empty entry)."""
    status = _hpa_status(kube, namespace, name)
    for metric in status.get("currentMetrics") or []:
        if metric.get("type") == "Resource":
            utilization = metric["resource"]["current"].get("averageUtilization")
            if utilization is not None:
                return int(utilization) or NotYet(status)  # 1m of 100m reads as 1 %
    return NotYet(status)


def _wait_for_replicas(
    kube: KubeCluster,
    namespace: str,
    resource: str,
    name: str,
    expected: int,
    *,
    step: Any = None,
) -> None:
    """Wait until the HPA has set `resource`'s spec.replicas to `expected`; `step` (called
    each poll) plays the controller of a custom resource."""

    def reached() -> bool | NotYet:
        if step is not None:
            step()
        replicas = kube.get_json(resource, name, "-n", namespace)["spec"].get("replicas")
        return (
            True
            if replicas == expected
            else NotYet({"replicas": replicas, "hpa": _hpa_status(kube, namespace, name)})
        )

    wait_for(reached, SCALE_TIMEOUT, interval=1, message=f"{resource}/{name} at {expected}")


def test_hpa_scales_a_deployment_up_and_down_with_simulated_cpu(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.apply(_deployment("web", 1, "1m", "32Mi"), namespace=namespace)
    kube_cluster.apply(
        _hpa("web", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}),
        namespace=namespace,
    )
    wait_for(
        lambda: _cpu_utilization_seen(kube_cluster, namespace, "web"),
        METRICS_TIMEOUT,
        interval=1,
        message="the HPA to read the pods' CPU",
    )

    # 200m on a 100m request: 200% against a 50% target, so 1 x 200/50 = 4 replicas.
    _annotate_usage(kube_cluster, namespace, "app=web", "200m")
    _wait_for_replicas(kube_cluster, namespace, "deployment", "web", MAX_REPLICAS)

    # Load gone: every pod at 10m (10%), so 4 x 10/50 rounds up to 1.
    _annotate_usage(kube_cluster, namespace, "app=web", "10m")
    _wait_for_replicas(kube_cluster, namespace, "deployment", "web", 1)
    status = _hpa_status(kube_cluster, namespace, "web")
    assert status["desiredReplicas"] == 1
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["AbleToScale"] == "True" and conditions["ScalingActive"] == "True"


SCALED_APP_GROUP = "e2e.apprelease.dev"
SCALED_APP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"scaledapps.{SCALED_APP_GROUP}"},
    "spec": {
        "group": SCALED_APP_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "scaledapps", "singular": "scaledapp", "kind": "ScaledApp"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"replicas": {"type": "integer", "minimum": 0}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "replicas": {"type": "integer"},
                                    "selector": {"type": "string"},
                                },
                            },
                        },
                    }
                },
                # The same paths as the AppRelease CRD's scale subresource.
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
            }
        ],
    },
}


def _reconcile_scaled_app(kube: KubeCluster, namespace: str, name: str) -> None:
    """One pass of what an operator does for a scalable resource: its spec.replicas (written
    by the HPA through /scale) goes to the Deployment it owns, and the Deployment's replica
    count and pod selector come back in its status (read by the HPA through /scale)."""
    app = kube.get_json("scaledapp", name, "-n", namespace)
    kube.kubectl(
        "scale", "deployment", name, "-n", namespace, f"--replicas={app['spec']['replicas']}"
    )
    deployment = kube.get_json("deployment", name, "-n", namespace)
    status = {
        "replicas": deployment.get("status", {}).get("replicas", 0),
        "selector": f"app={name}",
    }
    kube.kubectl(
        "patch",
        "scaledapp",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_hpa_scales_a_custom_resource_through_its_scale_subresource(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.apply(SCALED_APP_CRD, server_side=True)
    wait_for(
        lambda: (
            kube_cluster.kubectl("get", "scaledapps", "-n", namespace, check=False).returncode == 0
        ),
        30,
        message="the ScaledApp CRD to be served",
    )
    kube_cluster.apply(
        {
            "apiVersion": f"{SCALED_APP_GROUP}/v1",
            "kind": "ScaledApp",
            "metadata": {"name": "app"},
            "spec": {"replicas": 1},
        },
        _deployment("app", 1, "1m", "32Mi"),
        namespace=namespace,
    )
    _reconcile_scaled_app(kube_cluster, namespace, "app")
    scale = json.loads(
        kube_cluster.kubectl(
            "get",
            "--raw",
            f"/apis/{SCALED_APP_GROUP}/v1/namespaces/{namespace}/scaledapps/app/scale",
        ).stdout
    )
    assert scale["kind"] == "Scale" and scale["status"]["selector"] == "app=app"
    kube_cluster.apply(
        _hpa("app", {"apiVersion": f"{SCALED_APP_GROUP}/v1", "kind": "ScaledApp", "name": "app"}),
        namespace=namespace,
    )

    def hpa_reads_the_pods() -> object:
        _reconcile_scaled_app(kube_cluster, namespace, "app")
        return _cpu_utilization_seen(kube_cluster, namespace, "app")

    # The controller-manager's REST mapper learns new CRDs within ~30 s.
    wait_for(hpa_reads_the_pods, METRICS_TIMEOUT, interval=1, message="the HPA to read /scale")
    assert _hpa_status(kube_cluster, namespace, "app")["currentReplicas"] == 1

    _annotate_usage(kube_cluster, namespace, "app=app", "200m")
    _wait_for_replicas(
        kube_cluster,
        namespace,
        "scaledapp",
        "app",
        MAX_REPLICAS,
        step=lambda: _reconcile_scaled_app(kube_cluster, namespace, "app"),
    )

    _annotate_usage(kube_cluster, namespace, "app=app", "10m")
    _wait_for_replicas(
        kube_cluster,
        namespace,
        "scaledapp",
        "app",
        1,
        step=lambda: _reconcile_scaled_app(kube_cluster, namespace, "app"),
    )
