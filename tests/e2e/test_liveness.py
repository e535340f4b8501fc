"""Liveness tells the truth: an operator whose watches can never list (here: RBAC forbids
one) fails its probe, naming the watch, instead of answering 200 while doing nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import OperatorProcess, service_account_kubeconfig
from tests.support import ROOT

pytestmark = pytest.mark.e2e


def test_liveness_fails_when_a_watch_can_never_list(
    kube_cluster: KubeCluster, crd: None, operator: OperatorProcess, namespace: str, tmp_path: Path,
) -> None:
    rbac = [d for d in yaml.safe_load_all((ROOT / "deploy" / "10-rbac.yaml").read_text()) if d]
    role = next(d for d in rbac if d["kind"] == "ClusterRole")
    # The operator's own rules, but EndpointSlices may not be listed.
    role["rules"] = [r for r in role["rules"] if "endpointslices" not in r["resources"]]
    role["metadata"]["name"] = "apprelease-no-endpointslices"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "apprelease-no-endpointslices"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "crippled", "namespace": namespace}],
    }
    kube_cluster.kubectl("create", "serviceaccount", "crippled", "-n", namespace)
    kube_cluster.apply(role, binding)
    try:
        kubeconfig = service_account_kubeconfig(kube_cluster, namespace, "crippled", tmp_path)
        with operator.replaced_by(kubeconfig, extra_args=("--startup-deadline-seconds", "8")):
            url = f"http://127.0.0.1:{operator.liveness_port}/healthz"

            def failing() -> httpx.Response | None:
                response = httpx.get(url, timeout=5)
                return response if response.status_code == 500 else None

            wait_for(failing, 60, 1.0, "liveness to fail")
            # kopf answers a bare 500; its log says which probe failed and why.
            wait_for(lambda: "EndpointSlice informer never listed" in operator.log_tail(400), 20, 0.5,
                     "the reason in the operator's log")
    finally:
        kube_cluster.kubectl("delete", "clusterrolebinding,clusterrole", "apprelease-no-endpointslices", check=False)
