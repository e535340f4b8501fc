"""RFC 3339 timestamps as Kubernetes writes them (second precision, UTC, trailing Z)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_precise_time(moment: datetime) -> str:
    """Millisecond precision, for the start of a wait that must last its full length: counted
    from a second-truncated stamp, registry.drainSeconds: 3 could end after 2.001 s."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_time_or(text: str | None, default: datetime) -> datetime:
    """A time from status, or ``default`` when it is absent or unreadable (status can be
    edited by hand; a bad stamp must not crash the planner)."""
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return default
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
