"""Install manifests: deploy/ and the Helm chart pass server-side dry-run, agree with each
other, and the operator running with exactly deploy/'s RBAC (as its ServiceAccount) works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apprelease_dev.build import bin_dir
from tests.plugins.cluster import KubeCluster
from tests.plugins.operator import AppReleases, OperatorProcess
from tests.support import ROOT

pytestmark = pytest.mark.e2e
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "apprelease"
NAMESPACE = "apprelease-system"


def helm_template(*args: str) -> list[dict[str, Any]]:
    import subprocess

    result = subprocess.run(
        [str(bin_dir() / "helm"), "template", "apprelease", str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def deploy_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def system_namespace(kube_cluster: KubeCluster) -> str:
    kube_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    return NAMESPACE


def test_deploy_manifests_pass_server_dry_run(kube_cluster: KubeCluster, crd: None, system_namespace: str) -> None:
    result = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", str(DEPLOY))
    assert "deployment.apps/apprelease serverside-applied (server dry run)" in result.stdout


def test_helm_chart_passes_server_dry_run(kube_cluster: KubeCluster, crd: None, system_namespace: str) -> None:
    docs = helm_template("--include-crds", "--set", "nacosCredentials=true", "--set", "peering=apprelease")
    text = yaml.safe_dump_all(docs)
    result = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-", input=text)
    assert "clusterrole.rbac.authorization.k8s.io/apprelease" in result.stdout


def test_helm_chart_renders_what_deploy_contains() -> None:
    def index(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] != "Namespace"}

    plain = index(deploy_docs())
    chart = index(helm_template("--include-crds", "--set", "nacosCredentials=true"))
    assert set(plain) == set(chart)
    assert chart[("ClusterRole", "apprelease")]["rules"] == plain[("ClusterRole", "apprelease")]["rules"]
    assert chart[("CustomResourceDefinition", "appreleases.apprelease.io")] == plain[
        ("CustomResourceDefinition", "appreleases.apprelease.io")
    ]
    chart_pod = chart[("Deployment", "apprelease")]["spec"]["template"]["spec"]
    plain_pod = plain[("Deployment", "apprelease")]["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "securityContext", "volumes"):
        assert chart_pod[key] == plain_pod[key], key
    for key in ("args", "securityContext", "ports", "livenessProbe", "resources"):
        assert chart_pod["containers"][0][key] == plain_pod["containers"][0][key], key


def test_rbac_has_no_wildcards_and_no_secret_access() -> None:
    role = next(d for d in deploy_docs() if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "apprelease")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]


def _service_account_kubeconfig(cluster: KubeCluster, tmp_path: Path) -> Path:
    token = cluster.kubectl("create", "token", "apprelease", "-n", NAMESPACE, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = admin["contexts"][0]["context"]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "apprelease-sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": context["cluster"], "user": "apprelease-sa"}}],
        "current-context": "sa",
    }
    path = tmp_path / "sa-kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def test_operator_works_with_exactly_the_deploy_rbac(
    kube_cluster: KubeCluster, crd: None, system_namespace: str, arl: AppReleases,
    operator: OperatorProcess, tmp_path: Path,
) -> None:
    kube_cluster.kubectl("apply", "-f", str(DEPLOY / "10-rbac.yaml"))
    sa_kubeconfig = _service_account_kubeconfig(kube_cluster, tmp_path)
    can_read_secrets = kube_cluster.kubectl(
        "auth", "can-i", "get", "secrets", "--as=system:serviceaccount:apprelease-system:apprelease",
        check=False,
    )
    assert can_read_secrets.stdout.strip() == "no"
    app = {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": "rbac-app"},
        "spec": {
            "image": "registry.local/rbac:v1", "replicas": 2, "port": 8080,
            "config": {"mountPath": "/etc/app", "files": {"app.yml": "a: 1\n"}},
            "ingress": {"host": "rbac.example.com"},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }
    with operator.replaced_by(sa_kubeconfig):
        arl.apply(app)
        arl.wait_phase("rbac-app", "Healthy", timeout=60)
        arl.patch("rbac-app", {"spec": {"image": "registry.local/rbac:v2"}})
        arl.wait_phase("rbac-app", "Paused", timeout=60)
        arl.cli("promote", "rbac-app")
        arl.wait_phase("rbac-app", "Healthy", timeout=90, stableRevision=2)
        forbidden = [line for line in operator.log_tail(400).splitlines()
                     if "403" in line and "being terminated" not in line]
        assert not forbidden, forbidden
        assert any(e["reason"] == "PromotionCompleted" for e in arl.events("rbac-app"))
