"""Pinned versions of the local control plane, in one place.

Bumping a version here changes the binaries' cache key, so the next `dev up` rebuilds.
"""

from __future__ import annotations

# The Kubernetes release whose kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl we build from source.
KUBERNETES_VERSION = "v1.36.1"
# KWOK simulates nodes and pod lifecycles (no kubelet, no containers).
KWOK_VERSION = "v0.8.0"
# etcd server, built from the same Go module graph as Kubernetes.
ETCD_VERSION = "v3.6.8"

# Helm, to render and check our chart; v4.2.4 uses the same k8s.io v0.36.1 libraries.
HELM_VERSION = "v4.2.4"
# metrics-server serves metrics.k8s.io (kubectl top, the HPA controller) from KWOK's simulated
# kubelet resource metrics; built in the same wrapper module against the k8s.io v0.36 libraries.
METRICS_SERVER_VERSION = "v0.8.0"
# Gateway API: only its CRD manifests are used (read from the module, nothing is compiled).
# v1.7.0 needs a newer Go than the machines have (Go 1.26).
GATEWAY_API_VERSION = "v1.6.3"
# prometheus-operator: only its ServiceMonitor and PrometheusRule CRDs, read from the module,
# so the chart's monitoring objects are validated by the apiserver against their schemas.
PROMETHEUS_OPERATOR_VERSION = "v0.81.0"
# Prometheus itself (the analysis tests' metrics server): its Go module is tagged v0.<major*100
# + minor>.<patch> for Prometheus <major>.<minor>.<patch> (v0.316.0 is Prometheus 3.16.0).
PROMETHEUS_VERSION = "v0.316.0"

KUBERNETES_MODULE = "k8s.io/kubernetes"
HELM_MODULE = "helm.sh/helm/v4"
KWOK_MODULE = "sigs.k8s.io/kwok"
ETCD_SERVER_MODULE = "go.etcd.io/etcd/server/v3"
METRICS_SERVER_MODULE = "sigs.k8s.io/metrics-server"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"


def staging_version(kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """k8s.io/<staging> modules are tagged v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes_version!r}")
    return f"v0.{minor}.{patch}"


def binaries_key() -> str:
    """Name of the cache directory holding binaries built from exactly these versions."""
    return (
        f"{KUBERNETES_VERSION}-kwok-{KWOK_VERSION}-etcd-{ETCD_VERSION}-helm-{HELM_VERSION}"
        f"-metrics-server-{METRICS_SERVER_VERSION}"
    )


def prometheus_release(module_version: str = PROMETHEUS_VERSION) -> str:
    """Prometheus' own version for its Go module's tag: v0.316.0 → 3.16.0 (3.x modules are
    tagged v0.3xx.y because the module path has no /v3)."""
    major, minor, patch = module_version.lstrip("v").split(".")
    if major != "0" or len(minor) < 3:
        raise ValueError(f"unexpected Prometheus module version {module_version!r}")
    return f"{int(minor) // 100}.{int(minor) % 100}.{patch}"
