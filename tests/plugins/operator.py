"""pytest plugin: the CRD installed and the operator running against the real cluster.

Fixtures:
  crd (session)        the generated CRD applied and Established.
  operator (session)   `apprelease run` as a subprocess (cluster-wide, the only writer: no leader
                       election unless asked for); `.kill()` (SIGKILL),
                       `.start()`, `.metrics()`, `.writes()`, `.log_tail()`. Its log is attached
                       to every failing test that used it.
  arl (function)       helpers to apply / read / wait for AppReleases in the test namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.support import ROOT

OPERATOR_START_TIMEOUT = 60.0
# The tests' Nacos servers listen on loopback, which the operator refuses as a registry address
# unless allowed (docs/security.md): the test operator is told so explicitly.
LOOPBACK_REGISTRY = ("--allow-registry-network", "127.0.0.0/8", "--allow-registry-network", "::1/128")
# The tests' notification receivers (tests/e2e/test_notifications.py) listen on loopback too.
LOOPBACK_NOTIFICATIONS = ("--allow-notification-network", "127.0.0.0/8")
WRITE_VERBS = {"post", "put", "patch", "delete"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_dir: Path):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / "operator-0.log"
        self.metrics_port = 0
        self.liveness_port = 0
        self.starts = 0

    def start(
        self, *, kubeconfig: Path | None = None, extra_args: tuple[str, ...] = (),
        leader_election: bool = False, env: dict[str, str] | None = None, loopback_registry: bool = True,
    ) -> None:
        """``leader_election``: as in production (give the Lease in ``extra_args``); without it,
        a restart after a kill need not wait for the killed process's lease to expire.
        ``loopback_registry``: allow the local (loopback) Nacos, refused by default."""
        assert self.process is None, "operator already running"
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.log_path = self.log_dir / f"operator-{self.starts}.log"
        self.starts += 1
        command = [
            sys.executable,
            "-m",
            "apprelease.cli.main",
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            "run",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            *(() if leader_election else ("--no-leader-elect",)),
            *(LOOPBACK_REGISTRY + LOOPBACK_NOTIFICATIONS if loopback_registry else ()),
            *extra_args,
        ]
        environment = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), **(env or {})}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        wait_for(
            self._healthy, OPERATOR_START_TIMEOUT, 0.2, f"operator health (log: {self.log_path})"
        )

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.process.returncode}:\n{self.log_tail()}"
            )
        try:
            httpx.get(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1
            ).raise_for_status()
            httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).raise_for_status()
            return True
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers run, as when a node dies."""
        self.stop(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        """Send a signal and leave the process be (SIGSTOP/SIGCONT: a frozen process)."""
        assert self.process is not None, "operator not running"
        os.killpg(self.process.pid, sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def replaced_by(
        self, kubeconfig: Path, extra_args: tuple[str, ...] = (), *, loopback_registry: bool = True
    ) -> Iterator[OperatorProcess]:
        """Run a differently configured operator for the duration of a block."""
        self.stop()
        try:
            self.start(kubeconfig=kubeconfig, extra_args=extra_args, loopback_registry=loopback_registry)
            yield self
        finally:
            self.stop()
            self.start()

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{label}}}"] = sample.value
        return values

    def writes_by_kind(self) -> dict[str, int]:
        """API writes made by this operator process so far, by verb and resource."""
        found = {}
        for key, value in self.metrics().items():
            if key.startswith("apprelease_api_requests_total{") and any(
                f"verb={verb}" in key for verb in WRITE_VERBS
            ):
                found[key.removeprefix("apprelease_api_requests_total")] = int(value)
        return found

    def writes(self) -> int:
        return sum(self.writes_by_kind().values())

    def log_tail(self, lines: int = 80, mentioning: str = "") -> str:
        """The log's last `lines` lines, or the last ones that mention `mentioning` (a test's
        namespace: the operator is shared by the session, so its tail is often another test's)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no operator log)"
        if mentioning:
            text = [line for line in text if mentioning in line]
        return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def crd(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))

    # Not `kubectl wait --for=condition=...` (nor a jsonpath filter): both fail outright
    # while the CRD has no conditions yet, as a busy apiserver shows just after the apply.
    def established() -> bool:
        crd = json.loads(kube_cluster.kubectl("get", "crd/appreleases.apprelease.io", "-o", "json").stdout)
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, 60, message="the AppRelease CRD to be Established")


@pytest.fixture(scope="session")
def operator(
    kube_cluster: KubeCluster, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(kube_cluster.kubeconfig, tmp_path_factory.mktemp("operator"))
    process.start()
    yield process
    process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "operator" in getattr(item, "fixturenames", ()):
        process = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
        if isinstance(process, OperatorProcess):
            namespace = item.funcargs.get("namespace") if hasattr(item, "funcargs") else None
            if isinstance(namespace, str):
                report.sections.append((f"operator log ({namespace})", process.log_tail(200, namespace)))
            report.sections.append(("operator log (tail)", process.log_tail(40)))


def status_summary(status: dict[str, Any]) -> dict[str, Any]:
    """What a timed-out wait shows of the status it last saw: enough to tell why."""
    keys = ("phase", "message", "observedGeneration", "stableRevision", "currentRevision",
            "currentStepIndex", "aborted")
    summary: dict[str, Any] = {k: status[k] for k in keys if k in status}
    summary["conditions"] = [
        f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
        for c in status.get("conditions") or [] if c.get("status") == "True" or c.get("type") == "Ready"
    ]
    registration = status.get("registration") or {}
    if registration:
        summary["registration"] = {k: v for k, v in registration.items() if k != "instances"}
    return summary


class AppReleases:
    """Apply and observe AppReleases in one namespace, through kubectl (a real client)."""

    def __init__(self, cluster: KubeCluster, namespace: str):
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, body: dict[str, Any]) -> None:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        self.cluster.apply(body, namespace=self.namespace, server_side=True)

    def get(self, name: str) -> dict[str, Any]:
        return self.cluster.get_json("appreleases", name, "-n", self.namespace)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch(self, name: str, patch: dict[str, Any], kind: str = "appreleases") -> None:
        import json

        self.cluster.kubectl(
            "patch", kind, name, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def wait(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
        what: str = "",
    ) -> dict[str, Any]:
        def check() -> Any:
            status = self.status(name)
            return status if predicate(status) else NotYet(status_summary(status))

        return wait_for(check, timeout, 0.3, what or f"{name} status")

    def wait_phase(
        self, name: str, phase: str, timeout: float = 60, **fields: Any
    ) -> dict[str, Any]:
        def ok(status: dict[str, Any]) -> bool:
            current = self.get(name)
            generation = current["metadata"]["generation"]
            return (
                status.get("phase") == phase
                and status.get("observedGeneration") == generation
                and all(status.get(k) == v for k, v in fields.items())
            )

        return self.wait(name, ok, timeout, f"{name} phase {phase} {fields or ''}")

    def kubectl_json(self, *args: str) -> Any:
        return self.cluster.get_json(*args, "-n", self.namespace)

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.cluster.get_json(
            "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={name}"
        )["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or "")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-m",
            "apprelease.cli.main",
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "-n",
            self.namespace,
            *args,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "COLUMNS": "200"}
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"apprelease {' '.join(args)} failed: {result.stderr}{result.stdout}"
            )
        return result


@pytest.fixture
def arl(kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess) -> AppReleases:
    return AppReleases(kube_cluster, namespace)


def hold_still(read: Callable[[], Any], seconds: float, interval: float = 0.5) -> Any:
    """Assert that ``read()`` keeps returning the same value for ``seconds``: the one place
    where a test must wait on purpose (idleness is the absence of change)."""
    first = read()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = read()
        assert current == first, f"changed from {first!r} to {current!r}"
        time.sleep(interval)
    return first


def settled(read: Callable[[], Any], quiet_seconds: float, timeout: float) -> Any:
    """Wait until ``read()`` has returned the same value for ``quiet_seconds`` and return it:
    trailing writes (coalesced status updates, late watch events) may still land first."""

    def still() -> bool:
        try:
            hold_still(read, quiet_seconds, interval=0.1)
        except AssertionError:
            return False
        return True

    wait_for(still, timeout, 0.1, f"{quiet_seconds:g} s without change")
    return read()


def other_namespaces_gone(cluster: KubeCluster, mine: str) -> None:
    """Idleness is only measurable once earlier tests' namespaces finished terminating."""

    def quiet() -> bool | NotYet:
        items = cluster.get_json("namespaces")["items"]
        left = [(n["metadata"]["name"], n.get("status") or {}) for n in items
                if n["metadata"]["name"].startswith("e2e-") and n["metadata"]["name"] != mine]
        # What keeps each one (the namespace controller's conditions), to read a failure.
        return not left or NotYet([(name, [c.get("message") for c in status.get("conditions") or []
                                           if c.get("status") == "True"]) for name, status in left])

    wait_for(quiet, 120, 0.5, "other test namespaces to terminate")


def service_account_kubeconfig(cluster: KubeCluster, namespace: str, account: str, tmp_path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a token from the TokenRequest API)."""
    import yaml

    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = admin["contexts"][0]["context"]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": context["cluster"], "user": account}}],
        "current-context": account,
    }
    path = tmp_path / f"{account}-kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path
