"""One watch per resource kind for the whole console, however many browsers are open.

The watches are the operator's informers (k8s/informer.py): each LISTs its kind in pages,
then WATCHes from the list's resourceVersion with bookmarks, resumes where a server-closed
watch stopped, relists on 410 Gone and backs off on errors, keeping what it had. Objects are
slimmed as they arrive (status and what the pages show, never managedFields or
last-applied annotations) and kept by app. Every change is announced on the event loop to
the listeners as (kind, app key); the pages re-render from the stores.

The watches run as the console's own identity; what a user may see of them is checked per
user and namespace (access.py) before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..k8s.client import Kube
from ..k8s.informer import Informer, Source, WatchObserver
from ..k8s.observe import app_key_of
from ..render import labels
from .metrics import WATCH_EVENTS, WATCH_REQUESTS, WATCHES_OPEN

EVENTS_PER_APP = 30

AppKey = tuple[str, str]  # (namespace, app name)
Listener = Callable[[str, AppKey], None]


_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation",
                                 "creationTimestamp", "deletionTimestamp", "labels", "ownerReferences")
            if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    if annotations:
        kept["annotations"] = annotations
    return kept


def _slim_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": slim_metadata(obj.get("metadata") or {}), "spec": obj.get("spec") or {},
            "status": obj.get("status") or {}}


def _slim_deployment(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return {"metadata": slim_metadata(obj.get("metadata") or {}),
            "spec": {"replicas": spec.get("replicas", 0)},
            "image": containers[0].get("image", ""),
            "status": obj.get("status") or {}}


def _slim_pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {"metadata": slim_metadata(obj.get("metadata") or {}),
            "spec": {"nodeName": spec.get("nodeName")},
            "status": {k: status[k] for k in ("phase", "podIP", "conditions", "containerStatuses", "reason")
                       if k in status}}


def _slim_revision(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": slim_metadata(obj.get("metadata") or {}), "revision": obj.get("revision"),
            "data": obj.get("data") or {}}


def _slim_event(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: obj.get(k) for k in ("type", "reason", "message", "count", "lastTimestamp", "eventTime",
                                    "firstTimestamp", "involvedObject", "source", "reportingComponent")} | {
        "metadata": {k: (obj.get("metadata") or {}).get(k) for k in ("name", "namespace", "creationTimestamp")}}


def _own_key(obj: Mapping[str, Any]) -> AppKey:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


@dataclass(frozen=True)
class Kind:
    name: str  # the RESOURCES key
    slim: Callable[[Mapping[str, Any]], dict[str, Any]]
    label_selector: str = ""  # empty: every object of the kind (the key function decides)


MANAGED = f"{labels.MANAGED_BY}={labels.MANAGER}"
APPRELEASES = Kind("AppRelease", _slim_object)
DEPLOYMENTS = Kind("Deployment", _slim_deployment, MANAGED)
PODS = Kind("Pod", _slim_pod, MANAGED)
REVISIONS = Kind("ControllerRevision", _slim_revision, MANAGED)
EVENTS = Kind("Event", _slim_event)  # only those about an app are kept
WATCHED_KINDS = len((APPRELEASES, DEPLOYMENTS, PODS, REVISIONS, EVENTS))  # one watch (and connection) each


class _Counted(WatchObserver):
    """The informers' requests, streams and events, in the console's own metrics."""

    def requested(self, kind: str, verb: str) -> None:
        WATCH_REQUESTS.labels(kind, verb).inc()

    def streaming(self, kind: str, open_: bool) -> None:
        if open_:
            WATCHES_OPEN.labels(kind).inc()
        else:
            WATCHES_OPEN.labels(kind).dec()

    def received(self, kind: str) -> None:
        WATCH_EVENTS.labels(kind).inc()


COUNTED = _Counted()


class Store:
    """One kind as the pages read it, on the event loop: the informer's objects by app, when
    it first listed (``synced``), and its last failure (shown on pages, None when fine)."""

    def __init__(self, kind: Kind, informer: Informer):
        self.kind = kind.name
        self.informer = informer
        self.synced = asyncio.Event()

    def get(self, key: AppKey) -> dict[str, Any] | None:
        """The object filed under its own key (AppReleases)."""
        found = self.informer.get(key)
        return found[0] if found else None

    def of_app(self, key: AppKey) -> list[dict[str, Any]]:
        return self.informer.get(key)

    def app_keys(self) -> list[AppKey]:
        return self.informer.keys()

    @property
    def error(self) -> str | None:
        return self.informer.last_error


class Watches:
    """Every store the console keeps. AppReleases from the start; the kinds only the app
    page needs (Deployments, Pods, ControllerRevisions and Events) on its first visit.
    Create it on the event loop that serves the pages."""

    def __init__(self, kube: Kube, namespace: str | None):
        self._kube = kube
        self._namespace = namespace
        self._loop = asyncio.get_running_loop()
        self._list_lock = threading.Lock()  # one decoded LIST page at a time, as the operator's
        self._listeners: list[Listener] = []
        self.apps = self._store(APPRELEASES, _own_key)
        self.deployments = self._store(DEPLOYMENTS, app_key_of)
        self.pods = self._store(PODS, app_key_of)
        self.revisions = self._store(REVISIONS, app_key_of)
        self.events = self._store(EVENTS, self._event_app)
        self._details_started = False

    def _store(self, kind: Kind, key: Callable[[Mapping[str, Any]], AppKey | None]) -> Store:
        def changed(app: AppKey) -> None:  # on the informer's thread
            self._on_loop(self._announce, kind.name, app)

        informer = Informer(
            self._kube, Source(kind.name, kind.slim, key=key, all_objects=not kind.label_selector),
            namespace=self._namespace, label_selector=kind.label_selector, on_change=changed,
            list_lock=self._list_lock, on_synced=lambda: self._on_loop(store.synced.set), observer=COUNTED)
        store = Store(kind, informer)  # (the callbacks above run once it has started)
        return store

    def _on_loop(self, function: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the console is stopping
            self._loop.call_soon_threadsafe(function, *args)

    def _event_app(self, event: Mapping[str, Any]) -> AppKey | None:
        """The app an Event is about: the AppRelease itself, or one of its Deployments/pods."""
        involved = event.get("involvedObject") or {}
        namespace, name, kind = involved.get("namespace", ""), involved.get("name", ""), involved.get("kind")
        if kind == "AppRelease":
            return (namespace, name)
        if kind == "ReplicaSet":
            kind, name = "Deployment", name.rsplit("-", 1)[0]
        store = {"Pod": self.pods, "Deployment": self.deployments}.get(kind or "")
        return store.informer.owner_of(namespace, name) if store is not None else None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _announce(self, kind: str, app: AppKey) -> None:
        for listener in list(self._listeners):
            listener(kind, app)

    def start(self) -> None:
        self.apps.informer.start()

    def start_details(self) -> None:
        if not self._details_started:
            self._details_started = True
            for store in self.detail_stores():
                store.informer.start()

    def detail_stores(self) -> Iterable[Store]:
        return (self.deployments, self.pods, self.revisions, self.events)

    async def wait_details(self, timeout: float) -> None:
        self.start_details()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for store in self.detail_stores():
                    await store.synced.wait()

    def stop(self) -> None:
        for store in (self.apps, *self.detail_stores()):
            store.informer.stop()

    def events_of(self, key: AppKey) -> list[dict[str, Any]]:
        events = self.events.of_app(key)
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or
                    (e.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
        return events[:EVENTS_PER_APP]
