"""KWOK as the kubelets' resource-metrics endpoint, with simulated CPU/memory usage per pod.

Both documents come from the pinned KWOK module itself (its kustomize/metrics tree), not
from copies: the `Metric` serving `/metrics/nodes/{nodeName}/metrics/resource` in the
kubelet's format (what metrics-server scrapes), and the `ClusterResourceUsage` that reads
each pod's usage from its annotations. KWOK takes them as an extra `--config` file.

To simulate load, annotate a pod (or its template) with USAGE_CPU_ANNOTATION (a quantity
such as "250m") and/or USAGE_MEMORY_ANNOTATION ("64Mi"); pods without them use 1m / 1Mi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from apprelease_dev.yaml_files import load_documents

# Read by the ClusterResourceUsage below (names fixed by KWOK's usage-from-annotation.yaml).
USAGE_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
USAGE_MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
# metrics-server scrapes a node at this path instead of the kubelet's /metrics/resource.
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
RESOURCE_METRICS_PATH = "/metrics/nodes/{node_name}/metrics/resource"

# Inside the KWOK module: the usage kustomization includes the resource Metric.
_USAGE_DIR = Path("kustomize") / "metrics" / "usage"
_RESOURCE_DIR = Path("kustomize") / "metrics" / "resource"
EXPECTED_KINDS = {"Metric", "ClusterResourceUsage"}


def resource_metrics_path(node_name: str) -> str:
    return RESOURCE_METRICS_PATH.format(node_name=node_name)


def metrics_documents(kwok_module_dir: Path) -> list[dict[str, Any]]:
    """The Metric and ClusterResourceUsage shipped in the KWOK module."""
    documents: list[dict[str, Any]] = []
    for directory in (_USAGE_DIR, _RESOURCE_DIR):
        kustomization = yaml.safe_load(
            (kwok_module_dir / directory / "kustomization.yaml").read_text()
        )
        for resource in kustomization.get("resources") or []:
            path = kwok_module_dir / directory / resource
            if path.suffix in (".yaml", ".yml"):
                documents += load_documents(path)
    kinds = {document.get("kind") for document in documents}
    if kinds != EXPECTED_KINDS:
        raise ValueError(
            f"KWOK module at {kwok_module_dir}: expected {sorted(EXPECTED_KINDS)} in "
            f"{_USAGE_DIR} and {_RESOURCE_DIR}, found {sorted(map(str, kinds))}"
        )
    return documents


def write_metrics_config(path: Path, kwok_module_dir: Path) -> Path:
    """Write KWOK's metrics configuration (a multi-document YAML for `--config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(metrics_documents(kwok_module_dir), sort_keys=False))
    return path
