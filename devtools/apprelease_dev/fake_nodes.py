"""Node objects for KWOK to manage: we register them, KWOK plays their kubelets."""

from __future__ import annotations

from typing import Any

from apprelease_dev import versions
from apprelease_dev.kwok_metrics import RESOURCE_METRICS_PATH_ANNOTATION, resource_metrics_path

# KWOK manages exactly the nodes carrying this annotation (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
KWOK_NODE_SELECTOR = f"{KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}"
NODE_TYPE_LABEL = "type"
NODE_TYPE = "kwok"
NODE_NAME_PREFIX = "kwok-node-"
ZONES = ("zone-a", "zone-b", "zone-c")
# Pod IPs come from each node's podCIDR; they are status data only, nothing routes them.
POD_CIDR_TEMPLATE = "10.244.{index}.0/24"

# Generous, so scheduling never fails for capacity in tests (pods: the kubelet default is 110).
NODE_CAPACITY: dict[str, str] = {
    "cpu": "32",
    "memory": "256Gi",
    "pods": "250",
    "ephemeral-storage": "1Ti",
}


def node_name(index: int) -> str:
    return f"{NODE_NAME_PREFIX}{index}"


def node_manifest(index: int) -> dict[str, Any]:
    name = node_name(index)
    pod_cidr = POD_CIDR_TEMPLATE.format(index=index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
                # Where metrics-server finds this node's resource metrics on KWOK's server.
                RESOURCE_METRICS_PATH_ANNOTATION: resource_metrics_path(name),
            },
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": ZONES[index % len(ZONES)],
                NODE_TYPE_LABEL: NODE_TYPE,
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        # Created with status so KWOK's node-initialize stage keeps these values.
        "status": {
            "capacity": dict(NODE_CAPACITY),
            "allocatable": dict(NODE_CAPACITY),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": versions.KUBERNETES_VERSION,
                "kubeProxyVersion": versions.KUBERNETES_VERSION,
                "containerRuntimeVersion": f"kwok://{versions.KWOK_VERSION}",
            },
        },
    }
