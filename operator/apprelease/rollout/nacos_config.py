"""Nacos config released with the pods: publish, hold, formal, drift, GC. Pure.

Each revision's dataIds are published to an immutable copy in ``<group>.rev-<confighash>``
and read back (md5) before any pod of that revision exists: until then the track's Deployment
keeps the template it runs (or, new, has no pods). The formal dataId (the item's own group)
follows the stable revision once it is rolled out. A dataId whose md5 is neither what we
published nor what we are about to publish was edited by hand: its content is saved to
``<group>.drift-<md5>`` first (verified by a read), then put back at once with ``enforce``,
else at the next revision (copies are per revision) or promotion (formal). Copies of
revisions no longer in the kept history are deleted.

Per (group, dataId) one of: in sync, to publish, hand-edited (a NacosConfigDrift entry,
Saving → Saved), or unknown (not read). Nothing else is remembered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.spec import AppRelease, RevisionTemplate
from ..api.status import (
    AppReleaseStatus,
    Condition,
    ConfigStatus,
    NacosConfigDrift,
    NacosConfigItemStatus,
    NacosConfigStatus,
)
from ..api.workload import ConfigFiles
from ..domain import ConfigAction
from ..render import TrackPlan
from ..render.nacos_config import (
    COPY_MARK,
    DRIFT_MARK,
    ConfigItem,
    content_md5,
    copy_group,
    drift_group,
    nacos_config_hash,
    parse_error,
    resolved_items,
)
from . import conditions as C
from . import failures as F
from .observed import ConfigRead, Observed, RevisionRecord
from .outcome import Event

CONFIG_PUBLISHED = "ConfigPublished"
CONFIG_DRIFT = "ConfigDrift"
# While a revision waits for its copies, look again this soon (a read also wakes the app).
PUBLISH_RECHECK_SECONDS = 5.0
_NOT_READ = object()

Key = tuple[str, str]  # (group, dataId)


def config_namespace(app: AppRelease) -> str:
    """Where the dataIds live: config.nacos.namespace, else registry.nacos.namespace."""
    config = app.spec.config.nacos if app.spec.config else None
    if config is not None and config.namespace is not None:
        return config.namespace
    registry = app.spec.registry.nacos if app.spec.registry else None
    return registry.namespace if registry is not None else "public"


@dataclass(frozen=True)
class RevisionConfig:
    """One config hash: its items and the revisions (numbers) that read it."""

    hash: str
    items: tuple[ConfigItem, ...]
    revisions: tuple[int, ...]

    def copy_keys(self) -> list[Key]:
        return [(copy_group(i.group, self.hash), i.data_id) for i in self.items]


def revision_configs(templates: Iterable[tuple[int, RevisionTemplate]]) -> dict[str, RevisionConfig]:
    found: dict[str, RevisionConfig] = {}
    for number, template in templates:
        items = resolved_items(template.config)
        digest = nacos_config_hash(items)
        if digest is None:
            continue
        known = found.get(digest)
        numbers = tuple(sorted({*(known.revisions if known else ()), number}))
        found[digest] = RevisionConfig(digest, items, numbers)
    return found


def config_hash_of(template: RevisionTemplate) -> str | None:
    return config_hash_of_config(template.config)


def config_hash_of_config(config: ConfigFiles | None) -> str | None:
    return nacos_config_hash(resolved_items(config))


def keys_to_read(app: AppRelease, status: ConfigStatus | None, revisions: Iterable[RevisionRecord]) -> list[Key]:
    """Every (group, dataId) the next plan looks at: each kept revision's copies and formal
    dataIds, copies status still records (to delete), drift copies being saved."""
    configs = revision_configs([(0, app.spec.revision_template()), *((r.number, r.template) for r in revisions)])
    keys: dict[Key, None] = {}
    for config in configs.values():
        for item, copy in zip(config.items, config.copy_keys(), strict=True):
            keys[copy] = None
            keys[(item.group, item.data_id)] = None
    nacos = status.nacos if status is not None else None
    if nacos is not None and nacos.namespace == config_namespace(app):
        for recorded in nacos.items:
            keys[(recorded.group, recorded.data_id)] = None
            for digest in recorded.revisions:
                keys[(copy_group(recorded.group, digest), recorded.data_id)] = None
        for drift in nacos.drift:
            keys[(drift.saved_to, drift.data_id)] = None
    return list(keys)


def config_keys_to_delete(app: AppRelease, status: AppReleaseStatus, revisions: Iterable[RevisionRecord]) -> list[Key]:
    """On deleting the app: every copy it may have published, and with deletionPolicy Delete
    the formal dataIds (Retain leaves those for people and other readers)."""
    nacos = app.spec.config.nacos if app.spec.config else None
    delete_formal = nacos is not None and nacos.deletion_policy == "Delete"
    keys: dict[Key, None] = {}
    for key in keys_to_read(app, status.config, revisions):
        group = key[0]
        if DRIFT_MARK in group:
            continue  # saved hand edits are people's: never deleted by the operator
        if COPY_MARK in group or delete_formal:
            keys[key] = None
    return list(keys)


@dataclass
class ConfigOutcome:
    tracks: list[TrackPlan]
    actions: list[ConfigAction] = field(default_factory=list)
    status: ConfigStatus | None = None
    conditions: list[Condition] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    failure: tuple[F.FailureClass, str] | None = None
    waiting_for: str = ""
    wake_at: tuple[datetime, ...] = ()


@dataclass
class _Pass:
    """The working state of one pass over the keys."""

    app: AppRelease
    read: ConfigRead
    previous: NacosConfigStatus
    stamp: str
    items: dict[Key, NacosConfigItemStatus] = field(default_factory=dict)
    drift: dict[Key, NacosConfigDrift] = field(default_factory=dict)
    actions: list[ConfigAction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    last_drift: str | None = None

    def md5(self, key: Key) -> object:
        # A failed read says nothing now: what was verified before stands, nothing is rewritten.
        return self.read.md5.get(key, _NOT_READ) if self.read.error is None else _NOT_READ

    def record(self, item: ConfigItem) -> NacosConfigItemStatus:
        key = (item.group, item.data_id)
        if key not in self.items:
            before = self.previous.item(*key)
            self.items[key] = before or NacosConfigItemStatus(data_id=item.data_id, group=item.group)
        return self.items[key]

    def put(self, record: NacosConfigItemStatus) -> None:
        self.items[(record.group, record.data_id)] = record

    def hand_edited(self, key: Key, md5: str, *, put_back: bool, content: str, type_: str, what: str) -> bool:
        """A hand edit: saved first; True once it is saved and may be overwritten."""
        group, data_id = key
        before = next((d for d in self.previous.drift if (d.group, d.data_id) == key and d.md5 == md5), None)
        entry = before or NacosConfigDrift(group=group, data_id=data_id, md5=md5,
                                           saved_to=drift_group(group, md5), since=self.stamp)
        if entry.state == "Saving" and self.md5((entry.saved_to, data_id)) == md5:
            entry = entry.model_copy(update={"state": "Saved"})
        if before is None:
            then = "put back now (enforce)" if put_back else what
            self.events.append(Event("Warning", "ConfigDrift",
                                     f"{group}/{data_id} was edited in Nacos (md5 {md5}): saved to"
                                     f" {entry.saved_to}/{data_id}; {then}"))
        self.drift[key] = entry
        self.last_drift = f"{group}/{data_id} edited by hand (md5 {md5}), saved to {entry.saved_to}/{data_id}"
        if entry.state == "Saving":
            self.actions.append(ConfigAction("save-drift", group, data_id, md5=md5, save_to=entry.saved_to,
                                             reason="hand edit saved before anything overwrites it"))
            return False
        if put_back:
            self.actions.append(ConfigAction("publish", group, data_id, content=content, type=type_,
                                             md5=content_md5(content), reason="hand edit put back"))
        return True


def plan_config(
    app: AppRelease,
    previous_status: ConfigStatus | None,
    observed: Observed,
    kept: Iterable[RevisionRecord],
    tracks: list[TrackPlan],
    stable: RevisionRecord,
    now: datetime,
    stamp: str,
) -> ConfigOutcome:
    """The config side of a pass: ``tracks`` with the held ones kept as they run."""
    kept = list(kept)
    configs = revision_configs([*((r.number, r.template) for r in kept), *((t.revision, t.template) for t in tracks)])
    previous = previous_status.nacos if previous_status is not None else None
    namespace = config_namespace(app)
    if previous is None or previous.namespace != namespace:
        previous = NacosConfigStatus(namespace=namespace)  # another namespace: nothing published there yet
    if not configs and not any(i.revisions for i in previous.items):
        return ConfigOutcome(tracks=tracks)
    read = observed.config or ConfigRead(error="waiting for the first read of Nacos", error_reason="Pending")
    work = _Pass(app, read, previous, stamp, last_drift=previous.last_drift)
    enforce = bool(app.spec.config and app.spec.config.nacos and app.spec.config.nacos.enforce)

    needed = {h for t in tracks if (h := config_hash_of(t.template)) is not None}
    invalid = {h: err for h in needed for i in configs[h].items if (err := parse_error(i)) is not None}
    published = {h for h in configs if h not in invalid and _copies(work, configs[h], publish=h in needed,
                                                                   enforce=enforce)}
    _formal(work, app, observed, stable, configs, enforce)
    _collect(work, configs)

    outcome = ConfigOutcome(tracks=list(tracks))
    waiting: list[str] = []
    for index, track in enumerate(tracks):
        digest = config_hash_of(track.template)
        if digest is None or digest in published:
            continue
        waiting.append(f"revision {track.revision}'s config ({track.track})")
        dep = observed.deployments.get(track.track)
        if dep is not None and dep.revision_hash == track.revision_hash and (dep.replicas or dep.status_replicas):
            continue  # its pods exist already: a missing copy is republished, nothing to hold
        # (A Deployment on the revision with no pods is our own hold of an earlier pass.)
        outcome.tracks[index] = _held(track, dep.revision_hash if dep else None, kept)

    outcome.actions = work.actions
    outcome.events = work.events
    outcome.status = ConfigStatus(nacos=NacosConfigStatus(
        namespace=namespace,
        items=sorted(work.items.values(), key=lambda i: (i.group, i.data_id)),
        drift=sorted(work.drift.values(), key=lambda d: (d.group, d.data_id)),
        last_drift=work.last_drift,
    ))
    outcome.conditions = [
        _published_condition(invalid, waiting, read, tracks, published),
        _drift_condition(work),
    ]
    if invalid:
        outcome.failure = (F.CONFIG_INVALID, "; ".join(sorted(invalid.values())))
    elif waiting and read.error and read.error_reason != "Pending":
        outcome.failure = (F.CONFIG_STORE_UNAVAILABLE, f"publishing {', '.join(waiting)}: {read.error}")
    elif waiting and read.action_error:
        outcome.failure = (F.CONFIG_PUBLISH_FAILED, f"publishing {', '.join(waiting)}: {read.action_error}")
    if waiting:
        outcome.waiting_for = f"waiting for {', '.join(waiting)} to be published in Nacos"
        outcome.wake_at = (now + timedelta(seconds=PUBLISH_RECHECK_SECONDS),)
    prev_items = {(i.group, i.data_id): i for i in (previous_status.nacos.items if previous_status and previous_status.nacos else [])}
    for digest in sorted(published & needed):
        config = configs[digest]
        before = all(prev_items.get((i.group, i.data_id)) is not None
                     and prev_items[(i.group, i.data_id)].revisions.get(digest) == i.md5 for i in config.items)
        if not before:
            outcome.events.append(Event("Normal", "ConfigPublished", _published_message(config)))
    return outcome


def _copies(work: _Pass, config: RevisionConfig, *, publish: bool, enforce: bool) -> bool:
    """Publish what is missing of one revision's copies; True when each reads back right."""
    complete = True
    for item, key in zip(config.items, config.copy_keys(), strict=True):
        record = work.record(item)
        recorded = record.revisions.get(config.hash)
        seen = work.md5(key)
        if seen == item.md5:
            work.put(record.model_copy(update={"revisions": {**record.revisions, config.hash: item.md5}}))
            continue
        if seen is _NOT_READ:
            complete = complete and recorded == item.md5  # an outage: what was verified stands
            continue
        if seen is None:
            complete = False
            work.put(_without(record, config.hash))
            if publish:
                work.actions.append(ConfigAction("publish", key[0], key[1], content=item.content, type=item.type,
                                                 md5=item.md5, reason=f"revision {_numbers(config)}"))
            continue
        # Someone wrote into our copy: its pods read that now. Saved, then put back with enforce
        # (or when no pod has read it yet: a copy not verified is not released).
        assert isinstance(seen, str)
        put_back = enforce or recorded != item.md5
        work.hand_edited(key, seen, put_back=put_back, content=item.content, type_=item.type,
                         what="its revision keeps it until the next revision (enforce: false)")
        complete = complete and recorded == item.md5
    return complete


def _formal(work: _Pass, app: AppRelease, observed: Observed, stable: RevisionRecord,
            configs: Mapping[str, RevisionConfig], enforce: bool) -> None:
    """The formal dataIds follow the stable revision once it runs on every stable pod."""
    digest = config_hash_of(stable.template)
    dep = observed.deployments.get("stable")
    replicas = app.spec.replicas
    if digest is None or digest not in configs:
        return
    if replicas > 0 and (dep is None or not dep.rolled_out(stable.hash, replicas)):
        return
    for item in configs[digest].items:
        key = (item.group, item.data_id)
        record = work.record(item)
        seen = work.md5(key)
        if seen == item.md5:
            work.put(record.model_copy(update={"md5": item.md5, "formal_hash": digest}))
            continue
        if seen is _NOT_READ:
            continue
        publish = ConfigAction("publish", item.group, item.data_id, content=item.content, type=item.type,
                               md5=item.md5, reason=f"formal <- revision {stable.number}")
        if seen is None or seen == record.md5:
            work.actions.append(publish)  # ours and unchanged (or never there): the stable content goes in
            continue
        assert isinstance(seen, str)
        promoting = record.formal_hash != digest
        work.hand_edited(key, seen, put_back=enforce or promoting, content=item.content, type_=item.type,
                         what="put back at the next promotion (enforce: false)")


def _collect(work: _Pass, configs: Mapping[str, RevisionConfig]) -> None:
    """Copies of revisions no longer kept are deleted, and forgotten once reads show them gone."""
    for key, record in list(work.items.items()) + [((i.group, i.data_id), i) for i in work.previous.items
                                                   if (i.group, i.data_id) not in work.items]:
        gone = [h for h in record.revisions if h not in configs]
        if not gone:
            work.items.setdefault(key, record)
            continue
        revisions = dict(record.revisions)
        for digest in gone:
            copy = (copy_group(record.group, digest), record.data_id)
            if work.md5(copy) is None:
                del revisions[digest]
            else:
                work.actions.append(ConfigAction("delete", copy[0], copy[1], reason="revision no longer in history"))
        work.items[key] = record.model_copy(update={"revisions": revisions})


def _without(record: NacosConfigItemStatus, digest: str) -> NacosConfigItemStatus:
    return record.model_copy(update={"revisions": {h: m for h, m in record.revisions.items() if h != digest}})


def _held(track: TrackPlan, running: str | None, kept: list[RevisionRecord]) -> TrackPlan:
    """The track keeps the revision it runs (its pods read their own copies), or has no pods."""
    record = next((r for r in kept if r.hash == running), None) if running else None
    if record is not None and record.hash != track.revision_hash:
        return dataclasses.replace(track, revision=record.number, revision_hash=record.hash, template=record.template)
    return dataclasses.replace(track, replicas=0)


def _numbers(config: RevisionConfig) -> str:
    return ", ".join(str(n) for n in config.revisions if n)


def _published_message(config: RevisionConfig) -> str:
    groups = sorted({copy_group(i.group, config.hash) for i in config.items})
    ids = ", ".join(i.data_id for i in config.items)
    return f"revision {_numbers(config)}: {ids} published to {', '.join(groups)} (md5 read back)"


def _published_condition(invalid: Mapping[str, str], waiting: list[str], read: ConfigRead,
                         tracks: list[TrackPlan], published: set[str]) -> Condition:
    if invalid:
        return C.condition(CONFIG_PUBLISHED, False, "ConfigInvalid", "; ".join(sorted(invalid.values())))
    if waiting:
        # Nacos unreadable says more than the publish that failed with it.
        if read.error and read.error_reason != "Pending":
            return C.condition(CONFIG_PUBLISHED, False, "RegistryUnavailable", read.error)
        if read.action_error:
            return C.condition(CONFIG_PUBLISHED, False, "PublishFailed", read.action_error)
        return C.condition(CONFIG_PUBLISHED, False, "Publishing", f"publishing {', '.join(waiting)}")
    numbers = sorted({t.revision for t in tracks if config_hash_of(t.template) in published})
    return C.condition(CONFIG_PUBLISHED, True, "Published",
                       f"revision {', '.join(map(str, numbers))}: every copy published and read back")


def _drift_condition(work: _Pass) -> Condition:
    if work.drift:
        names = ", ".join(f"{d.group}/{d.data_id} (saved to {d.saved_to})" for d in work.drift.values())
        return C.condition(CONFIG_DRIFT, True, "HandEdited", f"edited in Nacos by hand: {names}")
    return C.condition(CONFIG_DRIFT, False, "InSync", f"last: {work.last_drift}" if work.last_drift else "")


def config_table(status: ConfigStatus | None, revisions: Iterable[RevisionRecord],
                 pods_by_revision: Mapping[int, list[str]]) -> list[dict[str, object]]:
    """What `apprelease config` and the console show: per dataId its formal copy and each
    revision's copy, with md5, the revisions that read it and their live pods."""
    nacos = status.nacos if status is not None else None
    if nacos is None:
        return []
    by_hash: dict[str, list[int]] = {}
    for record in revisions:
        digest = config_hash_of(record.template)
        if digest is not None:
            by_hash.setdefault(digest, []).append(record.number)
    drifted = {(d.group, d.data_id): d for d in nacos.drift}
    rows: list[dict[str, object]] = []
    for item in nacos.items:
        formal_drift = drifted.get((item.group, item.data_id))
        rows.append({"dataId": item.data_id, "group": item.group, "copy": "formal", "md5": item.md5,
                     "revisions": sorted(by_hash.get(item.formal_hash or "", [])), "pods": [],
                     "handEdited": formal_drift.saved_to if formal_drift else None})
        for digest, md5 in sorted(item.revisions.items(), key=lambda kv: min(by_hash.get(kv[0], [0]))):
            numbers = sorted(by_hash.get(digest, []))
            group = copy_group(item.group, digest)
            copy_drift = drifted.get((group, item.data_id))
            rows.append({"dataId": item.data_id, "group": group, "copy": digest, "md5": md5, "revisions": numbers,
                         "pods": sorted(p for n in numbers for p in pods_by_revision.get(n, [])),
                         "handEdited": copy_drift.saved_to if copy_drift else None})
    return rows
