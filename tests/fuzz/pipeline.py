"""One admitted spec through the operator's pure core, and what counts as a failure.

Accepted verdicts: the operator's index packs the AppRelease (k8s/packing.py, as the kopf
index does) and its model parses the spec; every plan renders, or rendering raises
RenderError (the reconciler reports that as Stalled); rendered children keep the offline
Kubernetes invariants. Anything else raises: a pydantic rejection of an admitted spec
(``Disagreement``), any other exception from render or plan, or a rendered child the
apiserver would refuse (``InvalidChild``).
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from apprelease.api.spec import AppRelease
from apprelease.k8s.observe import slim_app
from apprelease.k8s.packing import pack, unpack
from apprelease.render import RenderError, render_children, render_initial
from apprelease.rollout.deletion import needs_finalizer, plan_deletion
from apprelease.rollout.outcome import Plan
from apprelease.rollout.planner import plan

from .cluster_states import FakeCluster, Knobs, timeline
from .k8s_invariants import rule_of, violations

NAMESPACE, UID = "fuzz", "00000000-0000-4000-8000-00000000f022"
OPERATOR_ROOT = Path(__file__).resolve().parents[2] / "operator"


class Disagreement(AssertionError):
    """Admission (schema + CEL) admitted a spec the operator's model rejects."""


class InvalidChild(AssertionError):
    """A rendered child breaks a rule the apiserver enforces."""

    def __init__(self, where: str, found: list[str]):
        super().__init__(f"{where}: " + "; ".join(found))
        self.found = found


@dataclass
class Counts:
    generated: int = 0
    admitted: int = 0
    plans: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        rate = 100 * self.admitted / self.generated if self.generated else 0.0
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
        return (f"generated {self.generated}, admitted {self.admitted} ({rate:.1f}%),"
                f" plans {self.plans}; verdicts: {verdicts}")


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """The admitted body with what the apiserver adds that the operator reads."""
    meta = {**body["metadata"], "namespace": NAMESPACE, "uid": UID, "generation": 1}
    return {**body, "metadata": meta}


def parse(body: dict[str, Any]) -> AppRelease:
    """What the operator does with a watched AppRelease: index it packed, then parse it."""
    stored = unpack(pack(slim_app(as_stored(body))))
    try:
        return AppRelease.model_validate(stored)
    except ValidationError as exc:
        raise Disagreement(f"the model rejects an admitted spec: {exc}") from exc


def exercise(body: dict[str, Any], knobs: Knobs, counts: Counts) -> str:
    """Run an admitted body through parse, render and plan; return the verdict's kind.

    Invalid children are collected and raised at the end (InvalidChild), so the planner
    still runs on a spec whose children the apiserver would refuse.
    """
    app = parse(body)
    # podTemplate (and the adopted one) is free-form: what it adds is the apiserver's to judge.
    typed_only = app.spec.pod_template is None and app.spec.adopt is None
    found: dict[str, str] = {}

    def check(children: list[dict[str, Any]], where: str) -> None:
        for violation in (v for child in children for v in violations(child, app.name)):
            found.setdefault(violation, where)

    try:
        check(render_initial(app if typed_only else _without_pod_template(app)), "render_initial")
    except RenderError:
        return "Stalled (RenderError)"
    stalled = False

    def tick(label: str, cluster: FakeCluster) -> Plan:
        nonlocal stalled
        result = plan(cluster.app, cluster.status, cluster.observed(), cluster.now)
        counts.plans += 1
        try:
            children = render_children(cluster.app, result.desired)
        except RenderError:
            stalled = True
            return result
        if typed_only:
            check(children, label)
        return result

    cluster = timeline(app, knobs, tick)
    if needs_finalizer(cluster.app):
        for seconds in knobs.steps:
            plan_deletion(cluster.app, cluster.status, cluster.observed(),
                          cluster.now + timedelta(seconds=seconds), cluster.now)
    if found:
        raise InvalidChild(f"{len(found)} rule(s) broken", [f"{v} (after: {w})" for v, w in found.items()])
    return "Stalled (RenderError)" if stalled else str(cluster.status.phase)


def _without_pod_template(app: AppRelease) -> AppRelease:
    body = app.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["spec"].pop("podTemplate", None)
    body["spec"].pop("adopt", None)
    return AppRelease.model_validate(body)


def signatures(exc: BaseException) -> list[str]:
    """A failure's identities: its kind and where it is raised, or each rule it breaks."""
    if isinstance(exc, Disagreement) and isinstance(exc.__cause__, ValidationError):
        return [
            f"Disagreement: {_masked('.'.join(map(str, e['loc'])))} [{e['type']}]"
            for e in exc.__cause__.errors()
        ]
    if isinstance(exc, InvalidChild):
        return sorted({"InvalidChild: " + rule_of(v) for v in exc.found})
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(OPERATOR_ROOT))] or frames
    where = ours[-1]
    filename = where.filename.removeprefix(str(OPERATOR_ROOT.parent) + "/")
    return [f"{type(exc).__name__} at {filename}:{where.lineno}"]


def _masked(text: str) -> str:
    """Values out, field names kept: one signature per rule, not per value."""
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "…", text)
    return re.sub(r"\b\d+\b", "N", text)
