"""Docs that describe code stay true to it; the image holds the operator only."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from apprelease.rollout.failures import ALL_CLASSES
from tests.support import ROOT


def test_every_failure_class_is_documented_with_its_bound() -> None:
    text = (ROOT / "docs" / "failures.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|[^|]*\| ([^|]+) \|", text, re.M)}
    for failure in ALL_CLASSES:
        assert failure.reason in rows, f"{failure.reason} missing from docs/failures.md"
        bound = rows[failure.reason]
        if failure.bound is None:
            assert "none" in bound or "progressDeadlineSeconds" in bound or "as above" in bound, (failure.reason, bound)
        else:
            minutes = int(failure.bound.total_seconds() // 60)
            assert f"{minutes} min" in bound, (failure.reason, bound)


def test_the_image_is_pinned_by_digest_and_holds_no_developer_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert all(line.split()[1] == "${BASE}" for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert "devtools" not in "".join(line for line in dockerfile.splitlines() if line.startswith("COPY"))


CHART = ROOT / "deploy" / "helm" / "apprelease"


def _chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_one_image_name_for_the_chart_the_manifests_and_the_build() -> None:
    """values.yaml's image.repository and the chart's appVersion name the image; the plain
    manifests say the same, and `apprelease dev image` tags the package's version."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = _chart_values()["image"]
    chart_image = f"{values['repository']}:{values['tag'] or chart['appVersion']}"
    plain = [d for d in yaml.safe_load_all((ROOT / "deploy" / "20-operator.yaml").read_text())
             if d and d["kind"] == "Deployment"]
    images = {c["image"] for d in plain for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {chart_image}
    # `apprelease dev image` tags the package's version (apprelease_dev.image.project_version).
    assert chart["appVersion"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_plain_manifests_crd_is_the_generated_one_and_the_chart_templates_its_own() -> None:
    generated = (ROOT / "crds" / "apprelease.io_appreleases.yaml").read_text()
    assert (ROOT / "deploy" / "05-crd.yaml").read_text() == generated
    assert not (CHART / "crds").exists(), "Helm never upgrades crds/: the CRD is templated from files/"


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_memory_limit_covers_the_benchmarked_rss_at_10000_apps() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| RSS at 10,000"))
    measured = float(re.findall(r"\*\*(\d+) MiB", row)[-1])
    resources = _chart_values()["resources"]
    limit, request = _mebibytes(resources["limits"]["memory"]), _mebibytes(resources["requests"]["memory"])
    assert limit >= 1.5 * measured, (limit, measured)  # a restart relists: its peak is above the steady RSS
    assert request <= limit
    plain = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "20-operator.yaml").read_text())
                 if d and d["kind"] == "Deployment")
    assert plain["spec"]["template"]["spec"]["containers"][0]["resources"] == resources


def _operator_metric_samples() -> set[str]:
    """Every sample name the operator's registry can expose (families and their suffixes)."""
    import importlib
    import pkgutil

    from prometheus_client import REGISTRY

    import apprelease

    # Metrics register at import: every module the operator process loads (not the console's).
    for module in pkgutil.walk_packages(apprelease.__path__, "apprelease."):
        if not module.name.startswith(("apprelease.console", "apprelease.cli")):
            importlib.import_module(module.name)

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def test_alerts_and_dashboard_use_metrics_the_operator_exposes() -> None:
    alerts = (CHART / "files" / "alerts.yaml").read_text()
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    expressions = [r["expr"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"]]
    expressions += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\b((?:apprelease|process)_[a-z_]+)\{", expr)}
    assert {"apprelease_app_info", "apprelease_app_failure", "apprelease_leader"} <= used
    assert used <= _operator_metric_samples(), used - _operator_metric_samples()


def test_the_quickstarts_appreleases_are_valid_and_render() -> None:
    """Every AppRelease docs/quickstart.md shows passes the model (the CRD's rules) and renders."""
    from apprelease.api.spec import AppRelease
    from apprelease.render import render_initial

    text = (ROOT / "docs" / "quickstart.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    apps = [block for block in blocks if block.get("kind") == "AppRelease"]
    assert len(apps) >= 3
    for app in apps:
        assert render_initial(AppRelease.model_validate(app)), app["metadata"]["name"]
