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
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from apprelease.api.crd import custom_resource_definition
from apprelease.k8s.client import ApiError, Kube, load_api_client

from .build import ensure_binaries
from .cluster import LocalCluster
from .state import ComponentState

ATTACHED_STOP_GRACE_SECONDS = 20.0
DEV_MANAGER = "apprelease-dev"  # the field manager of what the demo applies, as a user would
CRD_NAME = "appreleases.apprelease.io"
CONSOLE_PORT = 7070  # `apprelease console`'s default; any free port when taken
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


# Names of the processes started with the cluster, in its state and their logs' names.
OPERATOR = "operator"
CONSOLE = "console"
NACOS = "nacos"


@contextmanager
def attached_process(
    cluster: LocalCluster, name: str, command: list[str], progress: Progress
) -> Iterator[ComponentState]:
    """`command` as the cluster's process `name`, recorded in the cluster's state (so `dev
    down` stops it even if this process dies without cleaning up); stopped on exit if
    started here. One already running under that name is reused, not doubled."""
    running = cluster.attached(name)
    if running is not None:
        progress(f"reusing the {name} already running for this cluster")
        yield running
        return
    started = cluster.start_attached(name, command)
    try:
        yield started
    finally:
        _tell(progress, f"stopping the {name}")
        cluster.stop_attached(name, grace_seconds=ATTACHED_STOP_GRACE_SECONDS)


@contextmanager
def operator_process(cluster: LocalCluster, progress: Progress) -> Iterator[Path]:
    """The operator against `cluster` (see attached_process); yields its log's path."""
    with attached_process(cluster, OPERATOR, operator_command(cluster.kubeconfig), progress):
        yield cluster.layout.log(OPERATOR)


@contextmanager
def console_process(cluster: LocalCluster, progress: Progress) -> Iterator[str]:
    """`apprelease console` (the kubeconfig's identity, no browser opened), see
    attached_process; yields its URL once it serves."""
    port = CONSOLE_PORT if _port_free(CONSOLE_PORT) else _free_port()
    command = [sys.executable, "-m", "apprelease.cli.main", "console", "--kubeconfig",
               str(cluster.kubeconfig), "--no-browser", "--port", str(port)]
    with attached_process(cluster, CONSOLE, command, progress) as console:
        url = f"http://127.0.0.1:{console.command[console.command.index('--port') + 1]}/"
        log_path = cluster.layout.log(CONSOLE)

        def serving() -> bool:
            if cluster.attached(CONSOLE) is None:
                raise TimeoutError(f"the console exited (log: {log_path})")
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        _wait(serving, 60, f"the console on {url}")
        yield url


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
        # One local process, the only writer: no Lease (a restart after a crash need not wait
        # for the old one's lease to expire).
        "--no-leader-elect",
        # The local Nacos (`dev up --nacos`) listens on loopback, refused as a registry address
        # unless allowed: a development cluster allows it, explicitly.
        "--allow-registry-network", "127.0.0.0/8", "--allow-registry-network", "::1/128",
    ]


def nacos_command(workdir: Path, version: str = "2") -> list[str]:
    return [sys.executable, "-m", "apprelease_dev.nacos", "--version", version, "--workdir", str(workdir)]
