"""Install manifests: deploy/ and the Helm chart pass server-side dry-run, agree with each
other, and the operator running with exactly deploy/'s RBAC (as its ServiceAccount) works."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apprelease_dev import versions
from apprelease_dev.addons import prometheus_operator_crds
from apprelease_dev.build import bin_dir
from apprelease_dev.go_runner import download_modules
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess, service_account_kubeconfig
from tests.support import ROOT

pytestmark = pytest.mark.e2e
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "apprelease"
NAMESPACE = "apprelease-system"
CRD_NAME = "appreleases.apprelease.io"
# The chart as first released (0.1.0: the CRD in crds/, which `helm upgrade` never touches).
PREVIOUS_CHART_COMMIT = "3e33739692b17be971ea969ec3702e8304879d6a"
# Every optional object on, for lint and the dry runs.
EVERYTHING = ("--set", "replicaCount=2", "--set", "metrics.serviceMonitor.enabled=true",
              "--set", "metrics.prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true",
              "--set", "console.enabled=true", "--set", "console.ingress.enabled=true",
              "--set", "console.ingress.host=apprelease.example.com", "--set", "priorityClassName=system-cluster-critical")


def helm_template(*args: str) -> list[dict[str, Any]]:
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
    docs = helm_template("--set", "nacosCredentials=true", "--set", "replicaCount=2",
                         "--set", "console.enabled=true", "--set", "console.ingress.enabled=true",
                         "--set", "console.ingress.host=apprelease.example.com")
    text = yaml.safe_dump_all(docs)
    result = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-", input=text)
    assert "clusterrole.rbac.authorization.k8s.io/apprelease-system:apprelease serverside-applied" in result.stdout
    assert "poddisruptionbudget.policy/apprelease serverside-applied" in result.stdout
    assert "ingress.networking.k8s.io/apprelease-console serverside-applied" in result.stdout


def test_helm_chart_renders_what_deploy_contains() -> None:
    def index(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] != "Namespace"}

    plain = index(deploy_docs())
    chart = index(helm_template("--set", "nacosCredentials=true"))
    assert set(plain) == set(chart)
    role = ("ClusterRole", "apprelease-system:apprelease")
    assert chart[role]["rules"] == plain[role]["rules"]
    crd = ("CustomResourceDefinition", "appreleases.apprelease.io")
    assert chart[crd]["spec"] == plain[crd]["spec"]
    # The chart's CRD survives `helm uninstall` (deleting it would delete every AppRelease).
    assert chart[crd]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # So does the approval policy: with the ReleaseApprovals kept, records must stay unforgeable.
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        policy = chart[(kind, "apprelease-releaseapproval")]
        assert policy["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}, kind
        assert policy["spec"] == plain[(kind, "apprelease-releaseapproval")]["spec"], kind
    chart_pod = chart[("Deployment", "apprelease")]["spec"]["template"]["spec"]
    plain_pod = plain[("Deployment", "apprelease")]["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "securityContext", "volumes", "affinity", "topologySpreadConstraints"):
        assert chart_pod[key] == plain_pod[key], key
    for key in ("image", "args", "securityContext", "ports", "startupProbe", "livenessProbe", "resources"):
        assert chart_pod["containers"][0][key] == plain_pod["containers"][0][key], key


def test_rbac_has_no_wildcards_and_no_secret_access() -> None:
    role = next(d for d in deploy_docs() if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == "apprelease-system:apprelease")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]


def test_nothing_grants_secrets_cluster_wide() -> None:
    """A namespace user's AppRelease could otherwise make the operator read any Secret."""
    for docs in (deploy_docs(), helm_template("--set", "nacosCredentials=true", "--set", "notifications=true")):
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


def test_chart_grants_the_notification_sinks_secret_by_name_only() -> None:
    """notifications=true: the operator may read each watched namespace's Secret
    apprelease-notifications (docs/notifications.md), that name only; cluster-wide it is an
    unbound ClusterRole that teams bind in their namespace. The sinks' flags reach the operator."""
    docs = helm_template("--set", "watchNamespaces={team-a,team-b}", "--set", "notifications=true",
                         "--set", "policy.notificationNetworks={10.0.0.0/8}",
                         "--set", "consoleUrl=https://apprelease.example.com")
    secret_rules = {(d["metadata"]["namespace"], tuple(r["resourceNames"])) for d in docs if d["kind"] == "Role"
                    for r in d["rules"] if "secrets" in r["resources"]}
    assert secret_rules == {("team-a", ("apprelease-notifications",)), ("team-b", ("apprelease-notifications",))}
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allow-notification-network=10.0.0.0/8" in args
    assert "--console-url=https://apprelease.example.com" in args
    cluster_wide = helm_template("--set", "notifications=true")
    readers = [d for d in cluster_wide if d["kind"] == "ClusterRole"
               and any("secrets" in r["resources"] for r in d["rules"])]
    assert readers and all(r.get("resourceNames") == ["apprelease-notifications"]
                           for d in readers if d["metadata"]["name"].endswith("-notifications") for r in d["rules"])
    bound = {d["roleRef"]["name"] for d in cluster_wide if d["kind"] == "ClusterRoleBinding"}
    assert not {d["metadata"]["name"] for d in readers} & bound


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
        # A word: the test namespace's random suffix may contain the digits (…-244033).
        forbidden = [line for line in operator.log_tail(400).splitlines()
                     if re.search(r"\b403\b|Forbidden", line) and "being terminated" not in line]
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


def helm(cluster: KubeCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(bin_dir() / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
                            capture_output=True, text=True, check=False, timeout=180)
    assert not check or result.returncode == 0, f"helm {' '.join(args[:3])}: {result.stderr}"
    return result


def test_chart_lints_with_every_option() -> None:
    result = subprocess.run([str(bin_dir() / "helm"), "lint", "--strict", str(CHART), *EVERYTHING,
                             "--set", "watchNamespaces={team-a}", "--set", "nacosCredentials=true"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def monitoring_crds(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ServiceMonitor and PrometheusRule CRDs as prometheus-operator ships them."""
    module = download_modules({versions.PROMETHEUS_OPERATOR_MODULE: versions.PROMETHEUS_OPERATOR_VERSION},
                              cwd=tmp_path_factory.mktemp("modules"))[versions.PROMETHEUS_OPERATOR_MODULE]
    crds = prometheus_operator_crds(module, ("ServiceMonitor", "PrometheusRule"))
    kube_cluster.apply(*crds, server_side=True)
    names = [crd["metadata"]["name"] for crd in crds]

    def established() -> bool:
        found = [kube_cluster.get_json(f"crd/{name}") for name in names]
        return all(any(c["type"] == "Established" and c["status"] == "True"
                       for c in (crd.get("status") or {}).get("conditions") or []) for crd in found)

    wait_for(established, 60, message="the monitoring CRDs to be Established")
    yield
    kube_cluster.kubectl("delete", "crd", *names, "--wait=false", check=False)


def test_chart_monitoring_objects_pass_server_dry_run(
    kube_cluster: KubeCluster, crd: None, system_namespace: str, monitoring_crds: None,
) -> None:
    docs = helm_template(*EVERYTHING)
    by_kind = {d["kind"]: d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule", "ConfigMap")}
    assert set(by_kind) == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    result = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "-f", "-",
                                  input=yaml.safe_dump_all(list(by_kind.values())))
    assert "servicemonitor.monitoring.coreos.com/apprelease serverside-applied" in result.stdout
    assert "prometheusrule.monitoring.coreos.com/apprelease serverside-applied" in result.stdout
    # The ServiceMonitor finds the metrics Service and its port.
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "apprelease-metrics")
    monitor = by_kind["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    alerts = {r["alert"]: r for g in by_kind["PrometheusRule"]["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"AppReleaseDegraded", "AppReleaseFailing", "AppReleaseRegistryUnavailable",
                           "AppReleaseNoActiveReplica"}
    assert all('job="apprelease-metrics"' in rule["expr"] and "${" not in yaml.safe_dump(rule)
               for rule in alerts.values())
    dashboard = json.loads(by_kind["ConfigMap"]["data"]["apprelease.json"])
    assert dashboard["panels"] and all('job="$job"' in t["expr"] for p in dashboard["panels"] for t in p["targets"])


def _crd_columns(cluster: KubeCluster) -> list[str]:
    crd = cluster.get_json(f"crd/{CRD_NAME}")
    return [column["name"] for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


@pytest.fixture
def restore_crd(kube_cluster: KubeCluster) -> Iterator[None]:
    """The session's CRD as crds/ has it (the tests below let Helm own and change it)."""
    yield
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube_cluster.kubectl("annotate", "crd", CRD_NAME, "helm.sh/resource-policy-", "meta.helm.sh/release-name-",
                         "meta.helm.sh/release-namespace-", check=False)
    kube_cluster.kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by-", check=False)


def _chart_with_new_column(tmp_path: Path, column: str) -> Path:
    """This chart, its CRD given one more printer column: a CRD change Helm must bring."""
    chart = tmp_path / f"chart-{column}"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "apprelease.io_appreleases.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": column, "type": "string", "jsonPath": ".status.phase", "priority": 1})
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def test_helm_upgrade_from_the_previous_chart_updates_the_crd(
    kube_cluster: KubeCluster, crd: None, restore_crd: None, tmp_path: Path,
) -> None:
    release_namespace = "chart-upgrade"
    previous = tmp_path / "previous"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_CHART_COMMIT, "deploy/helm/apprelease"],
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(previous.parent), "--one-top-level=previous"], input=archive,
                   check=True, timeout=60)
    previous_chart = previous / "deploy" / "helm" / "apprelease"
    assert (previous_chart / "crds").is_dir()  # the layout Helm never upgrades
    try:
        # The session's CRD is there already, applied by kubectl (as the plain manifests do).
        helm(kube_cluster, "install", "apprelease", str(previous_chart), "-n", release_namespace,
             "--create-namespace", "--skip-crds")
        assert "Upgraded" not in _crd_columns(kube_cluster)
        new_chart = _chart_with_new_column(tmp_path, "Upgraded")
        # Once, from 0.1.0 (docs/upgrade.md): the CRD Helm installed from crds/, or kubectl
        # applied, is not yet the release's to change.
        refused = helm(kube_cluster, "upgrade", "apprelease", str(new_chart), "-n", release_namespace, check=False)
        assert refused.returncode != 0 and CRD_NAME in refused.stderr, refused.stderr
        helm(kube_cluster, "upgrade", "apprelease", str(new_chart), "-n", release_namespace,
             "--take-ownership", "--force-conflicts")
        assert "Upgraded" in _crd_columns(kube_cluster)
        crd = kube_cluster.get_json(f"crd/{CRD_NAME}")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        # From then on an ordinary `helm upgrade` changes the CRD.
        helm(kube_cluster, "upgrade", "apprelease", str(_chart_with_new_column(tmp_path, "Again")),
             "-n", release_namespace)
        assert "Again" in _crd_columns(kube_cluster)
        deployment = kube_cluster.get_json("deployment/apprelease", "-n", release_namespace)
        assert "startupProbe" in deployment["spec"]["template"]["spec"]["containers"][0]
    finally:
        helm(kube_cluster, "uninstall", "apprelease", "-n", release_namespace, check=False)
        kube_cluster.kubectl("delete", "namespace", release_namespace, "--wait=false", check=False)
    assert kube_cluster.kubectl("get", f"crd/{CRD_NAME}").returncode == 0  # kept on uninstall
    # and the approval policy with it (other tests of this cluster rely on it too)
    assert kube_cluster.kubectl("get", "validatingadmissionpolicy/apprelease-releaseapproval").returncode == 0


def test_two_namespaced_releases_coexist(kube_cluster: KubeCluster, crd: None) -> None:
    """Two teams, each an operator for its own namespace, in one cluster: nothing collides."""
    teams = {"ops-a": "team-a", "ops-b": "team-b"}
    try:
        for release_namespace, team in teams.items():
            kube_cluster.kubectl("create", "namespace", team, check=False)
            helm(kube_cluster, "install", "apprelease", str(CHART), "-n", release_namespace, "--create-namespace",
                 "--set", f"watchNamespaces={{{team}}}", "--set", "crds.install=false", "--set", "nacosCredentials=true",
                 "--set", "console.enabled=true", "--set", "console.auth=impersonation",
                 "--set", "console.proxySidecar[0].name=auth-proxy",
                 "--set", "console.proxySidecar[0].image=registry.local/oauth2-proxy:v7")
        for release_namespace, team in teams.items():
            manifest = helm(kube_cluster, "get", "manifest", "apprelease", "-n", release_namespace).stdout
            docs = [d for d in yaml.safe_load_all(manifest) if d]
            cluster_scoped = {d["metadata"]["name"] for d in docs if d["kind"].startswith("Cluster")}
            # Only impersonation, which Kubernetes grants cluster-wide only.
            assert cluster_scoped == {f"{release_namespace}:apprelease-console"}
            roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"}
            assert roles == {(team, f"{release_namespace}:apprelease"),
                             (team, f"{release_namespace}:apprelease-nacos-credentials"),
                             (team, f"{release_namespace}:apprelease-console"),
                             # the replicas' Lease, in the release's own namespace
                             (release_namespace, "apprelease-leader-election")}
            sa = f"system:serviceaccount:{release_namespace}:apprelease"
            can = kube_cluster.kubectl("auth", "can-i", "patch", "appreleases", "-n", team, f"--as={sa}", check=False)
            assert can.stdout.strip() == "yes"
            other = next(t for t in teams.values() if t != team)
            cannot = kube_cluster.kubectl("auth", "can-i", "patch", "appreleases", "-n", other, f"--as={sa}",
                                          check=False)
            assert cannot.stdout.strip() == "no"
    finally:
        for release_namespace in teams:
            helm(kube_cluster, "uninstall", "apprelease", "-n", release_namespace, check=False)
            kube_cluster.kubectl("delete", "namespace", release_namespace, "--wait=false", check=False)


def test_chart_overrides_reach_the_operator_pod() -> None:
    docs = helm_template("--set", "fullnameOverride=ops", "--set", "extraArgs={--registry-poll-seconds=10}",
                         "--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128",
                         "--set", "podAnnotations.team=platform", "--set", "podLabels.tier=control",
                         "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing",
                         "--set", "priorityClassName=system-cluster-critical")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "ops") in names and ("ClusterRole", f"{NAMESPACE}:ops") in names
    assert not any(kind == "ServiceAccount" for kind, _ in names)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"team": "platform"}
    assert pod["metadata"]["labels"]["tier"] == "control"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "existing"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    container = pod["spec"]["containers"][0]
    assert container["args"][-1] == "--registry-poll-seconds=10"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "existing", "namespace": NAMESPACE}]
