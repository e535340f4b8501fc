"""One row of the table: a figure, what we compare it with, and whether it meets its target."""

from __future__ import annotations

from dataclasses import dataclass, field

NONE = "—"


@dataclass
class Row:
    figure: str
    ours: str
    target: str
    passed: bool
    baseline: str = NONE
    ratio: str = NONE
    notes: list[str] = field(default_factory=list)


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def millis(value_seconds: float) -> str:
    return f"{value_seconds * 1000:.0f} ms"


def counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in mapping.items()) or "none"
