"""The embedded default: local control plane + CRD + operator + the example, one command.

`apprelease dev run` is what a user without a cluster runs first: it builds what is
missing, starts everything, applies examples/order-service.yaml and shows it converge.
Ctrl-C stops the operator and the cluster it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
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


@contextmanager
def operator_process(kubeconfig: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with background_process(operator_command(kubeconfig), log_path) as process:
        yield process


@contextmanager
def console_process(kubeconfig: Path, log_path: Path) -> Iterator[str]:
    """`apprelease console` (the kubeconfig's identity, no browser opened); yields its URL
    once it serves."""
    port = CONSOLE_PORT if _port_free(CONSOLE_PORT) else _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "apprelease.cli.main", "console", "--kubeconfig", str(kubeconfig),
               "--no-browser", "--port", str(port)]
    with background_process(command, log_path) as process:

        def serving() -> bool:
            if process.poll() is not None:
                raise TimeoutError(f"the console exited with {process.returncode} (log: {log_path})")
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


@contextmanager
def background_process(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def embedded_cluster(state_dir: Path, progress: Progress) -> Iterator[LocalCluster]:
    """The local control plane; stopped on exit only if this call started it."""
    cluster = LocalCluster(state_dir, bin_dir=ensure_binaries(progress=progress))
    started_here = not cluster.is_running()
    if started_here:
        cluster.up(progress=progress)
    else:
        progress(f"reusing the running cluster in {state_dir}")
    try:
        yield cluster
    finally:
        if started_here:
            progress("stopping the local control plane")
            cluster.down()


def kube_for(cluster: LocalCluster) -> Kube:
    return Kube(load_api_client(str(cluster.kubeconfig), pool_size=4))


def start_detached(command: list[str], log_path: Path, pid_path: Path) -> int:
    """Start a process that outlives this command (its own session); remember its PID."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_path.write_text(str(process.pid))
    return process.pid


def stop_detached(pid_path: Path, grace_seconds: float = 20) -> bool:
    """Stop a process started by start_detached (its whole process group); True if it ran."""
    try:
        pid = int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    pid_path.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def operator_command(kubeconfig: Path) -> list[str]:
    return [
        sys.executable, "-m", "apprelease.cli.main", "--kubeconfig", str(kubeconfig), "run",
        "--metrics-port", str(_free_port()), "--liveness", f"http://127.0.0.1:{_free_port()}/healthz",
    ]


def nacos_command(workdir: Path, version: str = "2") -> list[str]:
    return [sys.executable, "-m", "apprelease_dev.nacos", "--version", version, "--workdir", str(workdir)]
