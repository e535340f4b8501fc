"""View models: from cached objects to what a page shows. Pure (no I/O), unit-tested.

Status is rendered generically where it can be: every ``*Weight`` field, every track (a
status entry with replica counts: stable and canary today, blue-green's later), every
condition, every Nacos instance column, and whatever else status holds in a details list,
so fields the operator adds later show without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api.base import duration_text
from ..api.status import ConfigStatus
from ..k8s.observe import pod_state
from ..render import labels
from ..rollout import state as rollout_state
from ..rollout.nacos_config import config_table
from ..rollout.observed import RevisionRecord
from ..rollout.state import Aborted

PHASE_CLASSES = {"Healthy": "ok", "Progressing": "busy", "Paused": "paused", "Degraded": "bad"}
INSTANCE_COLUMNS = ("ip", "port", "pod", "revision", "track", "healthy", "enabled", "weight",
                    "ephemeral", "cluster")
# Status fields shown in their own place on the app page (the rest go to "details"), and the
# old rollout fields, derived from status.rollout (which details shows).
_SHOWN = {
    "phase", "message", "strategy", "conditions", "registration", "step", "stepCount",
    "currentStepIndex", "stable", "canary", "currentRevision", "stableRevision", "canaryRevision",
    "replicas", "readyReplicas", "updatedReplicas", "availableReplicas", "ready", "handledRequests",
    "observedGeneration", "aborted", "abortReason", "abortMessage",
    "stepStartTime", "pauseStartTime", "promoting", "promotionPhase", "promoteFull", "blueGreen",
    "analysis",  # its own section (console/analysis.py)
}


def phase_class(phase: str | None) -> str:
    return PHASE_CLASSES.get(phase or "", "unknown")


def age(timestamp: str | None, now: datetime) -> str:
    """kubectl's AGE: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return ""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def image_tag(image: str) -> str:
    """The part of an image reference a person compares: repo:tag, without the registry."""
    return image.rsplit("/", 1)[-1]


def row_id(namespace: str, name: str) -> str:
    return f"app-{namespace}--{name}"  # names are DNS labels: "--" cannot be ambiguous


@dataclass(frozen=True)
class OverviewRow:
    namespace: str
    name: str
    phase: str
    phase_class: str
    strategy: str
    step: str
    weight: str
    ready: str
    registered: str
    registered_ok: bool
    revision: str
    image: str
    message: str
    age: str
    flags: tuple[str, ...]

    @property
    def id(self) -> str:
        return row_id(self.namespace, self.name)


def _weight(status: Mapping[str, Any]) -> str:
    actual, wanted = status.get("actualWeight"), status.get("setWeight")
    if actual is None and wanted is None:
        return ""
    if wanted is not None and actual != wanted:
        return f"{actual if actual is not None else '?'}% (set {wanted}%)"
    return f"{actual}%"


def _registered(status: Mapping[str, Any]) -> tuple[str, bool]:
    registration = status.get("registration") or {}
    summary = str(registration.get("summary") or "")
    if registration.get("lastError"):
        return (summary + " ⚠").strip(), False
    left, _, right = summary.partition("/")
    return summary, bool(summary) and left == right


def _flags(app: Mapping[str, Any]) -> tuple[str, ...]:
    spec, status = app.get("spec") or {}, app.get("status") or {}
    flags = []
    if spec.get("paused"):
        flags.append("paused")
    if spec.get("takenDown"):
        flags.append("taken down")
    if aborted(status) is not None:
        flags.append("aborted")
    generation = (app.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration") not in (None, generation):
        flags.append("not yet seen")
    return tuple(flags)


def overview_row(app: Mapping[str, Any], now: datetime) -> OverviewRow:
    meta, spec, status = app["metadata"], app.get("spec") or {}, app.get("status") or {}
    ready = status.get("ready") or f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
    registered, registered_ok = _registered(status)
    revision = str(status.get("currentRevision") or "")
    if status.get("stableRevision") and status.get("stableRevision") != status.get("currentRevision"):
        revision += f" (stable {status['stableRevision']})"
    phase = status.get("phase") or "Unknown"
    return OverviewRow(
        namespace=meta.get("namespace", ""), name=meta["name"], phase=phase, phase_class=phase_class(phase),
        strategy=status.get("strategy") or _strategy_of(spec), step=status.get("step") or "",
        weight=_weight(status), ready=str(ready), registered=registered, registered_ok=registered_ok,
        revision=revision, image=image_tag(str(spec.get("image", ""))), message=status.get("message") or "",
        age=age(meta.get("creationTimestamp"), now), flags=_flags(app),
    )


def _strategy_of(spec: Mapping[str, Any]) -> str:
    strategy = spec.get("strategy") or {}
    return next((k for k in strategy if strategy[k] is not None), "rolling")


@dataclass(frozen=True)
class Counts:
    total: int
    by_phase: dict[str, int]


def counts(rows: Iterable[OverviewRow]) -> Counts:
    return count_phases(row.phase for row in rows)


def count_phases(phases: Iterable[str]) -> Counts:
    by_phase: dict[str, int] = {p: 0 for p in ("Healthy", "Progressing", "Paused", "Degraded")}
    total = 0
    for phase in phases:
        total += 1
        by_phase[phase] = by_phase.get(phase, 0) + 1
    return Counts(total, by_phase)


def matches(app: Mapping[str, Any], namespace: str, search: str) -> bool:
    meta = app["metadata"]
    if namespace and meta.get("namespace") != namespace:
        return False
    if not search:
        return True
    text = " ".join((meta["name"], meta.get("namespace", ""), str((app.get("spec") or {}).get("image", "")),
                     str((app.get("status") or {}).get("phase", "")))).lower()
    return all(word in text for word in search.lower().split())


# App page -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    number: int
    label: str
    state: str  # "done" | "current" | "pending" | "idle"


def _step_label(step: Mapping[str, Any]) -> str:
    if step.get("setWeight") is not None:
        return f"set weight {step['setWeight']}%"
    if step.get("analysis"):
        names = ", ".join(t.get("templateName", "") for t in step["analysis"].get("templates") or [])
        return f"analysis {names}"
    pause = step.get("pause") or {}
    return f"pause {duration_text(pause['duration'])}" if pause.get("duration") is not None else "pause until promoted"


def aborted(status: Mapping[str, Any]) -> Aborted | None:
    """The aborted rollout, with its reason and message; None unless aborted."""
    state = rollout_state.of_wire(status).state
    return state if isinstance(state, Aborted) else None


def steps(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[Step]:
    canary = (spec.get("strategy") or {}).get("canary") or {}
    index = rollout_state.canary_step(rollout_state.of_wire(status))
    result = []
    for i, step in enumerate(canary.get("steps") or []):
        if index is None:
            state = "idle"
        elif i < index:
            state = "done"
        elif i == index:
            state = "current"
        else:
            state = "pending"
        result.append(Step(i + 1, _step_label(step), state))
    return result


@dataclass(frozen=True)
class TrackRow:
    track: str
    revision: Any
    replicas: Any
    ready: Any
    updated: Any
    available: Any


def tracks(status: Mapping[str, Any]) -> list[TrackRow]:
    """Every status entry that reports replicas (stable, canary; later blue-green's)."""
    rows = []
    for key, value in status.items():
        if isinstance(value, Mapping) and "replicas" in value and key != "registration":
            rows.append(TrackRow(key, value.get("revision", ""), value.get("replicas", 0),
                                 value.get("readyReplicas", 0), value.get("updatedReplicas", 0),
                                 value.get("availableReplicas", 0)))
    return rows


def weights(status: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(_words(k), v) for k, v in status.items() if k.endswith("Weight") and v is not None]


def _words(camel: str) -> str:
    out = "".join(" " + c.lower() if c.isupper() else c for c in camel)
    return out[:1].upper() + out[1:]


@dataclass(frozen=True)
class ConditionView:
    type: str
    status: str  # "True" | "False" | "Unknown", as Kubernetes writes it
    reason: str
    message: str
    tone: str  # "quiet" (as it should be) | "warn" | "bad" | "busy" | "paused" | "unknown"


# kstatus' abnormal-true conditions (and ours of that polarity): True is the news, in this
# colour; False is how things should be. Every other condition is normal-true: False is news.
ABNORMAL_TRUE = {"Stalled": "bad", "Reconciling": "busy", "Progressing": "busy", "Paused": "paused"}


def conditions(items: Iterable[Mapping[str, Any]]) -> list[ConditionView]:
    """Each condition with its truth spelled out, coloured only when it needs a look."""
    result = []
    for item in items:
        kind = str(item.get("type") or "")
        status = str(item.get("status") or "Unknown")
        if status not in ("True", "False"):
            status, tone = "Unknown", "unknown"
        elif kind in ABNORMAL_TRUE:
            tone = ABNORMAL_TRUE[kind] if status == "True" else "quiet"
        else:
            tone = "warn" if status == "False" else "quiet"
        result.append(ConditionView(kind, status, str(item.get("reason") or ""), str(item.get("message") or ""),
                                    tone))
    return result


@dataclass(frozen=True)
class Cell:
    text: str
    tone: str  # "" (nothing to look at) | "bad" | "busy" | "off"


# Instance columns where one value needs a look, and how it looks: an unhealthy instance is
# trouble, a disabled one is out of traffic (on purpose, maybe), a warming one still ramps
# up. The other value of each, and every other column, is plain.
INSTANCE_ATTENTION: dict[str, tuple[bool, str]] = {
    "healthy": (False, "bad"), "enabled": (False, "off"), "warming": (True, "busy")}


def instance_cell(column: str, value: Any) -> Cell:
    if value is None:
        return Cell("—", "")
    if isinstance(value, bool):
        attention = INSTANCE_ATTENTION.get(column)
        return Cell("yes" if value else "no", attention[1] if attention and attention[0] is value else "")
    return Cell(str(value), "")


@dataclass(frozen=True)
class Registration:
    provider: str
    service: str
    summary: str
    last_sync: str
    last_error: str
    per_revision: list[Mapping[str, Any]]
    columns: list[str]
    instances: list[Mapping[str, Any]]
    stale: list[Mapping[str, Any]]
    more: str
    cells: list[list[Cell]] = field(default_factory=list)  # each instance's, by column


def registration(status: Mapping[str, Any]) -> Registration | None:
    reg = status.get("registration")
    if not reg:
        return None
    instances = list(reg.get("instances") or [])
    stale = list(reg.get("stale") or [])
    columns = list(INSTANCE_COLUMNS)
    for row in instances + stale:
        columns += [k for k in row if k not in columns]  # fields added later (warm-up...)
    more = ""
    if reg.get("instanceCount", 0) > len(instances) or reg.get("staleCount", 0) > len(stale):
        more = (f"{reg.get('instanceCount', 0)} instances and {reg.get('staleCount', 0)} stale in all; "
                f"status lists the first {len(instances)}")
    return Registration(
        provider=str(reg.get("provider", "")), service=str(reg.get("service", "")),
        summary=str(reg.get("summary", "")), last_sync=str(reg.get("lastSyncTime") or ""),
        last_error=str(reg.get("lastError") or ""), per_revision=list(reg.get("revisions") or []),
        columns=columns, instances=instances, stale=stale, more=more,
        cells=[[instance_cell(column, row.get(column)) for column in columns] for row in instances],
    )


@dataclass(frozen=True)
class PodView:
    name: str
    phase: str
    ready: bool
    restarts: int
    revision: Any
    ip: str
    node: str
    mark: str  # "ok" | "busy" | "bad"
    deleting: bool
    offline: bool


@dataclass(frozen=True)
class DeploymentView:
    name: str
    track: str
    image: str
    ready: str
    pods: list[PodView]


@dataclass(frozen=True)
class RevisionBranch:
    revision: str
    deployments: list[DeploymentView]


def tree(deployments: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]],
         offline: Iterable[str] = ()) -> list[RevisionBranch]:
    """Revisions → Deployments → pods, newest revision first (as `apprelease get` draws)."""
    offline = set(offline)
    pods_by_track: dict[str, list[PodView]] = {}
    for pod in pods:
        state = pod_state(pod)
        mark = "ok" if state.ready else ("bad" if state.crash_looping else "busy")
        track = ((pod.get("metadata") or {}).get("labels") or {}).get(labels.TRACK, "")
        pods_by_track.setdefault(track, []).append(PodView(
            state.name, state.phase, state.ready, state.restarts,
            state.revision if state.revision is not None else "?", state.ip or "", state.node or "", mark,
            state.deleting, state.name in offline))
    branches: dict[str, list[DeploymentView]] = {}
    for dep in deployments:
        meta = dep["metadata"]
        track = (meta.get("labels") or {}).get(labels.TRACK, "")
        revision = (meta.get("annotations") or {}).get(labels.REVISION, "?")
        dstatus = dep.get("status") or {}
        branches.setdefault(revision, []).append(DeploymentView(
            meta["name"], track, dep.get("image", ""),
            f"{dstatus.get('readyReplicas', 0)}/{(dep.get('spec') or {}).get('replicas', 0)}",
            sorted(pods_by_track.get(track, []), key=lambda p: p.name)))
    order = sorted(branches, key=lambda r: int(r) if r.isdigit() else -1, reverse=True)
    return [RevisionBranch(r, sorted(branches[r], key=lambda d: d.name)) for r in order]


@dataclass(frozen=True)
class EventView:
    type: str
    reason: str
    message: str
    object: str
    count: int
    age: str


def events(items: Iterable[Mapping[str, Any]], now: datetime) -> list[EventView]:
    result = []
    for event in items:
        involved = event.get("involvedObject") or {}
        when = event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get(
            "creationTimestamp")
        result.append(EventView(str(event.get("type") or ""), str(event.get("reason") or ""),
                                str(event.get("message") or ""),
                                f"{involved.get('kind', '')}/{involved.get('name', '')}",
                                int(event.get("count") or 1), age(when, now)))
    return result


@dataclass(frozen=True)
class HistoryRow:
    number: int
    image: str
    created: str
    promoted: str
    aborted: str
    marks: list[str]
    current: bool


def history(records: Sequence[Any], status: Mapping[str, Any]) -> list[HistoryRow]:
    """Records (RevisionRecord) newest first, marked current / stable / canary."""
    rows = []
    for record in sorted(records, key=lambda r: r.number, reverse=True):
        marks = [name for name, key in (("current", "currentRevisionHash"), ("stable", "stableRevisionHash"),
                                        ("canary", "canaryRevisionHash")) if status.get(key) == record.hash]
        aborted = f"{record.aborted} ({record.abort_reason})" if record.aborted else ""
        rows.append(HistoryRow(record.number, record.template.image, record.created, record.promoted or "",
                               aborted, marks, "current" in marks))
    return rows


@dataclass(frozen=True)
class Detail:
    key: str
    value: str


def details(status: Mapping[str, Any], prefix: str = "") -> list[Detail]:
    """Status fields without a place of their own, flattened (a.b[0].c = value)."""
    rows: list[Detail] = []
    for key, value in status.items():
        if not prefix and (key in _SHOWN or key.endswith("Weight") or key.endswith("Hash")):
            continue
        if not prefix and isinstance(value, Mapping) and "replicas" in value:
            continue  # a track: shown in the tracks table
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += details(value, path + ".")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                rows += details(item, f"{path}[{i}].")
        elif value is not False and value not in (None, "", [], {}):  # 0 is a value (step 0)
            rows.append(Detail(path, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return rows


@dataclass(frozen=True)
class Buttons:
    """What the user may do now: a button appears only if RBAC allows the patch and the
    state makes the action meaningful."""

    promote: bool = False
    abort: bool = False
    retry: bool = False
    pause: bool = False
    resume: bool = False
    restart: bool = False
    rollback: bool = False
    take_down: bool = False
    bring_up: bool = False
    offline: bool = False
    edit: bool = False
    any: bool = field(default=False)


def buttons(app: Mapping[str, Any], may_patch: bool) -> Buttons:
    if not may_patch:
        return Buttons()
    spec, status = app.get("spec") or {}, app.get("status") or {}
    state = rollout_state.of_wire(status).state
    running = rollout_state.in_progress(state) and not isinstance(state, Aborted)
    return Buttons(
        promote=running, abort=running, retry=isinstance(state, Aborted),
        pause=not spec.get("paused"), resume=bool(spec.get("paused")), restart=True, rollback=True,
        take_down=not spec.get("takenDown"), bring_up=bool(spec.get("takenDown")), offline=True, edit=True,
        any=True,
    )


def offline_pods(app: Mapping[str, Any]) -> list[str]:
    annotations = (app.get("metadata") or {}).get("annotations") or {}
    return [p for p in annotations.get("apprelease.io/offline", "").split(",") if p]


def utcnow() -> datetime:
    return datetime.now(UTC)


def nacos_config(status: Mapping[str, Any], records: Sequence[RevisionRecord],
                 pods: Iterable[Mapping[str, Any]]) -> list[dict[str, object]]:
    """The Nacos config table (as `apprelease config` prints it): copies, md5, readers."""
    try:
        config = ConfigStatus.model_validate(status.get("config") or {})
    except ValueError:  # written by another operator version: not shown rather than a broken page
        return []
    by_revision: dict[int, list[str]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        revision = str((meta.get("labels") or {}).get(labels.REVISION, ""))
        if revision.isdigit() and not meta.get("deletionTimestamp"):
            by_revision.setdefault(int(revision), []).append(str(meta.get("name")))
    return config_table(config, records, by_revision)
