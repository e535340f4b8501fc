"""List-then-watch caches keyed by app, like client-go's informers, holding little: the one
watch layer of apprelease (the operator's children, the console's pages).

kopf passes every watched object through its per-object machinery (a memory record per
object, a worker per event stream, an index toggle while listing). For the ~7 children of
each AppRelease that cost more time and memory than the objects themselves, and children
need none of it: keep each one's small form under its owning app and wake the app. The
console keeps what its pages show the same way (AppReleases under their own key).

One thread per kind (and namespace): LIST in pages, then WATCH from the list's
resourceVersion with bookmarks; a server-closed watch resumes from the last version seen,
an expired one (410 Gone) relists and wakes every app whose objects differ. Outages are
retried with back-off; the cache keeps what it had, so nothing is reconciled from nothing.
Reads are thread-safe; ``on_change`` and ``on_synced`` are called on the informer's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes.watch.watch import iter_resp_lines

from .client import RESOURCES, ApiError, Kube
from .observe import AppKey, app_key_of

log = logging.getLogger("apprelease.informer")

PAGE_SIZE = 500  # a page of Deployments is ~2 MB parsed; the whole list at once can be 100s
WATCH_SERVER_TIMEOUT_SECONDS = 300  # the apiserver ends the watch; we resume from its version
WATCH_READ_TIMEOUT_SECONDS = 330  # ... and a stream silent for longer than that is dead
MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
OPTIONAL_RETRY_SECONDS = 60.0  # a kind that is not installed: is it now?

Keep = Callable[[Mapping[str, Any]], Any]
OnChange = Callable[[AppKey], None]
# A watch event (type, object), handed on once the cache holds it.
OnEvent = Callable[[str, Mapping[str, Any]], None]


class WatchObserver:
    """What an informer reports as it goes, for metrics (no-ops here; the console counts)."""

    def requested(self, kind: str, verb: str) -> None:
        """A LIST page ("list") or a WATCH ("watch") was asked for."""

    def streaming(self, kind: str, open_: bool) -> None:
        """A watch stream opened (True) or ended (False)."""

    def received(self, kind: str) -> None:
        """A watch event (not a bookmark) arrived."""


QUIET = WatchObserver()


class WatchExpired(Exception):
    """The resourceVersion we watch from is too old (410 Gone): list again."""


@dataclass(frozen=True)
class Source:
    """What to watch, and what to keep of each object.

    By default an object belongs to the app its instance label names, and only objects with
    our managed-by label are watched. ``key`` and ``all_objects`` change that for objects the
    user makes (an HPA belongs to the app its scaleTargetRef points at). ``optional``: the
    kind may not be installed (Gateway API): a 404 lists as empty, and is retried slowly.
    """

    kind: str
    keep: Keep
    key: Callable[[Mapping[str, Any]], AppKey | None] = app_key_of
    all_objects: bool = False
    optional: bool = False


class Informer:
    """One kind in one namespace (or all): app key → {object name: kept form}."""

    def __init__(
        self,
        kube: Kube,
        source: Source,
        *,
        namespace: str | None,
        label_selector: str,
        on_change: OnChange,
        on_event: OnEvent | None = None,
        list_lock: threading.Lock | None = None,
        on_synced: Callable[[], None] | None = None,
        observer: WatchObserver = QUIET,
    ):
        self._kube = kube
        self._source = source
        self._list_lock = list_lock or threading.Lock()
        self._namespace = namespace
        self._selector = "" if source.all_objects else label_selector
        self._on_change = on_change
        self._on_event = on_event
        self._on_synced = on_synced
        self._observer = observer
        self._items: dict[AppKey, dict[str, Any]] = {}
        # (namespace, name) → the app whose object it is: a name taken by another app.
        self._owners: dict[tuple[str, str], AppKey] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._stopping = threading.Event()
        self._response: Any = None
        self.synced = threading.Event()
        where = namespace or "all namespaces"
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{source.kind}-{where}", daemon=True
        )

    # Reads (any thread) -------------------------------------------------------------------

    def __getitem__(self, key: AppKey) -> list[Any]:
        with self._lock:
            return list(self._items[key].values())

    def get(self, key: AppKey) -> list[Any]:
        """The kept forms under ``key`` (none: an empty list)."""
        with self._lock:
            return list(self._items.get(key, {}).values())

    def keys(self) -> list[AppKey]:
        with self._lock:
            return list(self._items)

    def object_count(self) -> int:  # not __len__: an empty informer must not be falsy
        with self._lock:
            return sum(len(named) for named in self._items.values())

    def owner_of(self, namespace: str, name: str) -> AppKey | None:
        with self._lock:
            return self._owners.get((namespace, name))

    # Life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed: nothing to unblock
                response.shutdown()  # unblocks the thread's read

    def _run(self) -> None:
        version: str | None = None
        backoff = MIN_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                    self._listed()
                version = self._watch(version)
                backoff = MIN_BACKOFF_SECONDS
                self.last_error = None
            except WatchExpired:
                version = None
            except Exception as exc:  # apiserver down, network, RBAC: retry
                if self._stopping.is_set():
                    return
                if self._source.optional and isinstance(exc, ApiError) and exc.not_found:
                    # Not installed (yet): an empty cache that counts as listed; look again later.
                    with self._lock:
                        self._items.clear()
                        self._owners.clear()
                    self._listed()
                    version = None
                    self._stopping.wait(OPTIONAL_RETRY_SECONDS)
                    continue
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("watching %s: %s; retrying in %.1fs", self._source.kind, exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)

    def _listed(self) -> None:
        self.synced.set()
        if self._on_synced is not None:
            self._on_synced()

    # LIST ---------------------------------------------------------------------------------

    def _relist(self) -> str:
        fresh: dict[AppKey, dict[str, Any]] = {}
        owners: dict[tuple[str, str], AppKey] = {}
        query: dict[str, Any] = {"limit": PAGE_SIZE}
        if self._selector:
            query["labelSelector"] = self._selector
        path = RESOURCES[self._source.kind].path(self._namespace)
        version = ""
        while True:
            with self._list_lock:  # one decoded page at a time, across all informers
                self._observer.requested(self._source.kind, "list")
                page = self._kube.request("GET", path, query=query, resource=self._source.kind)
                for obj in page.get("items") or []:
                    # List items come without kind and apiVersion; watch events carry them.
                    obj.setdefault("kind", self._source.kind)
                    obj.setdefault("apiVersion", RESOURCES[self._source.kind].group_version)
                    key = self._source.key(obj)
                    kept = self._keep(obj) if key is not None else None
                    if key is not None and kept is not None:
                        fresh.setdefault(key, {})[obj["metadata"]["name"]] = kept
                        owners[(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = key
                meta = page.get("metadata") or {}
                del page  # before the next page is decoded
            version = str(meta.get("resourceVersion") or version)
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        with self._lock:
            previous, self._items = self._items, fresh
            self._owners = owners
        if self.synced.is_set():  # a relist after the first: wake whatever changed meanwhile
            for key in previous.keys() | fresh.keys():
                if previous.get(key) != fresh.get(key):
                    self._on_change(key)
        return version

    # WATCH --------------------------------------------------------------------------------

    def _watch(self, version: str) -> str:
        """Apply watch events until the server ends the stream; the last version seen."""
        for event in self._events(version):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise WatchExpired(obj.get("message", ""))
                raise ApiError(int(obj.get("code") or 0), obj.get("reason", ""), obj.get("message", ""))
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind != "BOOKMARK":
                self._observer.received(self._source.kind)
                self._apply(kind, obj)
        return version

    def _events(self, version: str) -> Iterator[dict[str, Any]]:
        query = {
            **({"labelSelector": self._selector} if self._selector else {}),
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SERVER_TIMEOUT_SECONDS,
        }
        path = RESOURCES[self._source.kind].path(self._namespace)
        self._observer.requested(self._source.kind, "watch")
        response = self._kube.open_stream(
            path, query=query, resource=self._source.kind, read_timeout=WATCH_READ_TIMEOUT_SECONDS
        )
        self._response = response
        self._observer.streaming(self._source.kind, True)
        try:
            if response.status == 410:
                raise WatchExpired("watch: 410 Gone")
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    return
                yield orjson.loads(line)
        finally:
            self._observer.streaming(self._source.kind, False)
            self._response = None
            response.release_conn()

    def _apply(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event. An object is filed under the app it belongs to now, and taken
        from the one it belonged to (a changed label, or a deletion whose object no longer
        says which app it was: an Event of a pod that is gone)."""
        meta = obj.get("metadata") or {}
        where = (meta.get("namespace", ""), meta["name"])
        key = kept = None
        if event_type != "DELETED":
            key = self._source.key(obj)
            kept = self._keep(obj) if key is not None else None
            if key is not None and kept is None:
                self._on_change(key)  # unreadable (logged): its app keeps what it had
                return
        with self._lock:
            previous = self._owners.pop(where, None)
            if previous is not None:
                named = self._items.get(previous)
                if named is not None:
                    named.pop(where[1], None)
                    if not named:
                        del self._items[previous]
            if key is not None:
                self._items.setdefault(key, {})[where[1]] = kept
                self._owners[where] = key
        if self._on_event is not None:
            self._on_event(event_type or "", obj)
        for changed in {previous, key} - {None}:
            self._on_change(changed)  # type: ignore[arg-type]

    def _keep(self, obj: Mapping[str, Any]) -> Any:
        """The kept form, or None for an object we cannot read: skipped, never retried
        forever (a watch that failed on it would resume at the same event)."""
        try:
            return self._source.keep(obj)
        except Exception:  # any malformed object, not just the ones we foresee
            meta = obj.get("metadata") or {}
            log.exception("%s %s/%s: cannot read it; ignored", self._source.kind, meta.get("namespace"), meta.get("name"))
            return None


class Informers:
    """Every child kind in every watched namespace."""

    def __init__(
        self,
        kube: Kube,
        sources: Iterable[Source],
        *,
        namespaces: tuple[str, ...],
        label_selector: str,
        on_change: OnChange,
        on_event: OnEvent | None = None,
    ):
        # Decoded list pages are a restart's largest allocations, and the heap keeps its peak
        # (docs/benchmarks.md): the informers take turns listing, one page at a time.
        list_lock = threading.Lock()
        self._by_name: dict[str, dict[str | None, Informer]] = {
            source.kind: {
                ns: Informer(kube, source, namespace=ns, label_selector=label_selector, on_change=on_change,
                             on_event=on_event, list_lock=list_lock)
                for ns in (namespaces or (None,))
            }
            for source in sources
        }

    def _all(self) -> list[Informer]:
        return [informer for informers in self._by_name.values() for informer in informers.values()]

    def start(self) -> None:
        for informer in self._all():
            informer.start()

    def stop(self) -> None:
        for informer in self._all():
            informer.stop()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return all(informer.synced.wait(timeout) for informer in self._all())

    def unsynced(self) -> dict[str, str | None]:
        """Kinds (with their last error) whose first LIST has not succeeded yet."""
        return {
            kind: informer.last_error
            for kind, informers in self._by_name.items()
            for informer in informers.values()
            if not informer.synced.is_set()
        }

    def object_count(self) -> int:
        return sum(informer.object_count() for informer in self._all())

    def of_kind(self, kind: str) -> _ByNamespace:
        return _ByNamespace(self._by_name[kind])


@dataclass(frozen=True)
class _ByNamespace:
    """One kind across the watched namespaces, looked up like a kopf index."""

    informers: dict[str | None, Informer]

    def __getitem__(self, key: AppKey) -> list[Any]:
        informer = self.informers.get(None)  # cluster-wide
        if informer is None:
            informer = self.informers.get(key[0])
        if informer is None:
            raise KeyError(key)
        return informer[key]

    def owner_of(self, namespace: str, name: str) -> AppKey | None:
        informer = self.informers.get(None) or self.informers.get(namespace)
        return informer.owner_of(namespace, name) if informer is not None else None

    def get(self, key: AppKey) -> list[Any]:
        """The kept forms under ``key`` (none, or a namespace not watched: an empty list)."""
        informer = self.informers.get(None) or self.informers.get(key[0])
        return informer.get(key) if informer is not None else []

    def all_keys(self) -> list[AppKey]:
        keys: list[AppKey] = []
        for informer in self.informers.values():
            keys += informer.keys()
        return keys
