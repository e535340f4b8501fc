"""The embedded default: local control plane + CRD + operator + the example, one command.

`apprelease dev run` is what a user without a cluster runs first: it builds what is
missing, starts everything, applies examples/order-service.yaml and shows it converge.
Ctrl-C, SIGTERM or SIGHUP stop the operator and the cluster it started; whatever it started
is recorded in the cluster's state, so `dev down` stops it even after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from apprelease.api.crd import custom_resource_definition
from apprelease.k8s.client import ApiError, Kube, load_api_client

from .build import ensure_binaries
from .cluster import LocalCluster

OPERATOR_STOP_GRACE_SECONDS = 20.0
DEV_MANAGER = "apprelease-dev"  # the field manager of what the demo applies, as a user would
CRD_NAME = "appreleases.apprelease.io"
Progress = Callable[[str], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def install_crd(kube: Kube) -> None:
    kube.apply(custom_resource_definition(), manager=DEV_MANAGER)

    def established() -> bool:
        crd = kube.get("CustomResourceDefinition", None, CRD_NAME)
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    _wait(established, 60, "the AppRelease CRD to be established")


def load_example(path: Path, *, demo: bool) -> tuple[dict[str, Any], str]:
    """The AppRelease in ``path``, and a note on what was changed for the local demo.

    The shipped example names its team's Nacos (``nacos.nacos.svc``), which does not exist
    here; with it the demo would hold every rollout ("registry unreachable"). For the demo
    the registry falls back to the default, the cluster's EndpointSlices.
    """
    body = yaml.safe_load(path.read_text())
    nacos = ((body.get("spec") or {}).get("registry") or {}).get("nacos")
    if not demo or not nacos:
        return body, ""
    address = str(nacos.get("serverAddr", "")).split(",")[0]
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "8848")
    try:
        socket.getaddrinfo(host, int(port or 8848))
        return body, ""
    except (OSError, ValueError):
        del body["spec"]["registry"]
        return body, (f"registry: Kubernetes EndpointSlices ({address} does not resolve here,"
                      " so the example's Nacos block is left out)")


def apply_example(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    namespace = body["metadata"].get("namespace", "default")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, manager=DEV_MANAGER)

    def service_account() -> bool:
        try:
            kube.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            return True
        except ApiError:
            return False

    _wait(service_account, 30, f"namespace {namespace} to be ready")
    kube.apply(body, manager=DEV_MANAGER)
    return body


OPERATOR = "operator"  # its name in the cluster's state and its log's (logs/operator.log)
NACOS = "nacos"


@contextmanager
def operator_process(cluster: LocalCluster, progress: Progress) -> Iterator[Path]:
    """The operator against `cluster`, recorded in the cluster's state (so `dev down` stops
    it even if this process dies without cleaning up); stopped on exit if started here.
    Yields its log's path."""
    log_path = cluster.layout.log(OPERATOR)
    if cluster.attached(OPERATOR) is not None:
        progress("reusing the operator already running for this cluster")
        yield log_path
        return
    cluster.start_attached(OPERATOR, operator_command(cluster.kubeconfig))
    try:
        yield log_path
    finally:
        _tell(progress, "stopping the operator")
        cluster.stop_attached(OPERATOR, grace_seconds=OPERATOR_STOP_GRACE_SECONDS)


def _tell(progress: Progress, message: str) -> None:
    """Report a clean-up step; after SIGHUP the terminal may be gone, and a failed write
    must not skip the clean-up itself."""
    with contextlib.suppress(OSError):
        progress(message)


@contextmanager
def embedded_cluster(state_dir: Path, progress: Progress) -> Iterator[LocalCluster]:
    """The local control plane; stopped on exit only if this call started it."""
    cluster = LocalCluster(
        state_dir, bin_dir=ensure_binaries(progress=progress), with_addons=True
    )
    started_here = not cluster.is_running()
    if started_here:
        cluster.up(progress=progress)
    else:
        progress(f"reusing the running cluster in {state_dir}")
    try:
        yield cluster
    finally:
        if started_here:
            _tell(progress, "stopping the local control plane")
            cluster.down()


def kube_for(cluster: LocalCluster) -> Kube:
    return Kube(load_api_client(str(cluster.kubeconfig), pool_size=4))


def operator_command(kubeconfig: Path) -> list[str]:
    return [
        sys.executable, "-m", "apprelease.cli.main", "--kubeconfig", str(kubeconfig), "run",
        "--metrics-port", str(_free_port()), "--liveness", f"http://127.0.0.1:{_free_port()}/healthz",
    ]


def nacos_command(workdir: Path, version: str = "2") -> list[str]:
    return [sys.executable, "-m", "apprelease_dev.nacos", "--version", version, "--workdir", str(workdir)]
