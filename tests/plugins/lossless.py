"""What "lossless" means, checked against what a real Nacos Java client picked.

Each pick (tests/plugins/java_consumer.py) is attributed to the pod that had its IP at that
moment (tests/plugins/pod_timeline.py; KWOK hands IPs out again). A release is lossless when:
  - no pick went to an address whose pod was gone (containers stopped) or not there yet;
  - no pick went to a pod before it was Ready;
  - the client never found no instance to pick (unless the strategy means it: Recreate).
Times are this machine's clock (the consumer's log and the test's watch share it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.plugins.java_consumer import ConsumerLog, Pick
from tests.plugins.pod_timeline import PodRecord


@dataclass
class Verdict:
    picks: int = 0
    after_gone: list[tuple[Pick, str]] = field(default_factory=list)
    before_ready: list[tuple[Pick, str]] = field(default_factory=list)
    longest_gap: float = 0.0  # seconds without any instance to pick
    per_pod: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.picks} picks; after gone: {len(self.after_gone)}; before Ready:"
                f" {len(self.before_ready)}; longest time with no instance: {self.longest_gap:.2f} s")

    def assert_lossless(self, *, gap_allowed: bool = False) -> None:
        assert self.picks > 0, "the consumer picked nothing"
        assert not self.after_gone, f"picks of gone pods: {self.after_gone[:5]} ({self.summary()})"
        assert not self.before_ready, f"picks before Ready: {self.before_ready[:5]} ({self.summary()})"
        if not gap_allowed:
            assert self.longest_gap == 0.0, f"no instance to pick for a while ({self.summary()})"


def owner_at(records: list[PodRecord], ip: str, at: float) -> PodRecord | None:
    """The pod that had ``ip`` at ``at``: created before, not yet gone."""
    for record in records:
        if record.ip != ip or record.created_at is None or record.created_at > at:
            continue
        if record.gone_at is None or at < record.gone_at:
            return record
    return None


def judge(log: ConsumerLog, records: list[PodRecord], start: float, end: float) -> Verdict:
    verdict = Verdict()
    for pick in log.between(start, end):
        if pick.ip is None:
            continue
        verdict.picks += 1
        owner = owner_at(records, pick.ip, pick.at)
        if owner is None:
            gone = max((r.gone_at or 0.0 for r in records if r.ip == pick.ip), default=0.0)
            verdict.after_gone.append((pick, f"no pod had {pick.ip} (the last one was gone at {gone:.3f})"))
            continue
        verdict.per_pod[owner.name] = verdict.per_pod.get(owner.name, 0) + 1
        if owner.ready_at is None or pick.at < owner.ready_at:
            verdict.before_ready.append((pick, f"{owner.name} Ready at {owner.ready_at}"))
    verdict.longest_gap = log.longest_unavailable(start, end)
    return verdict


def timeline(log: ConsumerLog, records: list[PodRecord], start: float, end: float,
             disabled_at: dict[str, float] | None = None, registered_at: dict[str, float] | None = None) -> str:
    """What happened to each pod in [start, end] and what the client picked, in seconds from
    ``start``: a table for docs/lossless-nacos.md. ``disabled_at``/``registered_at`` (per IP,
    from the simulated apps' registrar) add when Nacos listed each instance disabled and when
    its app registered."""
    disabled_at, registered_at = disabled_at or {}, registered_at or {}
    events: list[tuple[float, str, str]] = []
    shown = [r for r in records if r.ip and (r.created_at or 0) <= end and (r.gone_at is None or r.gone_at >= start)]
    for record in shown:
        ip = record.ip or ""
        lived = (record.created_at or start, record.gone_at or end)
        picks = [p for p in log.between(*lived) if p.ip == ip]
        for at, what in (
            (record.created_at, "pod created"),
            (record.containers_ready_at, "containers ready"),
            (registered_at.get(ip) if registered_at.get(ip, 0) >= lived[0] else None, "app registered in Nacos"),
            (record.ready_at, "pod Ready (readiness gate: registered)"),
            (picks[0].at if picks else None, "first pick by the client"),
            (record.deletion_requested_at, "deletion requested (preStop sleep starts)"),
            (disabled_at.get(ip) if disabled_at.get(ip, 0) >= lived[0] else None, "listed disabled in Nacos"),
            (picks[-1].at if picks and record.gone_at else None, "last pick by the client"),
            (record.gone_at, "containers stopped, pod gone; app deregistered"),
        ):
            if at is not None and start - 1 <= at <= end:
                events.append((at, record.name, what))
    none = log.unavailable(start, end)
    lines = ["| t (s) | pod | event |", "| ---: | --- | --- |"]
    lines += [f"| {at - start:+.2f} | {name} | {what} |" for at, name, what in sorted(events)]
    picks = [p for p in log.between(start, end) if p.instance]
    lines.append(f"\n{len(picks)} picks in {end - start:.1f} s; {len(none)} found no instance.")
    return "\n".join(lines)
