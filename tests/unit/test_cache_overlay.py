"""The write overlay (controller/cache.py): our writes are read back until the watch has them,
and while they wait they are kept packed, like the watch caches.

Why the cost matters: a burst of new AppReleases (`kubectl apply` of 1,000) queues every
app's follow-up pass behind the new ones, and each app's writes (4 children, its revision,
its status) wait in the overlay until that pass reads them. Kept as parsed responses
(~30 KB an app with the parsed revision) they were 35 MiB at the peak of the benchmark's
1,000, and the heap kept that peak: RSS 146 instead of 112 MiB.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable
from typing import Any

import orjson

from apprelease.api.spec import AppRelease
from apprelease.controller import cache as cache_module
from apprelease.controller.cache import WATCHED_CHILDREN, IndexCache
from apprelease.k8s import history, observe, packing
from apprelease.k8s.history import to_controller_revision
from apprelease.k8s.observe import RECORD, AppKey, slim_app, slim_object, slim_revision
from apprelease.k8s.packing import pack
from apprelease.render import render_initial
from apprelease.rollout.observed import RevisionRecord

NAMESPACE = "shop"


class Index:
    """A kopf index or an informer: app key → packed objects."""

    def __init__(self) -> None:
        self.items: dict[AppKey, dict[str, bytes]] = {}

    def put(self, key: AppKey, name: str, packed: bytes) -> None:
        self.items.setdefault(key, {})[name] = packed

    def drop(self, key: AppKey, name: str) -> None:
        self.items.get(key, {}).pop(name, None)

    def __getitem__(self, key: AppKey) -> Iterable[Any]:
        return list(self.items[key].values())

    def owner_of(self, namespace: str, name: str) -> AppKey | None:
        return next((k for k, named in self.items.items() if k[0] == namespace and name in named), None)


def _cache() -> tuple[IndexCache, Index, dict[str, Index]]:
    apps = Index()
    children = {source.kind: Index() for source in WATCHED_CHILDREN}
    return IndexCache(apps, children.__getitem__), apps, children


def _as_returned(obj: dict[str, Any], version: int) -> dict[str, Any]:
    """What the apiserver answers an apply with: server fields and managedFields added."""
    meta = obj["metadata"]
    returned = {**obj, "metadata": {
        **meta, "uid": f"uid-{meta['name']}-{obj['kind']}", "resourceVersion": str(version),
        "generation": 1, "creationTimestamp": "2026-12-04T10:00:00Z",
        "managedFields": [{"manager": "apprelease", "operation": "Apply", "apiVersion": obj["apiVersion"],
                           "time": "2026-12-04T10:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in meta.get("labels", {})}},
                                        "f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}}],
    }}
    if obj["kind"] == "Deployment":
        returned["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                              "availableReplicas": 1, "conditions": [
                                  {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
    return returned


def _status(name: str) -> dict[str, Any]:
    """A healthy app's status, as the operator writes it (3 pods, registration block)."""
    at = "2026-12-04T10:00:00Z"
    conditions = [{"type": kind, "status": status, "reason": "Healthy", "message": "3/3 pods ready",
                   "lastTransitionTime": at, "observedGeneration": 1}
                  for kind, status in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"),
                                       ("Registered", "True"))]
    instances = [{"pod": f"{name}-7d9f8-{i}", "ip": f"10.0.0.{i}", "port": 8080, "healthy": True,
                  "enabled": True, "weight": 1.0, "ephemeral": True, "cluster": ""} for i in range(3)]
    return {"observedGeneration": 1, "phase": "Healthy", "message": "revision 1: 3/3 pods ready",
            "strategy": "rolling", "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
            "availableReplicas": 3, "selector": f"app.kubernetes.io/instance={name}", "ready": "3/3",
            "currentRevision": 1, "currentRevisionHash": "5d4f9c8b7a", "stableRevision": 1,
            "stableRevisionHash": "5d4f9c8b7a", "stable": {"replicas": 3, "readyReplicas": 3, "revision": 1},
            "registration": {"provider": "kubernetes", "service": f"{NAMESPACE}/{name}", "expected": 3,
                             "healthy": 3, "lastSyncTime": at, "instances": instances},
            "conditions": conditions}


def _writes_of_one_app(name: str) -> list[dict[str, Any]]:
    """An app's writes as answered: its 4 children, its revision record, its status."""
    app = AppRelease.model_validate({
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 1},
        "spec": {"image": "registry/shop:v1", "replicas": 3, "port": 8080,
                 "config": {"mountPath": "/etc/app", "files": {"app.yml": f"name: {name}\n"}},
                 "ingress": {"host": f"{name}.example.com"}},
    })
    record = RevisionRecord(number=1, hash="5d4f9c8b7a", template=app.spec.revision_template(),
                            created="2026-12-04T10:00:00Z")
    body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": app.model_dump(by_alias=True, exclude_none=True, mode="json")["spec"],
            "status": _status(name)}
    objects = [*render_initial(app), to_controller_revision(app, record), body]
    return [_as_returned(obj, version) for version, obj in enumerate(objects, start=100)]


def test_a_write_is_read_back_until_the_watch_has_it_then_the_watch_wins() -> None:
    cache, apps, children = _cache()
    key = (NAMESPACE, "web")
    writes = {obj["kind"]: obj for obj in _writes_of_one_app("web")}
    for obj in writes.values():
        cache.remember(obj)

    seen = cache.children(key)
    deployment = writes["Deployment"]
    assert seen.get("Deployment", "web") == slim_object(deployment)
    assert seen.get("Service", "web") == slim_object(writes["Service"])
    (revision,) = seen.of_kind("ControllerRevision")
    assert revision[RECORD].hash == "5d4f9c8b7a" and revision[RECORD].template.image == "registry/shop:v1"
    assert cache.app(key) == slim_app(writes["AppRelease"])

    # The watch delivers the same version (with a newer status): from now on it is read.
    watched = slim_object({**deployment, "status": {"replicas": 3}})
    children["Deployment"].put(key, "web", pack(watched))
    assert cache.children(key).get("Deployment", "web") == watched
    apps.put(key, "web", pack(slim_app({**writes["AppRelease"], "status": {"phase": "Healthy"}})))
    assert cache.app(key)["status"] == {"phase": "Healthy"}

    # An older watched version does not hide a newer write.
    older = {**deployment, "metadata": {**deployment["metadata"], "resourceVersion": "99"}}
    children["Deployment"].put(key, "web", pack(slim_object(older)))
    newer = {**deployment, "metadata": {**deployment["metadata"], "resourceVersion": "300"}}
    cache.remember(newer)
    assert cache.children(key).get("Deployment", "web") == slim_object(newer)


def test_a_deletion_hides_the_object_until_the_watch_drops_it() -> None:
    cache, _, children = _cache()
    key = (NAMESPACE, "web")
    service = next(obj for obj in _writes_of_one_app("web") if obj["kind"] == "Service")
    children["Service"].put(key, "web", pack(slim_object(service)))
    cache.forget(service)
    assert cache.children(key).get("Service", "web") is None
    children["Service"].drop(key, "web")
    assert cache.children(key).get("Service", "web") is None
    assert cache.owner_of("Service", NAMESPACE, "web") is None


def test_the_owner_of_a_name_just_written_is_known_before_the_watch_has_it() -> None:
    cache, _, _ = _cache()
    for obj in _writes_of_one_app("web"):
        cache.remember(obj)
    assert cache.owner_of("Deployment", NAMESPACE, "web") == (NAMESPACE, "web")
    assert cache.owner_of("Deployment", NAMESPACE, "other") is None


def test_waiting_writes_cost_about_their_packed_size() -> None:
    apps = 40
    raw = [orjson.dumps(obj) for i in range(apps) for obj in _writes_of_one_app(f"app-{i:03d}")]
    slim = {"AppRelease": slim_app, "ControllerRevision": slim_revision}
    packed_size = sum(len(pack(slim.get(obj["kind"], slim_object)(obj))) for obj in map(orjson.loads, raw))
    cache, _, _ = _cache()
    cache.remember(orjson.loads(raw[0]))  # the packing dictionary is built once per process
    cache.forget(orjson.loads(raw[0]))
    # What remember() allocates and keeps, the parsed responses included (this file parses
    # them): other tests' threads may allocate elsewhere meanwhile.
    files = (cache_module, observe, packing, history, __import__(__name__))
    where = [tracemalloc.Filter(True, module.__file__ or "") for module in files]
    where.append(tracemalloc.Filter(True, "*/pydantic*"))
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(where)
        for data in raw[len(raw) // apps:]:
            cache.remember(orjson.loads(data))
        after = tracemalloc.take_snapshot().filter_traces(where)
    finally:
        tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    writes = len(raw) - len(raw) // apps
    packed_waiting = packed_size * (apps - 1) / apps
    # Packed bytes plus the overlay's keys, slots and resourceVersions (~260 bytes a write
    # measured). Kept parsed, these writes cost ~1,270 bytes each beyond their packed size
    # (and the real ones, with every field the apiserver defaults, ~6 KB).
    assert kept < packed_waiting + 512 * writes, (kept, packed_waiting, writes)


def test_a_write_is_dropped_as_soon_as_the_watch_delivers_it() -> None:
    """Not only at the app's next read: a burst of new apps can hold that back for minutes."""
    cache, _, children = _cache()
    key = (NAMESPACE, "web")
    writes = {obj["kind"]: obj for obj in _writes_of_one_app("web")}
    for obj in writes.values():
        cache.remember(obj)
    assert cache.pending_writes() == 6
    deployment = writes["Deployment"]
    cache.seen({**deployment, "metadata": {**deployment["metadata"], "resourceVersion": "99"}})
    assert cache.pending_writes() == 6  # an older version: ours is still the fresher one
    children["Deployment"].put(key, "web", pack(slim_object(deployment)))
    cache.seen(deployment)
    assert cache.pending_writes() == 5
    assert cache.children(key).get("Deployment", "web") == slim_object(deployment)

    service = writes["Service"]
    cache.forget(service)
    cache.seen(service)  # the watch still shows it (a MODIFIED while it goes)
    assert cache.pending_writes() == 5
    cache.seen(service, deleted=True)
    assert cache.pending_writes() == 4

    # Someone deleted the ConfigMap we just wrote: the watch's deletion is newer than our write.
    config_map = writes["ConfigMap"]
    cache.seen({**config_map, "metadata": {**config_map["metadata"], "resourceVersion": "500"}}, deleted=True)
    assert cache.pending_writes() == 3
    assert list(cache.children(key).of_kind("ConfigMap")) == []


def test_the_apprelease_watch_drops_our_status_write_once_kopf_has_it() -> None:
    import asyncio

    from apprelease.controller.handlers import apprelease_changed

    cache, apps, _ = _cache()
    body = next(obj for obj in _writes_of_one_app("web") if obj["kind"] == "AppRelease")
    cache.remember(body)
    apps.put((NAMESPACE, "web"), "web", pack(slim_app(body)))  # kopf indexes before handlers run

    class Runtime:
        def __init__(self) -> None:
            self.cache = cache
            self.ready = asyncio.Event()
            self.queued: list[AppKey] = []

        def enqueue(self, key: AppKey, *, urgent: bool = False) -> None:
            self.queued.append(key)

    runtime = Runtime()
    asyncio.run(apprelease_changed(event={"type": "MODIFIED", "object": body}, namespace=NAMESPACE, name="web",
                                   memo={"runtime": runtime}))  # type: ignore[arg-type]
    assert runtime.queued == [(NAMESPACE, "web")]
    assert cache.pending_writes() == 0
