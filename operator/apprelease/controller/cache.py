"""The reconciler's view of the cluster: kopf's indices plus our own recent writes.

Watch events lag behind our writes. Without the overlay, a reconcile triggered in between
would see the old status (and, say, act on a promote request twice) or re-apply a child it
just applied. So every write's response is remembered until the watch catches up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..k8s.history import from_controller_revision
from ..k8s.observe import (
    RECORD,
    AppKey,
    Children,
    revision_view,
    slim_app,
    slim_object,
    slim_revision,
    unpack,
)
from ..render import labels

# kopf index name per kind (the handler function names in handlers.py).
INDEX_BY_KIND = {
    "Deployment": "deployment_index",
    "Service": "service_index",
    "Ingress": "ingress_index",
    "ConfigMap": "configmap_index",
    "ControllerRevision": "revision_index",
}
APP_INDEX = "apprelease_index"
POD_INDEX = "pod_index"
ENDPOINTSLICE_INDEX = "endpointslice_index"
DELETED = object()  # tombstone for objects we deleted


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _values(index: Any, key: AppKey) -> Iterable[Any]:
    try:
        return list(index[key])
    except KeyError:
        return []


class IndexCache:
    def __init__(self, indices: Mapping[str, Any]):
        self._indices = indices
        # (kind, namespace, app) → {name: slim object or DELETED}
        self._overlay: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    # Writes remembered ---------------------------------------------------------------------

    def remember(self, obj: Mapping[str, Any]) -> None:
        kind = obj["kind"]
        if kind == "AppRelease":
            slim = slim_app(obj)
        elif kind == "ControllerRevision":
            slim = slim_revision(obj)
            slim[RECORD] = from_controller_revision(slim)
        else:
            slim = slim_object(obj)
        self._put(kind, obj["metadata"], slim)

    def forget(self, obj: Mapping[str, Any]) -> None:
        self._put(obj["kind"], obj["metadata"], DELETED)

    def _put(self, kind: str, meta: Mapping[str, Any], value: Any) -> None:
        app = meta["name"] if kind == "AppRelease" else (meta.get("labels") or {}).get(labels.INSTANCE)
        if not app:
            return
        with self._lock:
            self._overlay.setdefault((kind, meta["namespace"], app), {})[meta["name"]] = value

    def _merge(self, kind: str, key: AppKey, indexed: dict[str, Any]) -> dict[str, Any]:
        """Indexed objects, replaced by our fresher writes until the watch catches up."""
        with self._lock:
            mine = self._overlay.get((kind, key[0], key[1]))
            if not mine:
                return indexed
            merged = dict(indexed)
            for name, value in list(mine.items()):
                seen = indexed.get(name)
                if value is DELETED:
                    if seen is None:
                        del mine[name]
                    merged.pop(name, None)
                elif seen is not None and _rv(seen) >= _rv(value):
                    del mine[name]
                else:
                    merged[name] = value
            if not mine:
                del self._overlay[(kind, key[0], key[1])]
            return merged

    # Reads ---------------------------------------------------------------------------------

    def app(self, key: AppKey) -> dict[str, Any] | None:
        indexed = {obj["metadata"]["name"]: obj for obj in map(unpack, _values(self._indices[APP_INDEX], key))}
        return self._merge("AppRelease", key, indexed).get(key[1])

    def children(self, key: AppKey) -> Children:
        result = Children()
        for kind, index_name in INDEX_BY_KIND.items():
            view = revision_view if kind == "ControllerRevision" else unpack
            indexed = {obj["metadata"]["name"]: obj for obj in map(view, _values(self._indices[index_name], key))}
            result.by_kind[kind] = self._merge(kind, key, indexed)
        result.pods = list(_values(self._indices[POD_INDEX], key))
        return result

    def endpoint_slices(self, key: AppKey) -> list[dict[str, Any]]:
        return [unpack(data) for data in _values(self._indices[ENDPOINTSLICE_INDEX], key)]
