"""kstatus conditions: Ready / Reconciling / Stalled plus ours (Paused, Progressing, Registered).

lastTransitionTime changes only when a condition's status changes, so recomputing the same
state yields byte-identical conditions and no status write.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..api.status import Condition, ConditionStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
PAUSED = "Paused"
PROGRESSING = "Progressing"
REGISTERED = "Registered"
AUTOSCALING = "Autoscaling"

ORDER = (READY, RECONCILING, STALLED, PROGRESSING, PAUSED, REGISTERED, AUTOSCALING)


def condition(
    type_: str, status: bool | ConditionStatus, reason: str, message: str = ""
) -> Condition:
    if isinstance(status, bool):
        status = "True" if status else "False"
    return Condition(type=type_, status=status, reason=reason, message=message)


def merge_conditions(
    previous: Iterable[Condition],
    current: Iterable[Condition],
    *,
    now: str,
    generation: int,
) -> list[Condition]:
    """New conditions, keeping each one's transition time while its status is unchanged."""
    before = {c.type: c for c in previous}
    merged = []
    for cond in current:
        old = before.get(cond.type)
        since = old.last_transition_time if old and old.status == cond.status else now
        merged.append(
            cond.model_copy(update={"last_transition_time": since, "observed_generation": generation})
        )
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(merged, key=lambda c: (rank.get(c.type, len(ORDER)), c.type))
