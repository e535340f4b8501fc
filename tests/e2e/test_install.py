"""Install manifests: deploy/ and the Helm chart pass server-side dry-run, agree with each
other, and the operator running with exactly deploy/'s RBAC (as its ServiceAccount) works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apprelease_dev.build import bin_dir
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess, service_account_kubeconfig
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
    docs = helm_template("--include-crds", "--set", "nacosCredentials=true")
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


def test_nothing_grants_secrets_cluster_wide() -> None:
    """A namespace user's AppRelease could otherwise make the operator read any Secret."""
    for docs in (deploy_docs(), helm_template("--set", "nacosCredentials=true")):
        secret_roles = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"
                        and any("secrets" in r["resources"] for r in d["rules"])}
        bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
        assert not secret_roles & bound, secret_roles & bound


def test_chart_with_watch_namespaces_grants_nothing_cluster_wide() -> None:
    docs = helm_template("--set", "watchNamespaces={team-a,team-b}", "--set", "nacosCredentials=true",
                         "--set", "nacosCredentialsSecrets={nacos-credentials}")
    kinds = {(d["kind"], d["metadata"].get("namespace")) for d in docs}
    assert not {k for k, _ in kinds} & {"ClusterRole", "ClusterRoleBinding"}
    assert {("Role", "team-a"), ("Role", "team-b"), ("RoleBinding", "team-a"), ("RoleBinding", "team-b")} <= kinds
    secret_rules = [r for d in docs if d["kind"] == "Role" for r in d["rules"] if "secrets" in r["resources"]]
    assert secret_rules and all(r["resourceNames"] == ["nacos-credentials"] for r in secret_rules)
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_operator_works_with_only_namespaced_rbac(
    kube_cluster: KubeCluster, crd: None, system_namespace: str, arl: AppReleases,
    operator: OperatorProcess, tmp_path: Path,
) -> None:
    ns = arl.namespace
    docs = [d for d in helm_template("--set", f"watchNamespaces={{{ns}}}") if d["kind"] in
            ("ServiceAccount", "Role", "RoleBinding")]
    kube_cluster.apply(*docs)
    sa = "system:serviceaccount:apprelease-system:apprelease"
    assert kube_cluster.kubectl("auth", "can-i", "list", "deployments", "-A", f"--as={sa}",
                                check=False).stdout.strip() == "no"
    sa_kubeconfig = _service_account_kubeconfig(kube_cluster, tmp_path)
    app = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "scoped"},
           "spec": {"image": "registry.local/scoped:v1", "replicas": 2, "port": 8080}}
    with operator.replaced_by(sa_kubeconfig, extra_args=("--namespace", ns)):
        arl.apply(app)
        arl.wait_phase("scoped", "Healthy", timeout=60)
        forbidden = [line for line in operator.log_tail(400).splitlines() if "403" in line or "Forbidden" in line]
        assert not forbidden, forbidden


def _service_account_kubeconfig(cluster: KubeCluster, tmp_path: Path) -> Path:
    return service_account_kubeconfig(cluster, NAMESPACE, "apprelease", tmp_path)


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


def test_the_pod_template_admission_policy_rejects_host_access(
    kube_cluster: KubeCluster, crd: None, namespace: str,
) -> None:
    """deploy/optional/restrict-pod-template.yaml on the real apiserver: what a namespace user
    must not get through the operator is refused at the AppRelease, naming the field."""
    policy = DEPLOY / "optional" / "restrict-pod-template.yaml"
    kube_cluster.kubectl("apply", "-f", str(policy))
    try:
        base = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"image": "registry.local/web:v1", "port": 8080}}
        cases = {
            "hostNetwork": {"spec": {"hostNetwork": True}},
            "hostPath": {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
            "privileged": {"spec": {"containers": [{"name": "web", "securityContext": {"privileged": True}}]}},
            "serviceAccountName": {"spec": {"serviceAccountName": "cluster-admin-sa"}},
        }

        def rejected(pod_template: dict[str, Any]) -> str:
            body = {**base, "spec": {**base["spec"], "podTemplate": pod_template}}
            result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                                          input=yaml.safe_dump(body), check=False)
            return result.stderr if result.returncode else ""

        # The policy takes effect within seconds of its creation.
        wait_for(lambda: rejected(cases["hostNetwork"]), 30, 0.5, "the admission policy to take effect")
        for field, pod_template in cases.items():
            message = rejected(pod_template)
            assert field in message and ("not allowed" in message or "must not" in message), (field, message)
        ok = {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "web", "securityContext": {"readOnlyRootFilesystem": True}}]}}
        assert rejected(ok) == ""
    finally:
        kube_cluster.kubectl("delete", "-f", str(policy), "--wait=false", check=False)
