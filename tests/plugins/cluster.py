"""pytest plugin: a real local Kubernetes control plane for e2e tests.

Fixtures:
  kube_cluster (session)  the cluster: `.kubeconfig`, `.kubectl(...)`. Reuses the cluster of
                          $APPRELEASE_TEST_KUBECONFIG if set, else starts a LocalCluster in a
                          temp dir (building the binaries first if needed) and stops it at the
                          end of the session. A cluster that cannot start fails the tests.
  namespace (function)    a fresh namespace, deleted (without waiting) afterwards.
Helpers:
  wait_for(predicate, timeout, interval, message)  poll until truthy, else AssertionError.
  NotYet(observed)  a falsy predicate result that shows up in wait_for's timeout message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest
import yaml

if TYPE_CHECKING:
    from apprelease_dev.cluster import LocalCluster

# The developer tools (apprelease_dev: building and running the control plane) are imported
# where a cluster is wanted, never when this plugin loads: unit tests run without them.

KUBECONFIG_ENV = "APPRELEASE_TEST_KUBECONFIG"
# With a reused cluster: its apiserver's audit log, if it writes one (the policy of
# apprelease_dev.components.service_account_writes_audit_policy, or broader).
AUDIT_LOG_ENV = "APPRELEASE_TEST_AUDIT_LOG"
# Optional: the kubectl to use against a reused cluster (default: ours, else PATH's).
KUBECTL_ENV = "APPRELEASE_KUBECTL"
KUBECTL_TIMEOUT_SECONDS = 60.0
CLUSTER_START_TIMEOUT_SECONDS = 180.0
NAMESPACE_READY_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


class NotYet:
    """A falsy predicate result that still says what was seen, for wait_for's timeout message.

    `return NotYet(status)` instead of `return False` when the condition does not hold yet.
    """

    def __init__(self, observed: object) -> None:
        self.observed = observed

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"NotYet({self.observed!r})"


def wait_for(
    predicate: Callable[[], T | NotYet],
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    On timeout raise AssertionError with `message` and the last value returned: have the
    predicate return `NotYet(what_it_saw)` rather than False, and that value explains the
    failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return cast(T, value)
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {message}; last value: {value!r}"
            )
        time.sleep(interval)


@dataclass
class KubeCluster:
    kubeconfig: Path
    kubectl_binary: Path
    # The cluster this session started, or None when reusing $APPRELEASE_TEST_KUBECONFIG.
    local: LocalCluster | None = None

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = KUBECTL_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with `check`, a failure raises AssertionError
        carrying kubectl's stderr (CalledProcessError would hide it)."""
        command = [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited with {result.returncode}:\n{result.stderr or result.stdout}"
            )
        return result

    @property
    def audit_log(self) -> Path | None:
        """The apiserver's audit log of ServiceAccount writes: ours when this session started the
        cluster, else $APPRELEASE_TEST_AUDIT_LOG (None when there is none)."""
        if self.local is not None:
            return self.local.audit_log
        configured = os.environ.get(AUDIT_LOG_ENV)
        return Path(configured) if configured else None

    def print_to_pod_logs(self, *lines: str) -> None:
        """What KWOK's simulated containers print next: every followed `kubectl logs` (and the
        console's log view) receives it. Only on the cluster this session started."""
        if self.local is None:
            raise AssertionError("pod logs are written through KWOK's log file: run on the local cluster "
                                 "this session starts (unset APPRELEASE_TEST_KUBECONFIG)")
        from apprelease_dev.kwok_logs import append_pod_log

        append_pod_log(self.local.pod_log, *lines)

    def get_json(self, *args: str) -> Any:
        """`kubectl get <args> -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(
        self, *documents: dict[str, Any], namespace: str | None = None, server_side: bool = False
    ) -> None:
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        if server_side:
            args.append("--server-side")
        self.kubectl(*args, input=yaml.safe_dump_all(documents, sort_keys=False))


def _kubectl_for_reused_cluster() -> Path:
    from apprelease_dev.build import bin_dir, ensure_binaries, missing_binaries

    configured = os.environ.get(KUBECTL_ENV)
    if configured:
        return Path(configured)
    if not missing_binaries(bin_dir()):
        return bin_dir() / "kubectl"
    on_path = shutil.which("kubectl")
    if on_path:
        return Path(on_path)
    return ensure_binaries() / "kubectl"


# Carries a build failure from collection time to the fixture that reports it.
_build_error_key = pytest.StashKey[Exception]()


def wants_fixture(session: pytest.Session, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in session.items)


def build_before_tests(
    session: pytest.Session, build: Callable[[Callable[[str], None]], object], error_key: pytest.StashKey[Exception]
) -> None:
    """Run ``build`` (with progress on the terminal) before the first test, so a (slow, cold)
    build does not count against that test's timeout; a BuildError is kept in the stash under
    ``error_key`` for the fixture to report as the test's failure."""
    from apprelease_dev.go_runner import BuildError

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    try:
        build(progress)
    except BuildError as error:
        session.config.stash[error_key] = error


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before the first test. A failure is reported by the kube_cluster
    fixture."""
    if os.environ.get(KUBECONFIG_ENV) or not wants_fixture(session, "kube_cluster"):
        return
    from apprelease_dev.build import bin_dir, ensure_binaries, missing_binaries

    if not missing_binaries(bin_dir()):
        return
    build_before_tests(session, lambda progress: ensure_binaries(progress=progress), _build_error_key)


@pytest.fixture(scope="session")
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    reused = os.environ.get(KUBECONFIG_ENV)
    if reused:
        yield KubeCluster(Path(reused), _kubectl_for_reused_cluster())
        return
    from apprelease_dev.build import ensure_binaries
    from apprelease_dev.cluster import ClusterError, LocalCluster
    from apprelease_dev.components import service_account_writes_audit_policy
    from apprelease_dev.go_runner import BuildError

    build_error = request.config.stash.get(_build_error_key, None)
    if build_error is not None:
        pytest.fail(f"could not build the control-plane binaries: {build_error}", pytrace=False)
    try:
        binaries = ensure_binaries()
    except BuildError as error:
        pytest.fail(f"could not build the control-plane binaries: {error}", pytrace=False)
    # With the add-ons: metrics.k8s.io (metrics-server over KWOK's simulated usage) for HPA
    # tests, and the Gateway API CRDs.
    # Audited: the writes of ServiceAccounts (an operator under the production RBAC), so tests
    # can check from the apiserver's side who wrote what, and when.
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kube-cluster"), bin_dir=binaries, with_addons=True,
        audit_policy=service_account_writes_audit_policy(),
    )
    try:
        cluster.up(timeout=CLUSTER_START_TIMEOUT_SECONDS, progress=lambda line: None)
    except ClusterError as error:
        # up() already stopped whatever it had started; its logs stay for inspection.
        pytest.fail(
            f"the local cluster could not start: {error}\n(logs: {cluster.logs_dir})", pytrace=False
        )
    try:
        yield KubeCluster(cluster.kubeconfig, binaries / "kubectl", cluster)
    finally:
        cluster.down()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    kube_cluster.kubectl("create", "namespace", name)
    # Pods are rejected until the namespace's `default` ServiceAccount exists.
    wait_for(
        lambda: (
            kube_cluster.kubectl(
                "get", "serviceaccount", "default", "-n", name, check=False
            ).returncode
            == 0
        ),
        timeout=NAMESPACE_READY_TIMEOUT_SECONDS,
        message=f"ServiceAccount {name}/default",
    )
    yield name
    _force_delete_slow_pods(kube_cluster, name)
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# KWOK honours a pod's grace period: a test's pod with a long one keeps its namespace
# Terminating that long, and later tests that wait for other namespaces to go time out.
SLOW_GRACE_SECONDS = 120


def _force_delete_slow_pods(kube_cluster: KubeCluster, namespace: str) -> None:
    listed = kube_cluster.kubectl("get", "pods", "-n", namespace, "-o", "json", check=False)
    if listed.returncode != 0:
        return
    slow = [p["metadata"]["name"] for p in json.loads(listed.stdout).get("items", [])
            if (p["spec"].get("terminationGracePeriodSeconds") or 0) > SLOW_GRACE_SECONDS]
    if slow:
        kube_cluster.kubectl("delete", "pods", "-n", namespace, "--grace-period=0", "--force",
                             "--wait=false", *slow, check=False)
