"""The three stages of a ReleasePipeline on the real control plane (test, pre, prod
namespaces), the admission policy installed, and users bound to view or to approve: shared by
tests/e2e/test_pipeline.py and the console's browser tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.operator import OperatorProcess, service_account_kubeconfig
from tests.support import ROOT

POLICY = ROOT / "deploy" / "30-releaseapproval-policy.yaml"
PIPELINE_CRDS = ("releasepipelines.apprelease.io", "releaseapprovals.apprelease.io")


def app(image: str, files: dict[str, str], replicas: int, env: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "shop"},
        "spec": {"image": image, "replicas": replicas, "port": 8080,
                 "env": [{"name": "STAGE", "value": env}],
                 "config": {"mountPath": "/app/config", "files": files}, **spec},
    }


@dataclass
class Stages:
    cluster: KubeCluster
    pipelines: str
    test: str
    pre: str
    prod: str
    tmp_path: Path

    def apply(self, namespace: str, body: dict[str, Any]) -> None:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        self.cluster.apply(body, namespace=namespace, server_side=True)

    def three_stages(self, files: dict[str, str], replicas: tuple[int, int, int], soak_seconds: int) -> None:
        """shop on v1 with ``files`` in every stage, Healthy (prod with a canary), then the
        pipeline: test → pre (auto, ``soak_seconds``) → prod (manual)."""
        canary = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}}
        for namespace, count, env in zip((self.test, self.pre, self.prod), replicas, ("test", "pre", "prod"),
                                         strict=True):
            self.apply(namespace, app("registry.local/shop:v1", files, count, env,
                                      **({"strategy": canary} if env == "prod" else {})))
        for namespace in (self.test, self.pre, self.prod):
            self.healthy(namespace, 1)
        self.cluster.apply({
            "apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
            "metadata": {"name": "shop", "namespace": self.pipelines},
            "spec": {"apps": {"names": ["shop"]}, "stages": [
                {"name": "test", "namespace": self.test},
                {"name": "pre", "namespace": self.pre, "gate": {"auto": {"soakSeconds": soak_seconds}}},
                {"name": "prod", "namespace": self.prod, "gate": {"manual": {}}},
            ]},
        }, namespace=self.pipelines)

    def shop(self, namespace: str) -> dict[str, Any]:
        return self.cluster.get_json("appreleases", "shop", "-n", namespace)

    def healthy(self, namespace: str, revision: int | None, timeout: float = 90) -> dict[str, Any]:
        """Healthy on ``revision`` (None: on whichever revision the spec describes)."""
        def check() -> Any:
            body = self.shop(namespace)
            status = body.get("status") or {}
            wanted = status.get("currentRevision") if revision is None else revision
            settled = (status.get("phase") == "Healthy" and status.get("stableRevision") == wanted
                       and status.get("observedGeneration") == body["metadata"]["generation"])
            return body if settled else NotYet(status.get("phase"))
        return wait_for(check, timeout, 0.5, f"shop in {namespace} Healthy on revision {revision}")

    def pipeline(self) -> dict[str, Any]:
        return self.cluster.get_json("releasepipelines", "shop", "-n", self.pipelines)

    def status(self) -> dict[str, Any]:
        return self.pipeline().get("status") or {}

    def wait_status(self, predicate: Any, what: str, timeout: float = 90) -> dict[str, Any]:
        def check() -> Any:
            status = self.status()
            return status if predicate(status) else NotYet(status.get("message"))
        return wait_for(check, timeout, 0.5, what)

    def stage(self, status: dict[str, Any], name: str) -> dict[str, Any]:
        return next(s for s in status.get("stages") or [] if s["name"] == name)

    def cli(self, kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "apprelease.cli.main", "--kubeconfig", str(kubeconfig),
                   "-n", self.pipelines, *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "COLUMNS": "200"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"apprelease {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def user(self, account: str, *, approve: bool) -> tuple[Path, str]:
        """A ServiceAccount in prod's namespace: bound to view there (and the pipelines
        namespace), plus `create releaseapprovals` in prod when ``approve``."""
        self.cluster.kubectl("create", "serviceaccount", account, "-n", self.prod)
        subject = f"--serviceaccount={self.prod}:{account}"
        for namespace in (self.prod, self.pipelines):
            self.cluster.kubectl("create", "rolebinding", f"{account}-view", "--clusterrole=view", subject,
                                 "-n", namespace)
        readers = [{"apiGroups": ["apprelease.io"], "resources": ["releasepipelines"], "verbs": ["get"]}]
        self.cluster.apply(
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": f"{account}-pipelines", "namespace": self.pipelines}, "rules": readers},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": f"{account}-pipelines", "namespace": self.pipelines},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{account}-pipelines"},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": self.prod}]})
        if approve:
            self.cluster.kubectl("create", "role", "release-approver", "--verb=create,get,list",
                                 "--resource=releaseapprovals.apprelease.io", "-n", self.prod)
            self.cluster.kubectl("create", "rolebinding", f"{account}-approve", "--role=release-approver",
                                 subject, "-n", self.prod)
        return (service_account_kubeconfig(self.cluster, self.prod, account, self.tmp_path),
                f"system:serviceaccount:{self.prod}:{account}")


@pytest.fixture
def approval_policy(kube_cluster: KubeCluster, crd: None) -> None:
    """The pipeline CRDs Established and the approval admission policy installed: applied for
    each test (it is idempotent), as another test of the shared cluster may have removed it."""
    def established() -> Any:
        for name in PIPELINE_CRDS:
            body = json.loads(kube_cluster.kubectl("get", f"crd/{name}", "-o", "json").stdout)
            conditions = (body.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return NotYet(name)
        return True

    wait_for(established, 60, message="the pipeline CRDs to be Established")
    kube_cluster.kubectl("apply", "-f", str(POLICY))


@pytest.fixture
def stages(kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess, approval_policy: None,
           tmp_path: Path) -> Iterator[Stages]:
    names = {stage: f"{namespace}-{stage}" for stage in ("test", "pre", "prod")}
    for name in names.values():
        kube_cluster.kubectl("create", "namespace", name)
        wait_for(lambda n=name: kube_cluster.kubectl("get", "serviceaccount", "default", "-n", n,
                                                     check=False).returncode == 0, 30, message=f"{name}/default")
    yield Stages(kube_cluster, namespace, names["test"], names["pre"], names["prod"], tmp_path)
    for name in names.values():
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
