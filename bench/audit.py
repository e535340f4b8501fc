"""The apiserver's side of the count: its audit log, filtered to the operator's identity.

The operator's own metrics count only its JSON client; kopf's watch client (User-Agent
kopf/<version>) is invisible to them. The audit log sees every request of the operator's
ServiceAccount, whichever client made it, so a write cannot hide.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
FINAL_STAGES = frozenset({"ResponseComplete", "Panic"})
FLUSH_SECONDS = 1.0  # requests finishing right at the end of a window reach the file late


@dataclass(frozen=True)
class AuditRecord:
    user: str
    agent: str  # "apprelease-operator", "kopf" or the raw User-Agent
    verb: str
    resource: str  # "deployments", "appreleases/status", ...
    code: int

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


def agent_family(user_agent: str) -> str:
    if user_agent.startswith("kopf/"):
        return "kopf"
    return user_agent.split(" ", 1)[0]


def parse(line: str) -> AuditRecord | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if event.get("stage") not in FINAL_STAGES:
        return None
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return AuditRecord(
        user=(event.get("user") or {}).get("username", ""),
        agent=agent_family(event.get("userAgent", "")),
        verb=event.get("verb", ""),
        resource=resource or event.get("requestURI", ""),
        code=int((event.get("responseStatus") or {}).get("code") or 0),
    )


@dataclass(frozen=True)
class AuditWindow:
    records: tuple[AuditRecord, ...]

    def writes(self) -> int:
        return sum(1 for r in self.records if r.is_write)

    def writes_by(self) -> dict[str, int]:
        """Writes by "agent verb resource"."""
        counts = Counter(f"{r.agent} {r.verb} {r.resource}" for r in self.records if r.is_write)
        return dict(sorted(counts.items()))

    def requests_by_agent(self) -> dict[str, dict[str, int]]:
        """Every request by agent, then by verb."""
        result: dict[str, Counter[str]] = {}
        for record in self.records:
            result.setdefault(record.agent, Counter())[record.verb] += 1
        return {agent: dict(sorted(c.items())) for agent, c in sorted(result.items())}


class AuditLog:
    """Count what happened between two marks (byte offsets into the log)."""

    def __init__(self, path: Path, user: str):
        self.path = path
        self.user = user

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, offset: int, *, flush: bool = True) -> AuditWindow:
        if flush:
            time.sleep(FLUSH_SECONDS)
        records: list[AuditRecord] = []
        try:
            with self.path.open("r", errors="replace") as handle:
                handle.seek(offset)
                for line in handle:
                    record = parse(line)
                    if record is not None and record.user == self.user:
                        records.append(record)
        except FileNotFoundError:
            pass
        return AuditWindow(tuple(records))
