"""The reconciler's view of the cluster: the watch caches plus our own recent writes.

Watch events lag behind our writes. Without the overlay, a reconcile triggered in between
would see the old status (and, say, act on a promote request twice) or re-apply a child it
just applied. So every write's response is remembered until the watch delivers it (`seen`),
packed like the watch caches: during a burst of new AppReleases every app's writes are
outstanding at once, and the heap keeps such a peak (docs/benchmarks.md, "RSS at 1,000").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

from ..k8s.informer import Source
from ..k8s.observe import (
    AppKey,
    Children,
    hpa_app_key,
    hpa_state,
    pod_state,
    revision_view,
    slim_app,
    slim_object,
    slim_revision,
)
from ..k8s.packing import pack, unpack
from ..render import labels

DELETED = object()  # tombstone for objects we deleted
# A remembered write: its resourceVersion (compared with the watch's) and its packed slim form.
Written = tuple[int, bytes]


def _packed_slim(body: Mapping[str, Any]) -> bytes:
    return pack(slim_object(body))


def _packed_endpoint_slice(body: Mapping[str, Any]) -> bytes:
    return pack(slim_object(body) | {"endpoints": body.get("endpoints") or [], "ports": body.get("ports") or []})


def _packed_revision(body: Mapping[str, Any]) -> bytes:
    return pack(slim_revision(body))


# The children the planner reads (what the reconciler applies and prunes)...
PLANNED_CHILDREN = (
    Source("Deployment", _packed_slim),
    Source("Service", _packed_slim),
    Source("Ingress", _packed_slim),
    Source("ConfigMap", _packed_slim),
    Source("ControllerRevision", _packed_revision),
    # Gateway API may not be installed: then nothing is listed, and nothing asked for.
    Source("HTTPRoute", _packed_slim, optional=True),
)
# ... and everything watched: pods as the planner's small summaries, EndpointSlices for
# the default registry, the users' HPAs by the app they scale.
WATCHED_CHILDREN = (
    *PLANNED_CHILDREN,
    Source("Pod", pod_state),
    Source("EndpointSlice", _packed_endpoint_slice),
    Source("HorizontalPodAutoscaler", hpa_state, key=hpa_app_key, all_objects=True),
)


class Lookup(Protocol):
    """kopf's index or our informer: app key → values (KeyError when there are none)."""

    def __getitem__(self, key: AppKey, /) -> Iterable[Any]: ...


class ChildLookup(Lookup, Protocol):
    def owner_of(self, namespace: str, name: str) -> AppKey | None: ...


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the kopf index (AppReleases) and the informers (children) keep of an object."""
    kind = obj["kind"]
    if kind == "AppRelease":
        return slim_app(obj)
    if kind == "ControllerRevision":
        return slim_revision(obj)
    return slim_object(obj)


def _app_of(kind: str, meta: Mapping[str, Any]) -> str | None:
    """The AppRelease an object of ours belongs to: itself, or its instance label's."""
    return meta.get("name") if kind == "AppRelease" else (meta.get("labels") or {}).get(labels.INSTANCE)


def _view(kind: str) -> Callable[[bytes], dict[str, Any]]:
    """Revisions with their parsed record (a bounded cache); everything else as it was."""
    return revision_view if kind == "ControllerRevision" else unpack


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _values(index: Lookup, key: AppKey) -> Iterable[Any]:
    try:
        return list(index[key])
    except KeyError:
        return []


class IndexCache:
    def __init__(self, apps: Lookup, children: Callable[[str], ChildLookup]):
        self._apps = apps
        self._children = children  # by kind
        # (kind, namespace, app) → {name: Written or DELETED}
        self._overlay: dict[tuple[str, str, str], dict[str, Written | object]] = {}
        self._lock = threading.Lock()

    # Writes remembered ---------------------------------------------------------------------

    def remember(self, obj: Mapping[str, Any]) -> None:
        """Packed as its watch cache packs it, and read back the same way (`_view`)."""
        self._put(obj["kind"], obj["metadata"], (_rv(obj), pack(_slim(obj))))

    def forget(self, obj: Mapping[str, Any]) -> None:
        self._put(obj["kind"], obj["metadata"], DELETED)

    def _put(self, kind: str, meta: Mapping[str, Any], value: Written | object) -> None:
        app = _app_of(kind, meta)
        if not app:
            return
        with self._lock:
            self._overlay.setdefault((kind, meta["namespace"], app), {})[meta["name"]] = value

    def seen(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        """The watch delivered this object (and its cache holds it): a write of ours it has
        caught up with is dropped now, not at the app's next read, which a burst of new
        AppReleases can hold back for minutes. (`_merge` still drops what a relist caught up.)"""
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        app = _app_of(str(kind), meta)
        if not app:
            return
        overlay_key = (str(kind), str(meta.get("namespace")), app)
        with self._lock:
            mine = self._overlay.get(overlay_key)
            value = mine.get(meta.get("name", "")) if mine else None
            if mine is None or value is None:
                return
            # A deletion is caught up by the watch's deletion; a write by any later version,
            # a deletion by someone else included.
            caught_up = deleted if value is DELETED else _rv(obj) >= cast(Written, value)[0]
            if caught_up:
                del mine[meta["name"]]
                if not mine:
                    del self._overlay[overlay_key]

    def pending_writes(self) -> int:
        """Writes (and deletions) the watches have not delivered yet."""
        with self._lock:
            return sum(len(named) for named in self._overlay.values())

    def _merge(self, kind: str, key: AppKey, indexed: dict[str, Any]) -> dict[str, Any]:
        """Indexed objects, replaced by our fresher writes until the watch catches up."""
        with self._lock:
            mine = self._overlay.get((kind, key[0], key[1]))
            if not mine:
                return indexed
            merged = dict(indexed)
            fresher: list[bytes] = []
            for name, value in list(mine.items()):
                seen = indexed.get(name)
                if value is DELETED:
                    if seen is None:
                        del mine[name]
                    merged.pop(name, None)
                    continue
                version, packed = cast(Written, value)
                if seen is not None and _rv(seen) >= version:
                    del mine[name]
                else:
                    fresher.append(packed)
            if not mine:
                del self._overlay[(kind, key[0], key[1])]
        for obj in map(_view(kind), fresher):  # unpacked outside the lock
            merged[obj["metadata"]["name"]] = obj
        return merged

    # Reads ---------------------------------------------------------------------------------

    def app(self, key: AppKey) -> dict[str, Any] | None:
        indexed = {obj["metadata"]["name"]: obj for obj in map(unpack, _values(self._apps, key))}
        return self._merge("AppRelease", key, indexed).get(key[1])

    def children(self, key: AppKey) -> Children:
        result = Children()
        for source in PLANNED_CHILDREN:
            packed = _values(self._children(source.kind), key)
            indexed = {obj["metadata"]["name"]: obj for obj in map(_view(source.kind), packed)}
            result.by_kind[source.kind] = self._merge(source.kind, key, indexed)
        result.pods = list(_values(self._children("Pod"), key))
        result.hpas = list(_values(self._children("HorizontalPodAutoscaler"), key))
        return result

    def owner_of(self, kind: str, namespace: str, name: str) -> AppKey | None:
        """The app whose object of this kind and name is, if any (watched or just written)."""
        with self._lock:
            for (k, ns, app), named in self._overlay.items():
                if k == kind and ns == namespace and named.get(name) not in (None, DELETED):
                    return (ns, app)
        return self._children(kind).owner_of(namespace, name)

    def endpoint_slices(self, key: AppKey) -> list[dict[str, Any]]:
        return [unpack(data) for data in _values(self._children("EndpointSlice"), key)]
