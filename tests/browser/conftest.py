"""Fixtures for the console's browser tests: Debian's Chromium driven by Playwright, and the
console (`apprelease console`) as a subprocess against the real local control plane with the
real operator (tests/plugins).

Chromium is /usr/bin/chromium from Debian's packages (.ci/run installs it); Playwright never
downloads a browser here. Playwright's launch() gives every browser a fresh user-data-dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import free_port
from tests.support import ROOT

REBOUND_NAME = "rebound.example"
CHROMIUM = Path(os.environ.get("APPRELEASE_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium's own connections are refused by a closed
# network, many at a time; the rest keep it from reaching out at all.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    # A website whose name resolves to this machine, as after a DNS rebinding attack.
    f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1",
]
CONSOLE_START_TIMEOUT = 30.0
# Set to a directory (docs/) to keep the screenshots the tests take; else they go to tmp.
SCREENSHOTS_ENV = "APPRELEASE_SCREENSHOTS"


# Package scope: Playwright's sync API keeps an asyncio loop running in the main thread while
# it is open, and tests after these (asyncio.run in tests/unit) would fail inside it.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)", pytrace=False)
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@dataclass
class ConsoleProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        values: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(self.url + "metrics", timeout=5).text):
            for sample in family.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{label}}}"] = sample.value
        return values

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


StartConsole = Callable[..., ConsoleProcess]


@pytest.fixture
def start_console(tmp_path: Path, kube_cluster: KubeCluster, operator: Any,
                  request: pytest.FixtureRequest) -> Iterator[StartConsole]:
    """Start `apprelease console` (kubeconfig: the cluster's admin unless given); stopped after."""
    started: list[ConsoleProcess] = []

    def start(*args: str, kubeconfig: Path | None = None) -> ConsoleProcess:
        port = free_port()
        log_path = tmp_path / f"console-{len(started)}.log"
        command = [sys.executable, "-m", "apprelease.cli.main", "console", "--no-browser", "--port", str(port),
                   "--kubeconfig", str(kubeconfig or kube_cluster.kubeconfig), "-v", *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        env.pop("KUBECONFIG", None)
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        console = ConsoleProcess(f"http://127.0.0.1:{port}/", process, log_path)
        started.append(console)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the console exited with {process.returncode}:\n{console.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(console.url + "healthz", timeout=2).status_code == 200
            return False

        wait_for(healthy, CONSOLE_START_TIMEOUT, 0.2, f"the console to serve (log: {log_path})")
        return console

    yield start
    for console in started:
        console.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for console in started:
            print(f"--- console log {console.log_path}\n{console.log()[-4000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    created = browser.new_context(viewport={"width": 1400, "height": 900})
    yield created
    created.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    new = context.new_page()
    new.set_default_timeout(15_000)
    return new


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    return Path(configured) if configured else tmp_path


# Identities ----------------------------------------------------------------------------------

VIEW_RULES = [
    {"apiGroups": ["apprelease.io"], "resources": ["appreleases"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "controllerrevisions"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
]
EDIT_RULES = [*VIEW_RULES,
              {"apiGroups": ["apprelease.io"], "resources": ["appreleases"], "verbs": ["create", "patch", "update"]}]


@dataclass
class Identities:
    """ServiceAccounts and users bound to view-only or edit rules, cleaned up afterwards."""

    cluster: KubeCluster
    namespace: str
    tmp_path: Path
    suffix: str

    def role(self, name: str, rules: list[dict[str, Any]], subject: dict[str, str]) -> None:
        role_name = f"console-test-{name}-{self.suffix}"
        self.cluster.apply(
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": role_name, "labels": {"apprelease-test": self.suffix}}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": role_name, "labels": {"apprelease-test": self.suffix}},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
             "subjects": [subject]},
        )

    def service_account(self, name: str, rules: list[dict[str, Any]]) -> str:
        """A ServiceAccount with these rules; returns its token (TokenRequest API)."""
        self.cluster.kubectl("create", "serviceaccount", name, "-n", self.namespace)
        self.role(name, rules, {"kind": "ServiceAccount", "name": name, "namespace": self.namespace})
        return self.cluster.kubectl("create", "token", name, "-n", self.namespace, "--duration=1h").stdout.strip()

    def user(self, name: str, rules: list[dict[str, Any]]) -> None:
        self.role(name, rules, {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"})

    def kubeconfig(self, name: str, token: str) -> Path:
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        context = admin["contexts"][0]["context"]
        config = {
            "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": context["cluster"], "user": name,
                                                    "namespace": self.namespace}}],
            "current-context": name,
        }
        path = self.tmp_path / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def cleanup(self) -> None:
        self.cluster.kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"apprelease-test={self.suffix}",
                             "--wait=false", check=False)


@pytest.fixture
def identities(kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> Iterator[Identities]:
    # A letter first: an all-digit hex like "045281" is a number to kubectl's YAML, not a label value.
    made = Identities(kube_cluster, namespace, tmp_path, f"t{uuid.uuid4().hex[:6]}")
    yield made
    made.cleanup()
