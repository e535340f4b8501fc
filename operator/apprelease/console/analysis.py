"""The app page's analysis section: the current step's and the background run's metrics, each
with its counts, its last measurements and a small SVG chart of their values. Pure (no I/O).

The chart is drawn here as coordinates (the template writes the SVG, auto-escaped): a line
through the numeric values, one point per numeric measurement coloured by its verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.analysis import AnalysisRunStatus, AnalysisStatus, MeasurementStatus, MetricStatus

# The same colours as phases elsewhere on the page (console.css): a verdict is a phase.
VERDICT_CLASSES = {"Successful": "ok", "Failed": "bad", "Inconclusive": "busy", "Error": "busy", "Running": "paused"}
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 160, 36, 4


def verdict_class(phase: str) -> str:
    return VERDICT_CLASSES.get(phase, "unknown")


def first_number(value: str) -> float | None:
    """The first number of a measurement's value ("[0.5]", "[0.001, 0.002]"), or None when
    there is none that can be plotted (no result, NaN, ±Inf, a web hook's text)."""
    head = value.strip().removeprefix("[").removesuffix("]").split(",", 1)[0].strip()
    try:
        number = float(head)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    verdict: str  # a CSS class
    title: str  # the tooltip: time, value, verdict


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: tuple[ChartPoint, ...]

    @property
    def line(self) -> str:
        """The polyline's points attribute."""
        return " ".join(f"{p.x:g},{p.y:g}" for p in self.points)


def chart(measurements: Sequence[MeasurementStatus]) -> Chart | None:
    """A sparkline of the numeric values, left (oldest) to right, scaled to their own range;
    a measurement without a number keeps its place on the time axis but draws nothing."""
    numbers = [first_number(m.value) for m in measurements]
    shown = [n for n in numbers if n is not None]
    if not shown:
        return None
    low, high = min(shown), max(shown)
    span_x = CHART_WIDTH - 2 * CHART_PAD
    span_y = CHART_HEIGHT - 2 * CHART_PAD
    step = span_x / (len(measurements) - 1) if len(measurements) > 1 else 0.0
    points = []
    for index, (measurement, number) in enumerate(zip(measurements, numbers, strict=True)):
        if number is None:
            continue
        x = CHART_PAD + index * step if len(measurements) > 1 else CHART_WIDTH / 2
        # Higher values higher up; a flat series sits in the middle.
        y = CHART_PAD + span_y * (1 - (number - low) / (high - low)) if high > low else CHART_HEIGHT / 2
        points.append(ChartPoint(round(x, 1), round(y, 1), verdict_class(measurement.phase),
                                 f"{measurement.at}  {measurement.value}  {measurement.phase}"))
    return Chart(CHART_WIDTH, CHART_HEIGHT, tuple(points))


@dataclass(frozen=True)
class MeasurementRow:
    at: str
    value: str
    phase: str
    verdict: str
    message: str


@dataclass(frozen=True)
class MetricView:
    name: str
    template: str
    phase: str
    verdict: str
    counts: str
    message: str
    measurements: tuple[MeasurementRow, ...]  # newest first
    chart: Chart | None


@dataclass(frozen=True)
class RunView:
    title: str
    run: str
    phase: str
    verdict: str
    message: str
    metrics: tuple[MetricView, ...]


def _counts(metric: MetricStatus) -> str:
    parts = [f"{metric.successful} ok", f"{metric.failed} failed", f"{metric.inconclusive} inconclusive"]
    if metric.error:
        parts.append(f"{metric.error} errors")
    return f"{metric.count} measured ({', '.join(parts)})"


def _metric(metric: MetricStatus) -> MetricView:
    rows = tuple(MeasurementRow(m.at, m.value or "—", m.phase, verdict_class(m.phase), m.message)
                 for m in reversed(metric.measurements))
    return MetricView(metric.name, metric.template, metric.phase, verdict_class(metric.phase), _counts(metric),
                      metric.message, rows, chart(metric.measurements))


def _run(title: str, run: AnalysisRunStatus) -> RunView:
    return RunView(title, run.run, run.phase, verdict_class(run.phase), run.message,
                   tuple(_metric(m) for m in run.metrics))


def runs(status: Mapping[str, Any]) -> list[RunView]:
    """status.analysis as the page shows it: the step's run, then the background one."""
    try:
        analysis = AnalysisStatus.model_validate(status.get("analysis") or {})
    except ValueError:  # written by another operator version: not shown rather than a broken page
        return []
    return [_run(title, run) for title, run in (("Analysis", analysis.step), ("Background analysis",
                                                                              analysis.background))
            if run is not None]
