"""The local control plane behaves like a real cluster where our operator needs it to:
real controllers (deployment, endpointslice, garbage collector), real scheduling onto
KWOK nodes, and the pod behaviours our KWOK stages simulate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from apprelease_dev.build import bin_dir
from apprelease_dev.components import COMPONENTS
from apprelease_dev.fake_nodes import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE
from apprelease_dev.kwok_stages import (
    BEHAVIOR_LABEL,
    BEHAVIOR_NOT_READY,
    BEHAVIOR_SLOW_READY,
    READY_AFTER_ANNOTATION,
    RESTART_INTERVAL_ANNOTATION,
)
from apprelease_dev.processes import ProcessIdentity, is_running
from tests.plugins.cluster import KubeCluster, NotYet, wait_for

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 60.0


def _deployment(
    name: str, replicas: int, pod_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = {"app": name, **(pod_labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def _pod(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), None
    )


def _is_ready(pod: dict[str, Any]) -> bool:
    condition = _condition(pod, "Ready")
    return condition is not None and condition["status"] == "True"


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _wait_deployment_ready(
    kube: KubeCluster, namespace: str, name: str, replicas: int
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | NotYet:
        deployment = kube.get_json("deployment", name, "-n", namespace)
        status = deployment.get("status", {})
        done = (
            status.get("readyReplicas") == replicas and status.get("availableReplicas") == replicas
        )
        return deployment if done else NotYet(status)

    result: dict[str, Any] = wait_for(
        ready, READY_TIMEOUT, message=f"deployment {name} to have {replicas} ready replicas"
    )
    return result


def test_nodes_are_ready_kwok_nodes(kube_cluster: KubeCluster) -> None:
    nodes = kube_cluster.get_json("nodes")["items"]
    if kube_cluster.local is not None:
        assert len(nodes) == kube_cluster.local.nodes
    assert nodes, "the cluster has no nodes"
    for node in nodes:
        name = node["metadata"]["name"]
        assert (
            node["metadata"]["annotations"].get(KWOK_NODE_ANNOTATION) == KWOK_NODE_ANNOTATION_VALUE
        ), name
        assert _is_ready(node), f"{name} is not Ready: {node['status'].get('conditions')}"
        assert not node["spec"].get("taints"), f"{name} is tainted: {node['spec']['taints']}"
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1."), name


def test_deployment_becomes_ready(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.apply(_deployment("web", 3), namespace=namespace)

    deployment = _wait_deployment_ready(kube_cluster, namespace, "web", 3)

    assert deployment["status"]["updatedReplicas"] == 3
    pods = kube_cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    assert all(_is_ready(pod) and pod["status"]["phase"] == "Running" for pod in pods)
    assert all(pod["spec"].get("nodeName") for pod in pods), "the scheduler bound every pod"
    assert len({pod["status"]["podIP"] for pod in pods}) == 3, "each pod got its own IP"


def test_endpointslices_list_ready_pods(kube_cluster: KubeCluster, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kube_cluster.apply(_deployment("web", 3), service, namespace=namespace)
    _wait_deployment_ready(kube_cluster, namespace, "web", 3)
    pod_ips = {
        pod["status"]["podIP"]
        for pod in kube_cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    }

    def ready_endpoint_ips() -> set[str] | NotYet:
        slices = kube_cluster.get_json(
            "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=web"
        )["items"]
        ips = {
            address
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")
            for address in endpoint["addresses"]
        }
        return ips if ips == pod_ips else NotYet(ips)

    wait_for(
        ready_endpoint_ips,
        READY_TIMEOUT,
        message=f"EndpointSlices of web to list {sorted(pod_ips)} as ready",
    )


def test_not_ready_pod_crash_loops_with_growing_restarts(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    pod = _pod("crasher", {BEHAVIOR_LABEL: BEHAVIOR_NOT_READY}, {RESTART_INTERVAL_ANNOTATION: "1s"})
    kube_cluster.apply(pod, namespace=namespace)

    def crash_looping() -> dict[str, Any] | NotYet:
        current = kube_cluster.get_json("pod", "crasher", "-n", namespace)
        statuses = current.get("status", {}).get("containerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
        return (
            current
            if waiting.get("reason") == "CrashLoopBackOff"
            else NotYet(current.get("status"))
        )

    first = wait_for(crash_looping, READY_TIMEOUT, message="pod crasher in CrashLoopBackOff")
    assert first["status"]["phase"] == "Running"
    assert not _is_ready(first)
    first_restarts = first["status"]["containerStatuses"][0]["restartCount"]

    def restarted_twice_more() -> dict[str, Any] | NotYet:
        current = kube_cluster.get_json("pod", "crasher", "-n", namespace)
        assert not _is_ready(current), "a not-ready pod became Ready"
        restarts = current["status"]["containerStatuses"][0]["restartCount"]
        return current if restarts >= first_restarts + 2 else NotYet(restarts)

    later = wait_for(restarted_twice_more, 20, interval=0.5, message="restartCount to grow by 2")
    container = later["status"]["containerStatuses"][0]
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] != 0
    assert container["ready"] is False


def test_slow_ready_pod_becomes_ready_after_its_delay(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    delay_seconds = 4
    pod = _pod(
        "slow", {BEHAVIOR_LABEL: BEHAVIOR_SLOW_READY}, {READY_AFTER_ANNOTATION: f"{delay_seconds}s"}
    )
    kube_cluster.apply(pod, namespace=namespace)

    def running() -> dict[str, Any] | NotYet:
        current = kube_cluster.get_json("pod", "slow", "-n", namespace)
        status = current.get("status", {})
        return (
            current if status.get("phase") == "Running" and status.get("podIP") else NotYet(status)
        )

    early = wait_for(running, READY_TIMEOUT, interval=0.1, message="pod slow to run")
    started = _timestamp(early["status"]["startTime"])
    assert not _is_ready(early), "Ready before its ready-after delay"
    assert early["status"]["containerStatuses"][0]["ready"] is False

    def ready() -> dict[str, Any] | NotYet:
        current = kube_cluster.get_json("pod", "slow", "-n", namespace)
        return current if _is_ready(current) else NotYet(current.get("status"))

    late = wait_for(ready, delay_seconds + 20, message="pod slow to become Ready")
    ready_condition = _condition(late, "Ready")
    assert ready_condition is not None
    became_ready = _timestamp(ready_condition["lastTransitionTime"])
    # API timestamps have 1 s resolution.
    assert (became_ready - started).total_seconds() >= delay_seconds - 1
    assert late["status"]["containerStatuses"][0]["ready"] is True


def test_deleting_a_deployment_garbage_collects_replicasets_and_pods(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.apply(_deployment("doomed", 2), namespace=namespace)
    deployment = _wait_deployment_ready(kube_cluster, namespace, "doomed", 2)
    replica_sets = kube_cluster.get_json("replicasets", "-n", namespace, "-l", "app=doomed")[
        "items"
    ]
    assert [rs["metadata"]["ownerReferences"][0]["uid"] for rs in replica_sets] == [
        deployment["metadata"]["uid"]
    ]

    # Background propagation: the deployment goes at once, the garbage collector does the rest.
    kube_cluster.kubectl(
        "delete", "deployment", "doomed", "-n", namespace, "--cascade=background", "--wait=false"
    )

    def all_gone() -> bool | NotYet:
        left = {
            kind: len(kube_cluster.get_json(kind, "-n", namespace, "-l", "app=doomed")["items"])
            for kind in ("replicasets", "pods")
        }
        return True if not any(left.values()) else NotYet(left)

    # Well under the pods' 30 s default grace period: KWOK "stops" containers within 1 s.
    wait_for(
        all_gone,
        15,
        message="ReplicaSet and pods of the deleted deployment to be collected",
    )


def test_server_side_apply(kube_cluster: KubeCluster, namespace: str) -> None:
    def config_map(value: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "ssa"},
                "data": {"key": value},
            }
        )

    def apply(value: str, manager: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return kube_cluster.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={manager}",
            "-n",
            namespace,
            "-f",
            "-",
            *extra,
            input=config_map(value),
            check=False,
        )

    assert apply("one", "first").returncode == 0
    conflict = apply("two", "second")
    assert conflict.returncode != 0 and "conflict" in conflict.stderr.lower(), conflict.stderr
    assert apply("two", "second", "--force-conflicts").returncode == 0

    stored = kube_cluster.get_json("configmap", "ssa", "-n", namespace, "--show-managed-fields")
    assert stored["data"] == {"key": "two"}
    managers = {
        (entry["manager"], entry["operation"]) for entry in stored["metadata"]["managedFields"]
    }
    assert ("second", "Apply") in managers


def _dev_cli(state_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apprelease_dev.cli", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(os.environ),
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if text in command and state != "Z":
            found.append(f"{entry.name}: {command}")
    return found


def test_dev_cli_up_detaches_and_down_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev-cluster"
    identities: list[ProcessIdentity] = []

    started = _dev_cli(state_dir, "up", "--nodes", "1")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in started.stdout
        # `up` has exited; the cluster must still be running and healthy.
        status = _dev_cli(state_dir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        state = json.loads((state_dir / "state.json").read_text())
        identities = [
            ProcessIdentity(c["pid"], c["start_ticks"]) for c in state["components"].values()
        ]
        # The control plane with its add-ons, and the operator recorded with it (so `down`
        # stops it too).
        assert set(state["components"]) == {*COMPONENTS, "operator"}
        assert all(is_running(identity) for identity in identities)
        # The embedded default: the operator runs and the example's pods become Ready.
        kubectl = [str(bin_dir() / "kubectl"), f"--kubeconfig={state_dir / 'kubeconfig'}"]

        def example_ready() -> bool:
            out = subprocess.run([*kubectl, "get", "pods", "-n", "order-proj", "-o", "json"],
                                 capture_output=True, text=True, check=False).stdout
            pods = json.loads(out or '{"items": []}')["items"]
            ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in (p.get("status") or {}).get("conditions") or [])]
            return len(ready) == 3

        wait_for(example_ready, 60, 0.5, "the example's 3 pods Ready")
    finally:
        stopped = _dev_cli(state_dir, "down")

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(is_running(identity) for identity in identities)
    assert _processes_mentioning(str(state_dir)) == []
    assert not (state_dir / "state.json").exists()
    assert not (state_dir / "etcd-data").exists()
