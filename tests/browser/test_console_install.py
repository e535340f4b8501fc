"""The Helm chart's console: it passes a server-side dry run in both auth modes, and the
console works with exactly the chart's ServiceAccount RBAC (watch only, no Secrets, no writes)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from apprelease_dev.build import bin_dir
from tests.plugins.cluster import KubeCluster
from tests.plugins.operator import AppReleases
from tests.support import ROOT

from .conftest import VIEW_RULES, Identities, StartConsole

pytestmark = pytest.mark.e2e
CHART = ROOT / "deploy" / "helm" / "apprelease"
NAMESPACE = "apprelease-system"
SIDECAR = ["--set", "console.proxySidecar[0].name=auth-proxy",
           "--set", "console.proxySidecar[0].image=registry.local/oauth2-proxy:v7"]


def helm_template(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(bin_dir() / "helm"), "template", "apprelease", str(CHART), "--namespace", NAMESPACE,
                             "--set", "console.enabled=true", *args],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _console_docs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "console"}


@pytest.mark.parametrize("mode", ["token", "impersonation"])
def test_chart_console_passes_server_dry_run(kube_cluster: KubeCluster, crd: None, mode: str) -> None:
    kube_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    docs = helm_template("--set", f"console.auth={mode}", *(SIDECAR if mode == "impersonation" else []))
    console = _console_docs(docs)
    rules = console["ClusterRole"]["rules"]
    assert all("secrets" not in r["resources"] for r in rules)
    assert {v for r in rules for v in r["verbs"]} == {"get", "list", "watch"} | (
        {"impersonate"} if mode == "impersonation" else set())
    args = console["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--auth={mode}" in args
    assert ("--address=127.0.0.1" in args) is (mode == "impersonation")
    result = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-",
                                  input=yaml.safe_dump_all(list(console.values())))
    assert "deployment.apps/apprelease-console serverside-applied (server dry run)" in result.stdout


def test_console_runs_with_exactly_the_charts_rbac(
    kube_cluster: KubeCluster, start_console: StartConsole, arl: AppReleases, namespace: str,
    identities: Identities, tmp_path: Path,
) -> None:
    kube_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    console_docs = _console_docs(helm_template())
    kube_cluster.apply(*(console_docs[k] for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")))
    token = kube_cluster.kubectl("create", "token", "apprelease-console", "-n", NAMESPACE,
                                 "--duration=1h").stdout.strip()
    arl.apply({"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "web"},
               "spec": {"image": "registry.local/web:v1", "replicas": 1, "port": 8080}})
    arl.wait_phase("web", "Healthy", timeout=60)
    viewer = identities.service_account("viewer", VIEW_RULES)
    console = start_console("--auth", "token", kubeconfig=identities.kubeconfig("console-sa", token))
    page = httpx.get(f"{console.url}apps/{namespace}/web", headers={"Authorization": f"Bearer {viewer}"},
                     timeout=30)
    assert page.status_code == 200, page.text
    assert "web-" in page.text  # its pod, from the Pod watch the chart's RBAC allows
    assert "Watching" not in page.text  # no watch failed
    assert httpx.get(console.url, timeout=10).status_code == 401  # no token: no page
