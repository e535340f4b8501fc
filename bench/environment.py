"""A private local control plane for one benchmark run, and the operator's identity in it.

The operator runs as its ServiceAccount (deploy/'s least-privilege RBAC) with a token
kubeconfig, so the apiserver's audit log attributes every request it makes, exactly.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apprelease_dev.build import ensure_binaries
from apprelease_dev.cluster import LocalCluster
from apprelease_dev.components import metadata_audit_policy
from bench.api import Api
from bench.audit import AuditLog
from bench.kubectl import Kubectl, KubectlError

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
DEPLOY_DIR = ROOT / "deploy"
OPERATOR_NAMESPACE = "apprelease-system"
OPERATOR_ACCOUNT = "apprelease"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
TOKEN_DURATION = "48h"
CLUSTER_START_TIMEOUT_SECONDS = 240.0
NAMESPACE_READY_TIMEOUT_SECONDS = 60.0
NAMESPACE_GONE_TIMEOUT_SECONDS = 900.0


@dataclass
class Environment:
    work_dir: Path
    cluster: LocalCluster
    kubectl: Kubectl
    api: Api
    audit: AuditLog
    operator_kubeconfig: Path

    def create_namespace(self, name: str) -> None:
        self.kubectl.apply_documents(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}]
        )
        # Pods are rejected until the namespace's `default` ServiceAccount exists.
        deadline = time.monotonic() + NAMESPACE_READY_TIMEOUT_SECONDS
        while True:
            try:
                self.kubectl.run("get", "serviceaccount", "default", "-n", name)
                return
            except KubectlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def delete_namespace(self, name: str, timeout: float = NAMESPACE_GONE_TIMEOUT_SECONDS) -> float:
        """Delete and wait until it is gone (its objects too); returns the seconds it took."""
        started = time.monotonic()
        self.kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        while self.api.get("Namespace", "", name) is not None:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"namespace {name} still terminating after {timeout:g} s")
            time.sleep(1.0)
        return time.monotonic() - started


def _operator_identity(kubectl: Kubectl, cluster: LocalCluster, work_dir: Path) -> Path:
    for manifest in ("00-namespace.yaml", "10-rbac.yaml"):
        kubectl.run("apply", "--server-side", "-f", str(DEPLOY_DIR / manifest))
    token = kubectl.run(
        "create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, f"--duration={TOKEN_DURATION}"
    ).strip()
    admin: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    cluster_name = admin["contexts"][0]["context"]["cluster"]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": OPERATOR_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": OPERATOR_ACCOUNT, "context": {"cluster": cluster_name, "user": OPERATOR_ACCOUNT}}
        ],
        "current-context": OPERATOR_ACCOUNT,
    }
    path = work_dir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    path.chmod(0o600)
    return path


def _wait_established(kubectl: Kubectl) -> None:
    """Polls: `kubectl wait --for=condition=...` fails outright while there are no conditions."""
    deadline = time.monotonic() + NAMESPACE_READY_TIMEOUT_SECONDS

    def established() -> bool:
        crd = json.loads(kubectl.run("get", "crd/appreleases.apprelease.io", "-o", "json"))
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    while not established():
        if time.monotonic() > deadline:
            raise AssertionError("the AppRelease CRD is not Established")
        time.sleep(0.3)


@contextmanager
def local_environment(nodes: int, *, keep: bool = False, crd_dir: Path = CRD_DIR) -> Iterator[Environment]:
    """Start a private cluster (audit log on, for the operator's user only); always stop it."""
    work_dir = Path(tempfile.mkdtemp(prefix="apprelease-bench-"))
    binaries = ensure_binaries(progress=log.info)
    cluster = LocalCluster(
        work_dir / "cluster",
        nodes=nodes,
        bin_dir=binaries,
        audit_policy=metadata_audit_policy([OPERATOR_USER]),
    )
    failed = True
    try:
        cluster.up(timeout=CLUSTER_START_TIMEOUT_SECONDS, progress=log.info)
        kubectl = Kubectl(binaries / "kubectl", cluster.kubeconfig)
        kubectl.run("apply", "--server-side", "-f", str(crd_dir))
        _wait_established(kubectl)
        env = Environment(
            work_dir=work_dir,
            cluster=cluster,
            kubectl=kubectl,
            api=Api(cluster.kubeconfig),
            audit=AuditLog(cluster.audit_log, OPERATOR_USER),
            operator_kubeconfig=_operator_identity(kubectl, cluster, work_dir),
        )
        yield env
        failed = False
    finally:
        cluster.down()
        if failed or keep:
            log.info("bench files (logs, manifests) kept in %s", work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
