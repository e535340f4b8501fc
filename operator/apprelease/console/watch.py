"""One watch per resource kind for the whole console, however many browsers are open.

Each ``Store`` lists its kind (in pages), then watches from the list's resourceVersion with
bookmarks, resumes where a server-closed watch stopped, relists on 410 Gone and backs off on
errors, keeping what it had. Objects are slimmed as they arrive (status and what the pages
show, never managedFields or last-applied annotations) and grouped by app. Every change is
announced to the listeners as (kind, app key); the pages re-render from the store.

The watches run as the console's own identity; what a user may see of them is checked per
user and namespace (access.py) before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..k8s.client import RESOURCES, ApiError
from ..render import labels
from .kube import Client
from .metrics import WATCH_EVENTS, WATCH_REQUESTS, WATCHES_OPEN

log = logging.getLogger("apprelease.console.watch")

PAGE_SIZE = 500
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_READ_TIMEOUT_SECONDS = 330
MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
EVENTS_PER_APP = 30

AppKey = tuple[str, str]  # (namespace, app name)
ObjectKey = tuple[str, str]  # (namespace, object name)
Listener = Callable[[str, AppKey], None]


class Gone(Exception):
    """The watch's resourceVersion expired (410): list again."""


_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation",
                                 "creationTimestamp", "deletionTimestamp", "labels", "ownerReferences")
            if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    if annotations:
        kept["annotations"] = annotations
    return kept


def _slim_object(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": slim_metadata(obj.get("metadata") or {}), "spec": obj.get("spec") or {},
            "status": obj.get("status") or {}}


def _slim_deployment(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return {"metadata": slim_metadata(obj.get("metadata") or {}),
            "spec": {"replicas": spec.get("replicas", 0)},
            "image": containers[0].get("image", ""),
            "status": obj.get("status") or {}}


def _slim_pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {"metadata": slim_metadata(obj.get("metadata") or {}),
            "spec": {"nodeName": spec.get("nodeName")},
            "status": {k: status[k] for k in ("phase", "podIP", "conditions", "containerStatuses", "reason")
                       if k in status}}


def _slim_revision(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": slim_metadata(obj.get("metadata") or {}), "revision": obj.get("revision"),
            "data": obj.get("data") or {}}


def _slim_event(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj.get(k) for k in ("type", "reason", "message", "count", "lastTimestamp", "eventTime",
                                    "firstTimestamp", "involvedObject", "source", "reportingComponent")} | {
        "metadata": {k: (obj.get("metadata") or {}).get(k) for k in ("name", "namespace", "creationTimestamp")}}


def _instance_of(obj: dict[str, Any]) -> AppKey | None:
    meta = obj["metadata"]
    app = (meta.get("labels") or {}).get(labels.INSTANCE)
    return (meta.get("namespace", ""), app) if app else None


@dataclass(frozen=True)
class Kind:
    name: str  # the RESOURCES key
    slim: Callable[[dict[str, Any]], dict[str, Any]]
    label_selector: str = ""
    only_of_apps: bool = False  # keep only objects that belong to an app (Events)


MANAGED = f"{labels.MANAGED_BY}={labels.MANAGER}"
APPRELEASES = Kind("AppRelease", _slim_object)
DEPLOYMENTS = Kind("Deployment", _slim_deployment, MANAGED)
PODS = Kind("Pod", _slim_pod, MANAGED)
REVISIONS = Kind("ControllerRevision", _slim_revision, MANAGED)
EVENTS = Kind("Event", _slim_event, only_of_apps=True)


class Store:
    """The objects of one kind (in one namespace or all), by (namespace, name)."""

    def __init__(self, client: Client, kind: Kind, namespace: str | None,
                 app_of: Callable[[dict[str, Any]], AppKey | None], notify: Listener):
        self.kind = kind
        self._client = client
        self._namespace = namespace
        self._app_of = app_of
        self._notify = notify
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.by_app: dict[AppKey, dict[str, dict[str, Any]]] = {}
        self.synced = asyncio.Event()
        self.error: str | None = None  # the last failure (shown on pages), None when fine
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.kind.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def of_app(self, key: AppKey) -> list[dict[str, Any]]:
        return list(self.by_app.get(key, {}).values())

    async def _run(self) -> None:
        version: str | None = None
        backoff = MIN_BACKOFF_SECONDS
        while True:
            try:
                if version is None:
                    version = await self._relist()
                    self.synced.set()
                version = await self._watch(version)
                backoff = MIN_BACKOFF_SECONDS
                self.error = None
            except Gone:
                version = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # apiserver down, network, RBAC: retry, keep the cache
                self.error = str(exc)
                log.warning("watching %s: %s; retrying in %.1fs", self.kind.name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)

    def _path(self) -> str:
        return RESOURCES[self.kind.name].path(self._namespace)

    async def _relist(self) -> str:
        query: dict[str, Any] = {"limit": PAGE_SIZE}
        if self.kind.label_selector:
            query["labelSelector"] = self.kind.label_selector
        fresh: dict[ObjectKey, dict[str, Any]] = {}
        version = ""
        while True:
            WATCH_REQUESTS.labels(self.kind.name, "list").inc()
            page = await self._client.request("GET", self._path(), query=query, resource=self.kind.name)
            for obj in page.get("items") or []:
                slim = self.kind.slim(obj)
                if self.kind.only_of_apps and self._app_of(slim) is None:
                    continue
                fresh[(slim["metadata"].get("namespace", ""), slim["metadata"]["name"])] = slim
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if not meta.get("continue"):
                break
            query["continue"] = meta["continue"]
        previous, self.objects = self.objects, fresh
        self.by_app = {}
        for obj in fresh.values():
            self._index(obj)
        for key in previous.keys() | fresh.keys():
            if previous.get(key) != fresh.get(key):
                app = self._app_of(fresh.get(key) or previous[key])
                if app is not None:
                    self._notify(self.kind.name, app)
        return version

    async def _watch(self, version: str) -> str:
        query: dict[str, Any] = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                                 "timeoutSeconds": WATCH_SERVER_TIMEOUT_SECONDS}
        if self.kind.label_selector:
            query["labelSelector"] = self.kind.label_selector
        WATCH_REQUESTS.labels(self.kind.name, "watch").inc()
        WATCHES_OPEN.labels(self.kind.name).inc()
        try:
            async for line in self._client.lines(self._path(), query, WATCH_READ_TIMEOUT_SECONDS):
                event = orjson.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise ApiError(int(obj.get("code") or 0), obj.get("reason", ""), obj.get("message", ""))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    WATCH_EVENTS.labels(self.kind.name).inc()
                    self._apply(kind, self.kind.slim(obj))
        finally:
            WATCHES_OPEN.labels(self.kind.name).dec()
        return version

    def _index(self, obj: dict[str, Any]) -> None:
        app = self._app_of(obj)
        if app is not None:
            self.by_app.setdefault(app, {})[obj["metadata"]["name"]] = obj

    def _unindex(self, obj: dict[str, Any]) -> None:
        app = self._app_of(obj)
        named = self.by_app.get(app) if app is not None else None
        if named is not None:
            named.pop(obj["metadata"]["name"], None)
            if not named:
                del self.by_app[app]  # type: ignore[arg-type]

    def _apply(self, event_type: str | None, obj: dict[str, Any]) -> None:
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        old = self.objects.pop(key, None)
        if old is not None:
            self._unindex(old)
        app = self._app_of(obj)
        if event_type != "DELETED" and (app is not None or not self.kind.only_of_apps):
            self.objects[key] = obj
            self._index(obj)
        if app is not None:
            self._notify(self.kind.name, app)


class Watches:
    """Every store the console keeps. AppReleases from the start; the kinds only the app
    page needs (Deployments, Pods, ControllerRevisions, Events) on its first visit."""

    def __init__(self, client: Client, namespace: str | None):
        self._client = client
        self._namespace = namespace
        self._listeners: list[Listener] = []
        self.apps = Store(client, APPRELEASES, namespace, self._app_key, self._announce)
        self.deployments = Store(client, DEPLOYMENTS, namespace, _instance_of, self._announce)
        self.pods = Store(client, PODS, namespace, _instance_of, self._announce)
        self.revisions = Store(client, REVISIONS, namespace, _instance_of, self._announce)
        self.events = Store(client, EVENTS, namespace, self._event_app, self._announce)
        self._details_started = False

    @staticmethod
    def _app_key(obj: dict[str, Any]) -> AppKey:
        return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def _event_app(self, event: dict[str, Any]) -> AppKey | None:
        """The app an Event is about: the AppRelease itself, or one of its Deployments/pods."""
        involved = event.get("involvedObject") or {}
        namespace, name, kind = involved.get("namespace", ""), involved.get("name", ""), involved.get("kind")
        if kind == "AppRelease":
            return (namespace, name)
        store = {"Pod": self.pods, "Deployment": self.deployments}.get(kind or "")
        if kind == "ReplicaSet":
            store, name = self.deployments, name.rsplit("-", 1)[0]
        obj = store.objects.get((namespace, name)) if store is not None else None
        return _instance_of(obj) if obj is not None else None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _announce(self, kind: str, app: AppKey) -> None:
        for listener in list(self._listeners):
            listener(kind, app)

    def start(self) -> None:
        self.apps.start()

    def start_details(self) -> None:
        if not self._details_started:
            self._details_started = True
            for store in self.detail_stores():
                store.start()

    def detail_stores(self) -> Iterable[Store]:
        return (self.deployments, self.pods, self.revisions, self.events)

    async def wait_details(self, timeout: float) -> None:
        self.start_details()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for store in self.detail_stores():
                    await store.synced.wait()

    async def stop(self) -> None:
        for store in (self.apps, *self.detail_stores()):
            await store.stop()

    def events_of(self, key: AppKey) -> list[dict[str, Any]]:
        events = self.events.of_app(key)
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or
                    (e.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
        return events[:EVENTS_PER_APP]
