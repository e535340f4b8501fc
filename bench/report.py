"""The markdown table, the machine it ran on, and docs/benchmarks.md's generated sections."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from apprelease_dev import versions
from bench.results import NONE, Row
from bench.runner import Measurements

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows: list[Row], *, enforce: bool) -> str:
    lines = [
        "| # | figure | baseline | ours | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(rows, 1):
        verdict = "pass" if row.passed else ("**fail**" if enforce else "miss")
        cells = [str(index), row.figure, row.baseline or NONE, row.ours, row.ratio, row.target, verdict]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def notes(rows: list[Row]) -> str:
    lines = []
    for index, row in enumerate(rows, 1):
        for note in row.notes:
            lines.append(f"- ({index}) {note}")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), {_memory_gib():.1f} GiB RAM,"
        f" Linux {platform.release()}"
    )


def software(kubernetes_version: str) -> str:
    return (
        f"Kubernetes {kubernetes_version} (kube-apiserver, controller-manager, scheduler),"
        f" etcd {versions.ETCD_VERSION}, KWOK {versions.KWOK_VERSION};"
        f" kopf {metadata.version('kopf')}, kubernetes client {metadata.version('kubernetes')},"
        f" Python {platform.python_version()}, apprelease {metadata.version('apprelease')}"
    )


def section(m: Measurements, rows: list[Row]) -> str:
    p = m.profile
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in m.phase_seconds.items())
    return "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m bench --{p.name}`"
        f" (whole run {m.total_seconds / 60:.1f} min).",
        "",
        f"- Machine: {machine()}",
        f"- Software: {software(m.kubernetes_version)}",
        f"- Operator: `apprelease run --workers {p.workers}` as its ServiceAccount"
        f" (deploy/10-rbac.yaml); {p.nodes} KWOK nodes",
        "",
        table(rows, enforce=p.enforce_targets),
        "",
        "Notes:",
        "",
        notes(rows),
        f"- Phases: {phases}",
    ])


def _markers(mode: str) -> tuple[str, str]:
    return f"<!-- bench:{mode}:begin -->", f"<!-- bench:{mode}:end -->"


def write_section(mode: str, text: str, path: Path = DOCS) -> None:
    """Replace the mode's generated section of the document, keeping everything else."""
    begin, end = _markers(mode)
    document = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        document = pattern.sub(lambda _: block, document)
    else:
        document = document.rstrip("\n") + f"\n\n## {mode.capitalize()} run\n\n{block}\n"
    path.write_text(document)
