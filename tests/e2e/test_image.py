"""The operator's image, built as CI builds it (`apprelease dev image`: Debian's packages and
PyPI's wheels, assembled by buildah, no base image pulled) and then run, as `--push` sends it:
the entry point answers as the chart's pods call it, as the non-root user, with every module
of the operator importable and none of the developer tools inside."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from apprelease_dev.image import (
    BuiltImage,
    RunningImage,
    build_image,
    project_version,
    running_image,
)
from tests.support import ROOT

pytestmark = pytest.mark.e2e
CHART = ROOT / "deploy" / "helm" / "apprelease"


@pytest.fixture(scope="module")
def built() -> BuiltImage:
    image = build_image(ROOT)
    state = "cached" if image.cached else f"built ({', '.join(image.layers_built)})"
    print(f"\n{image.reference}: {state} in {image.seconds:.0f} s, {image.size_bytes / 2**20:.0f} MiB uncompressed")
    return image


@pytest.fixture(scope="module")
def image(built: BuiltImage) -> Iterator[RunningImage]:
    with running_image(built.reference) as running:
        yield running


def test_the_image_answers_version_and_help_through_its_entry_point(image: RunningImage) -> None:
    version = image.run_entrypoint("version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"apprelease {project_version(ROOT)}"
    help_text = image.run_entrypoint("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "run" in help_text.stdout and "console" in help_text.stdout
    # What the chart's operator pod runs, up to the point where it would contact the apiserver.
    run_help = image.run_entrypoint("run", "--help")
    assert run_help.returncode == 0 and "--metrics-port" in run_help.stdout, run_help.stderr


def test_the_image_runs_as_the_charts_user_with_the_operator_only(image: RunningImage) -> None:
    chart_pod = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
    assert image.config.user == f"{chart_pod['runAsUser']}:{chart_pod['runAsGroup']}"
    assert image.config.cmd == ["run"]
    assert image.config.labels["org.opencontainers.image.version"] == project_version(ROOT)
    who = image.run("python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert who.stdout.split() == [str(chart_pod["runAsUser"]), str(chart_pod["runAsGroup"])], who.stderr
    # Every module imports: a dependency missing from the image fails here, not in a pod.
    imports = image.run("python", "-c", (
        "import importlib, pkgutil, apprelease\n"
        "names = [m.name for m in pkgutil.walk_packages(apprelease.__path__, 'apprelease.')]\n"
        "[importlib.import_module(n) for n in names]\n"
        "print(len(names))"))
    assert imports.returncode == 0, imports.stderr
    assert int(imports.stdout) > 50
    dev = image.run("python", "-c", "import apprelease_dev")
    assert dev.returncode != 0 and "No module named 'apprelease_dev'" in dev.stderr
    assert image.run_entrypoint("dev", "--help").returncode != 0
