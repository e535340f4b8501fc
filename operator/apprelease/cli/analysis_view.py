"""The analysis of the current step in `apprelease get` and its tree: each metric's phase,
counts and last measurements with their values (status.analysis)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

_MARKS = {"Successful": ("✔", "green"), "Failed": ("✖", "red"), "Inconclusive": ("?", "yellow"),
          "Error": ("⚠", "yellow"), "Running": ("◌", "cyan")}
SHOWN = 5  # measurements per metric in the tree (status keeps a few more)


def _mark(phase: str) -> tuple[str, str]:
    return _MARKS.get(phase, ("•", ""))


def _runs(status: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    analysis = status.get("analysis") or {}
    return [(title, analysis[key]) for key, title in (("step", "Analysis"), ("background", "Background analysis"))
            if analysis.get(key)]


def add_header_rows(header: Table, status: dict[str, Any]) -> None:
    for title, run in _runs(status):
        _header_rows(header, title, run)


def _header_rows(header: Table, title: str, run: dict[str, Any]) -> None:
    phase = run.get("phase", "")
    symbol, style = _mark(phase)
    header.add_row(f"{title}:", Text(f"{symbol} {phase}" + (f": {run['message']}" if run.get("message") else ""),
                                     style=style))
    for metric in run.get("metrics") or []:
        last = (metric.get("measurements") or [{}])[-1]
        header.add_row(
            f"  {metric.get('name')}:",
            f"{metric.get('phase')}  {metric.get('count', 0)} measured ({metric.get('successful', 0)} ok,"
            f" {metric.get('failed', 0)} failed, {metric.get('inconclusive', 0)} inconclusive,"
            f" {metric.get('error', 0)} errors)  last: {last.get('value') or last.get('message') or '-'}",
        )


def add_tree(root: Tree, status: dict[str, Any]) -> None:
    for title, run in _runs(status):
        _tree(root, title.lower(), run)


def _tree(root: Tree, title: str, run: dict[str, Any]) -> None:
    symbol, style = _mark(run.get("phase", ""))
    branch = root.add(Text(f"{symbol} {title}  {run.get('phase', '')}", style=style))
    for metric in run.get("metrics") or []:
        symbol, style = _mark(metric.get("phase", ""))
        node = branch.add(Text(f"{symbol} {metric.get('name')} ({metric.get('template', '')})  {metric.get('phase')}"
                               f"  {metric.get('count', 0)} measured", style=style))
        for measurement in (metric.get("measurements") or [])[-SHOWN:]:
            symbol, style = _mark(measurement.get("phase", ""))
            detail = measurement.get("value") or measurement.get("message") or ""
            node.add(Text.assemble((f"{symbol} ", style), f"{measurement.get('at', '')}  {detail}"))
