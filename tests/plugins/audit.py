"""The apiserver's audit log, read as "who wrote what, when": each write with its user, the
operator replica that made it (the identity in its User-Agent), the object and the times.

The tests' cluster logs the writes of ServiceAccounts
(apprelease_dev.components.service_account_writes_audit_policy).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# apprelease-operator (<identity>): see apprelease.k8s.client.load_api_client.
_OPERATOR_AGENT = re.compile(r"^apprelease-operator \((?P<identity>[^)]+)\)")


@dataclass(frozen=True)
class AuditedWrite:
    user: str
    identity: str | None  # the operator replica, None for any other client
    user_agent: str
    verb: str
    resource: str  # "leases", "appreleases/status", ...
    namespace: str
    name: str
    code: int
    received: datetime  # when the apiserver received the request
    completed: datetime

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 300


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def audited_writes(path: Path, user: str) -> list[AuditedWrite]:
    """The completed writes by ``user``, in the order the apiserver received them."""
    writes = []
    with path.open("r", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
                continue
            if (event.get("user") or {}).get("username") != user:
                continue
            ref = event.get("objectRef") or {}
            agent = event.get("userAgent", "")
            match = _OPERATOR_AGENT.match(agent)
            writes.append(AuditedWrite(
                user=user,
                identity=match["identity"] if match else None,
                user_agent=agent,
                verb=event["verb"],
                resource=ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else ""),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=int((event.get("responseStatus") or {}).get("code") or 0),
                received=_time(event["requestReceivedTimestamp"]),
                completed=_time(event["stageTimestamp"]),
            ))
    return sorted(writes, key=lambda w: w.received)


def runs(identities: list[str | None]) -> list[str | None]:
    """Consecutive repeats collapsed: [a, a, b, a] → [a, b, a]."""
    collapsed: list[str | None] = []
    for identity in identities:
        if not collapsed or collapsed[-1] != identity:
            collapsed.append(identity)
    return collapsed
