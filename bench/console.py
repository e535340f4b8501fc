"""`python -m bench.console [--apps N] [--browsers K]`: the web console's figures.

A private cluster (audit log on for the console's ServiceAccount), N AppReleases with
statuses in every phase (written through the status subresource: no operator is needed to
measure the console), the console running as the Helm chart's ServiceAccount, and Debian's
headless Chromium driven by Playwright:

- first render: navigation start → all N rows in the page (the browser's own clock);
- update latency: `kubectl patch --subresource=status` → the row's message changes in the page,
  timed by a MutationObserver in the page (epoch ms, same machine clock);
- the console's RSS with K browsers open, and its peak;
- one watch per kind: the console's LIST/WATCH requests, from its metrics and from the
  apiserver's audit log, with K overview pages and K app pages open.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.sync_api import Page, sync_playwright

from apprelease_dev.build import ensure_binaries
from apprelease_dev.cluster import LocalCluster
from apprelease_dev.components import metadata_audit_policy
from bench.api import Api
from bench.environment import _wait_established
from bench.kubectl import Kubectl
from bench.operator_process import free_port
from bench.report import machine, write_section
from bench.workload import bench_apps

log = logging.getLogger("bench.console")
ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "apprelease"
NAMESPACE = "bench-console"
CONSOLE_NAMESPACE = "apprelease-system"
CONSOLE_USER = f"system:serviceaccount:{CONSOLE_NAMESPACE}:apprelease-console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
LATENCY_SAMPLES = 20
LATENCY_TARGET_MS = 1000.0
PHASES = ("Healthy",) * 16 + ("Progressing", "Progressing", "Paused", "Degraded")

# Records, in the page, when a row's message shows a given text (epoch milliseconds).
OBSERVER = """
window.__changes = {};
new MutationObserver(() => {
  for (const cell of document.querySelectorAll('#rows td.message-cell')) {
    const text = cell.textContent;
    if (text.startsWith('Mark') && !(text in window.__changes)) {
      window.__changes[text] = performance.timeOrigin + performance.now();
    }
  }
}).observe(document.getElementById('rows'), {subtree: true, childList: true, characterData: true});
"""


def status_for(index: int, phase: str) -> dict[str, Any]:
    canary = phase in ("Paused", "Degraded")
    status: dict[str, Any] = {
        "observedGeneration": 1, "phase": phase, "strategy": "canary" if canary else "rolling",
        "ready": "1/1" if phase != "Progressing" else "0/1", "readyReplicas": 1, "replicas": 1,
        "currentRevision": 2 if canary else 1, "stableRevision": 1,
        "message": {"Healthy": "revision 1 available: 1/1 ready", "Progressing": "rolling out revision 1",
                    "Paused": "canary revision 2 paused at step 2/3: promote to continue",
                    "Degraded": "canary revision 2 aborted (ProgressDeadline)"}[phase],
        "registration": {"provider": "kubernetes", "service": f"{NAMESPACE}/app-{index:05d}",
                         "summary": "1/1" if phase != "Progressing" else "0/1"},
    }
    if canary:
        state = ({"phase": "Aborted", "reason": "ProgressDeadline", "message": "not ready"} if phase == "Degraded"
                 else {"phase": "Stepping", "pauseStartTime": "2026-11-23T10:00:10Z"})
        status.update(step="2/3", currentStepIndex=1, stepCount=3, setWeight=25, actualWeight=50,
                      canaryRevision=2, canaryRevisionHash="h2", aborted=phase == "Degraded",
                      rollout={"canary": {"step": 1, "stepStartTime": "2026-11-23T10:00:00Z", **state}})
    else:
        status["rollout"] = {}
    return status


@dataclass
class ConsoleResult:
    apps: int
    browsers: int
    first_render_ms: list[float] = field(default_factory=list)
    dom_loaded_ms: list[float] = field(default_factory=list)  # the page skeleton, before its rows
    latency_ms: list[float] = field(default_factory=list)  # kubectl started → page changed
    latency_after_write_ms: list[float] = field(default_factory=list)  # kubectl exited → page changed
    rss_mib: float = 0.0
    rss_one_page_mib: float = 0.0
    hwm_mib: float = 0.0
    metrics_watches: dict[str, int] = field(default_factory=dict)
    metrics_lists: dict[str, int] = field(default_factory=dict)
    audit_watches: dict[str, int] = field(default_factory=dict)
    audit_lists: dict[str, int] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=dict)
    setup_seconds: float = 0.0


def _memory(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "metrics", timeout=10).text):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{label}}}"] = sample.value
    return found


def _audit(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The console's watch and list requests, by resource, as the apiserver logged them."""
    watches: Counter[str] = Counter()
    lists: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        event = json.loads(line)
        if (event.get("user") or {}).get("username") != CONSOLE_USER:
            continue
        resource = (event.get("objectRef") or {}).get("resource", "")
        if event.get("verb") == "watch" and event.get("stage") == "ResponseStarted":
            watches[resource] += 1
        elif event.get("verb") == "list" and event.get("stage") == "ResponseComplete":
            lists[resource] += 1
    return dict(sorted(watches.items())), dict(sorted(lists.items()))


@contextmanager
def _environment(work: Path) -> Iterator[tuple[LocalCluster, Kubectl, Api]]:
    binaries = ensure_binaries(progress=log.info)
    cluster = LocalCluster(work / "cluster", nodes=1, bin_dir=binaries,
                           audit_policy=metadata_audit_policy([CONSOLE_USER]))
    cluster.up(progress=log.info)
    try:
        kubectl = Kubectl(binaries / "kubectl", cluster.kubeconfig)
        kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds"))
        _wait_established(kubectl)
        yield cluster, kubectl, Api(cluster.kubeconfig)
    finally:
        cluster.down()


def _console_kubeconfig(cluster: LocalCluster, kubectl: Kubectl, work: Path) -> Path:
    """The Helm chart's console ServiceAccount and RBAC, and a token kubeconfig for it."""
    helm = Path(kubectl.binary).parent / "helm"
    rendered = subprocess.run([str(helm), "template", "apprelease", str(CHART), "--namespace", CONSOLE_NAMESPACE,
                               "--set", "console.enabled=true"], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "console"
            and d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    kubectl.run("create", "namespace", CONSOLE_NAMESPACE)
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    token = kubectl.run("create", "token", "apprelease-console", "-n", CONSOLE_NAMESPACE, "--duration=4h").strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
              "users": [{"name": "console", "user": {"token": token}}],
              "contexts": [{"name": "console", "context": {"cluster": admin["contexts"][0]["context"]["cluster"],
                                                           "user": "console"}}],
              "current-context": "console"}
    path = work / "console.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _create_apps(kubectl: Kubectl, api: Api, count: int) -> None:
    kubectl.run("create", "namespace", NAMESPACE)
    apps = bench_apps("app", NAMESPACE, count)
    for start in range(0, count, 250):
        kubectl.apply_documents(apps[start:start + 250])
    for index, app in enumerate(apps):
        path = f"/apis/apprelease.io/v1alpha1/namespaces/{NAMESPACE}/appreleases/{app['metadata']['name']}/status"
        api.kube.request("PATCH", path, body={"status": status_for(index, PHASES[index % len(PHASES)])},
                         content_type="application/merge-patch+json", resource="AppRelease/status")


def _first_render(page: Page, url: str, count: int) -> tuple[float, float]:
    """(every row in the page, DOMContentLoaded), ms after navigation start."""
    page.goto(url)
    rendered: float = page.wait_for_function(
        f"document.querySelectorAll('#rows tr[data-phase]').length >= {count} ? performance.now() : null",
        timeout=120_000, polling="raf").json_value()
    loaded: float = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    return rendered, loaded


def _latency(page: Page, kubectl: Kubectl, count: int, samples: int) -> tuple[list[float], list[float]]:
    page.evaluate(OBSERVER)
    from_start, from_exit = [], []
    for sample in range(samples):
        name = f"app-{(sample * 37) % count:05d}"
        marker = f"Mark{sample}"
        started = time.time() * 1000
        kubectl.run("patch", "appreleases", name, "-n", NAMESPACE, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"message": marker}}))
        exited = time.time() * 1000
        seen: float = page.wait_for_function(f"window.__changes[{json.dumps(marker)}] || null",
                                             timeout=30_000).json_value()
        from_start.append(seen - started)
        from_exit.append(seen - exited)
    return from_start, from_exit


def measure(apps: int, browsers: int, work: Path) -> ConsoleResult:
    result = ConsoleResult(apps, browsers)
    began = time.monotonic()
    with _environment(work) as (cluster, kubectl, api):
        console_kubeconfig = _console_kubeconfig(cluster, kubectl, work)
        _create_apps(kubectl, api, apps)
        result.setup_seconds = time.monotonic() - began
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log_file = (work / "console.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "apprelease.cli.main", "console", "--no-browser", "--port", str(port),
             "--kubeconfig", str(console_kubeconfig), "-v"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"console did not start: {(work / 'console.log').read_text()[-2000:]}")
                time.sleep(0.2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                # bypass_csp: our measuring functions run in the page; the console itself allows no eval.
                contexts = [browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
                            for _ in range(browsers)]
                pages = []
                for context in contexts:
                    page = context.new_page()
                    rendered, loaded = _first_render(page, url, apps)
                    result.first_render_ms.append(rendered)
                    result.dom_loaded_ms.append(loaded)
                    pages.append(page)
                    if len(pages) == 1:
                        result.rss_one_page_mib = _memory(process.pid)[0]
                for context in contexts:
                    app_page = context.new_page()
                    app_page.goto(f"{url}apps/{NAMESPACE}/app-00000")
                    app_page.wait_for_selector("#sec-header #phase")
                pages[0].bring_to_front()  # the page a person is looking at
                latencies = _latency(pages[0], kubectl, apps, LATENCY_SAMPLES)
                result.latency_ms, result.latency_after_write_ms = latencies
                result.rss_mib, result.hwm_mib = _memory(process.pid)
                metrics = _metrics(url)
                for key, value in metrics.items():
                    if key.startswith("apprelease_console_watch_requests_total{"):
                        labels = dict(p.split("=") for p in key[key.index("{") + 1:-1].split(","))
                        target = result.metrics_watches if labels["verb"] == "watch" else result.metrics_lists
                        target[labels["kind"]] = int(value)
                    elif key.startswith("apprelease_console_streams_open{"):
                        result.streams[key[key.index("=") + 1:-1]] = int(value)
                time.sleep(1.0)  # the audit log is written as requests finish: let the last lines land
                result.audit_watches, result.audit_lists = _audit(cluster.audit_log)
                browser.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
            log_file.close()
    return result


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms"


def report(r: ConsoleResult) -> str:
    passed = max(r.latency_ms) <= LATENCY_TARGET_MS
    return "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m bench.console --apps {r.apps}"
        f" --browsers {r.browsers}` on {machine()}; Chromium (Debian) headless, driven by Playwright.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| first render of the overview, {r.apps:,} AppReleases (navigation → every row in the page) | "
        + ", ".join(f"{v:.0f} ms" for v in r.first_render_ms) + " (browser 1, 2, …; the page skeleton: "
        + ", ".join(f"{v:.0f}" for v in r.dom_loaded_ms) + " ms) | — |",
        f"| update latency: `kubectl patch --subresource=status` started → row's message changed in the page"
        f" ({len(r.latency_ms)} samples) | {_ms(r.latency_ms)} | ≤ 1 s: {'pass' if passed else '**miss**'} |",
        f"| same, from kubectl's exit (the write is stored) | {_ms(r.latency_after_write_ms)} | — |",
        f"| console RSS: one overview open / {r.browsers} overviews + {r.browsers} app pages open / peak"
        f" | {r.rss_one_page_mib:.0f} / {r.rss_mib:.0f} / {r.hwm_mib:.0f} MiB | — |",
        f"| watch requests by kind, console metrics ({r.streams.get('overview', 0)} overview and"
        f" {r.streams.get('app', 0)} app pages open) | "
        + ", ".join(f"{k} {v}" for k, v in sorted(r.metrics_watches.items())) + " | one per kind |",
        "| the same, counted by the apiserver's audit log (console's ServiceAccount) | "
        + ", ".join(f"{k} {v}" for k, v in r.audit_watches.items()) + " | one per kind |",
        "| LIST requests (audit log): one per kind at start, paged by 500 | "
        + ", ".join(f"{k} {v}" for k, v in r.audit_lists.items()) + " | — |",
        "",
        f"Set-up (cluster, {r.apps:,} AppReleases and their statuses) took {r.setup_seconds:.0f} s.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--browsers", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="apprelease-bench-console-"))
    try:
        result = measure(args.apps, args.browsers, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = report(result)
    print(text)
    if not args.no_docs:
        write_section("console", text)
    return 0 if max(result.latency_ms) <= LATENCY_TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
