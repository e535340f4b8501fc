"""The CLI as a pipeline calls it, against the real apiserver and operator: `status
--timeout` exit codes (Healthy, Degraded, timeout), `list`, `set image`, `-o`, `get -w
--timeout`, and one-line errors for a missing kubeconfig or an unreachable apiserver."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_canary import canary_app
from tests.plugins.cluster import KubeCluster
from tests.plugins.operator import AppReleases
from tests.support import ROOT

pytestmark = pytest.mark.e2e

OK, FAILED, TIMEOUT, ERROR = 0, 1, 3, 4


def rolling_app(name: str, image: str = "registry.local/shop:v1") -> dict[str, Any]:
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": name},
            "spec": {"image": image, "replicas": 2, "port": 8080}}


def test_status_exit_codes_for_healthy_timeout_and_degraded(arl: AppReleases) -> None:
    arl.apply(canary_app())
    healthy = arl.cli("status", "shop", "--timeout", "50s", check=False)
    assert healthy.returncode == OK, healthy.stderr + healthy.stdout
    assert healthy.stdout.splitlines()[-1].startswith("Healthy")

    # A new image: status judges the new generation, which pauses at step 2 for a promote.
    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    started = time.monotonic()
    paused = arl.cli("status", "shop", "--timeout", "8s", check=False)
    assert paused.returncode == TIMEOUT, paused.stderr + paused.stdout
    assert 7 <= time.monotonic() - started < 30
    assert "Paused" in paused.stdout
    assert "error: timed out after 8s waiting for shop (Paused" in paused.stderr

    arl.cli("abort", "shop")
    degraded = arl.cli("status", "shop", "--timeout", "50s", check=False)
    assert degraded.returncode == FAILED, degraded.stderr + degraded.stdout
    assert degraded.stdout.splitlines()[-1].startswith("Degraded")

    missing = arl.cli("status", "nothing", "--timeout", "5s", check=False)
    assert missing.returncode == ERROR and '"nothing" not found' in missing.stderr


def test_set_image_list_and_output_formats(arl: AppReleases, kube_cluster: KubeCluster) -> None:
    for name in ("shop", "web"):
        arl.apply(rolling_app(name))
    for name in ("shop", "web"):
        assert arl.cli("status", name, "--timeout", "50s", check=False).returncode == OK

    changed = arl.cli("set", "image", "shop", "registry.local/shop:v2")
    assert "shop: image set to registry.local/shop:v2" in changed.stdout
    assert arl.cli("status", "shop", "--timeout", "50s", check=False).returncode == OK
    assert arl.cli("get", "shop", "-o", "jsonpath={.spec.image} {.status.currentRevision}").stdout == \
        "registry.local/shop:v2 2"

    listed = arl.cli("list").stdout.splitlines()
    kubectl = kube_cluster.kubectl("get", "arl", "-n", arl.namespace).stdout.splitlines()
    assert listed[0].split() == kubectl[0].split()  # the CRD's printer columns, as kubectl shows them
    assert [row.split()[:3] for row in listed[1:]] == [row.split()[:3] for row in kubectl[1:]]
    assert [row.split()[0] for row in listed[1:]] == ["shop", "web"]

    everywhere = arl.cli("list", "-A", "-o", "wide").stdout.splitlines()
    assert everywhere[0].split()[:3] == ["NAMESPACE", "NAME", "IMAGE"]
    assert [arl.namespace, "shop", "registry.local/shop:v2"] in [row.split()[:3] for row in everywhere[1:]]

    assert arl.cli("list", "-o", "name").stdout.split() == ["apprelease.apprelease.io/shop",
                                                             "apprelease.apprelease.io/web"]
    template = '{range .items[*]}{.metadata.name}={.status.phase}{"\\n"}{end}'
    assert arl.cli("list", "-o", f"jsonpath={template}").stdout == "shop=Healthy\nweb=Healthy\n"
    as_yaml = yaml.safe_load(arl.cli("list", "-o", "yaml").stdout)
    assert as_yaml["kind"] == "List" and len(as_yaml["items"]) == 2


def test_get_watch_ends_at_its_timeout(arl: AppReleases) -> None:
    arl.apply(rolling_app("shop"))
    started = time.monotonic()
    watched = arl.cli("get", "shop", "-w", "--timeout", "4s", check=False)
    assert watched.returncode == OK, watched.stderr
    assert 3.5 <= time.monotonic() - started < 30
    assert "shop" in watched.stdout and "AppRelease" in watched.stdout


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "HOME": str(home)}
    env.pop("KUBECONFIG", None)
    return subprocess.run([sys.executable, "-m", "apprelease.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_a_missing_kubeconfig_or_an_unreachable_apiserver_is_one_line(tmp_path: Path) -> None:
    missing = _run_cli("list", home=tmp_path)
    assert missing.returncode == ERROR
    assert missing.stderr.strip().splitlines() == [
        "error: no kubeconfig at ~/.kube/config: pass --kubeconfig or set KUBECONFIG"]

    kubeconfig = tmp_path / "unreachable"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    for command in (["status", "shop", "--timeout", "5s"], ["get", "shop", "-w"], ["console", "--no-browser"]):
        result = _run_cli("--kubeconfig", str(kubeconfig), *command, home=tmp_path)
        assert result.returncode == ERROR, (command, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: cannot reach the apiserver at 127.0.0.1:1: Connection refused"], (command, result.stderr)
