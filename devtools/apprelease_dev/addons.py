"""Cluster add-ons applied once the apiserver answers: the Gateway API CRDs and the API
objects that make metrics-server (a process on 127.0.0.1) serve metrics.k8s.io.

Every manifest is read from its pinned Go module (the module cache is the cache): what the
projects ship, listed by their own kustomization.yaml, so a version bump needs no edit here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apprelease_dev import versions
from apprelease_dev.components import LOOPBACK
from apprelease_dev.yaml_files import load_documents

GATEWAY_API_CRDS_DIR = Path("config") / "crd"
GATEWAY_API_CHANNEL = "standard"
METRICS_SERVER_MANIFESTS_DIR = Path("manifests") / "base"
METRICS_SERVER_NAMESPACE = "kube-system"
METRICS_SERVER_SERVICE = "metrics-server"
METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"
# metrics-server runs as a process here, not as this Deployment.
_NOT_APPLIED_KINDS = {"Deployment"}


@dataclass(frozen=True)
class ModuleDirs:
    """Extracted module directories (go_runner.download_modules) the add-ons read from."""

    gateway_api: Path
    kwok: Path
    metrics_server: Path


def addon_modules() -> dict[str, str]:
    return {
        versions.GATEWAY_API_MODULE: versions.GATEWAY_API_VERSION,
        versions.KWOK_MODULE: versions.KWOK_VERSION,
        versions.METRICS_SERVER_MODULE: versions.METRICS_SERVER_VERSION,
    }


def module_dirs_from(found: dict[str, Path]) -> ModuleDirs:
    return ModuleDirs(
        gateway_api=found[versions.GATEWAY_API_MODULE],
        kwok=found[versions.KWOK_MODULE],
        metrics_server=found[versions.METRICS_SERVER_MODULE],
    )


def kustomization_documents(directory: Path, *, prefix: str = "") -> list[dict[str, Any]]:
    """Documents of the files a kustomization.yaml lists (only plain file resources, optionally
    only those under `prefix`), in its order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    common_labels = kustomization.get("commonLabels") or {}
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources") or []:
        if not resource.startswith(prefix):
            continue
        path = directory / resource
        if not path.is_file():
            raise ValueError(f"{directory}/kustomization.yaml lists {resource}, not a file")
        documents += load_documents(path)
    for document in documents:
        labels = document["metadata"].setdefault("labels", {})
        labels.update(common_labels)
    return documents


def gateway_api_documents(gateway_api_dir: Path) -> list[dict[str, Any]]:
    """The standard channel: CRDs (GatewayClass, Gateway, HTTPRoute, GRPCRoute,
    ReferenceGrant, ...) and the ValidatingAdmissionPolicy guarding upgrades."""
    documents = kustomization_documents(
        gateway_api_dir / GATEWAY_API_CRDS_DIR, prefix=f"{GATEWAY_API_CHANNEL}/"
    )
    if not any(doc.get("kind") == "CustomResourceDefinition" for doc in documents):
        raise ValueError(f"no CRDs found in {gateway_api_dir / GATEWAY_API_CRDS_DIR}")
    return documents


PROMETHEUS_OPERATOR_CRDS_DIR = Path("example") / "prometheus-operator-crd"


def prometheus_operator_crds(module_dir: Path, kinds: Iterable[str]) -> list[dict[str, Any]]:
    """The monitoring.coreos.com CRDs of these kinds (ServiceMonitor, PrometheusRule), as the
    pinned prometheus-operator ships them; not applied by `dev up` (charts' tests use them)."""
    documents = []
    for kind in kinds:
        path = module_dir / PROMETHEUS_OPERATOR_CRDS_DIR / f"monitoring.coreos.com_{kind.lower()}s.yaml"
        documents += load_documents(path)
    return documents


def crd_names(documents: Iterable[dict[str, Any]]) -> list[str]:
    return [
        doc["metadata"]["name"]
        for doc in documents
        if doc.get("kind") == "CustomResourceDefinition"
    ]


def metrics_server_documents(
    metrics_server_dir: Path, *, port: int, ca_cert: Path
) -> list[dict[str, Any]]:
    """metrics-server's own RBAC, Service and APIService, pointed at 127.0.0.1:`port`.

    There is no Service network here: the Service becomes an ExternalName of 127.0.0.1 (as
    kwokctl does), which the aggregator resolves to that address and the APIService's port;
    TLS is verified against our CA (the serving cert names the Service's DNS name).
    """
    documents = []
    for document in kustomization_documents(metrics_server_dir / METRICS_SERVER_MANIFESTS_DIR):
        kind = document.get("kind")
        if kind in _NOT_APPLIED_KINDS:
            continue
        if kind == "Service" and document["metadata"]["name"] == METRICS_SERVER_SERVICE:
            document["spec"] = {"type": "ExternalName", "externalName": LOOPBACK}
        elif kind == "APIService" and document["metadata"]["name"] == METRICS_API_SERVICE:
            spec = document["spec"]
            spec.pop("insecureSkipTLSVerify", None)
            spec["service"]["port"] = port
            spec["caBundle"] = base64.b64encode(ca_cert.read_bytes()).decode("ascii")
        documents.append(document)
    kinds = {document["kind"] for document in documents}
    if not {"APIService", "Service", "ClusterRole"} <= kinds:
        raise ValueError(f"unexpected metrics-server manifests in {metrics_server_dir}: {kinds}")
    return documents
