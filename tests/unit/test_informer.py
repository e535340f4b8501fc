"""The children's informer: paged LIST, WATCH resumed from bookmarks, relist on 410 Gone,
retries through outages. The apiserver side is a scripted fake of our JSON client (the
real thing is exercised by every e2e test)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apprelease.k8s import informer as informer_module
from apprelease.k8s.client import ApiError
from apprelease.k8s.informer import Informer, Source
from apprelease.k8s.observe import AppKey
from apprelease.render import labels

NS = "shop"


def child(name: str, app: str, version: int, *, ours: bool = True) -> dict[str, Any]:
    meta_labels = {labels.INSTANCE: app}
    if ours:
        meta_labels[labels.MANAGED_BY] = labels.MANAGER
    return {
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": meta_labels, "resourceVersion": str(version)},
    }


class FakeStream:
    def __init__(self, events: list[dict[str, Any]], *, status: int = 200, hang: bool = True):
        self.status = status
        self._lines = [json.dumps(e).encode() + b"\n" for e in events]
        self._hang = hang  # like a real watch: open until the server times it out
        self._closed = threading.Event()

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self._lines
        if self._hang:
            self._closed.wait(10)

    def shutdown(self) -> None:
        self._closed.set()

    def release_conn(self) -> None:
        pass


class FakeKube:
    """LIST answers from `lists` (a list of pages per call), WATCH from `streams`; an
    exception in either script is raised instead."""

    def __init__(self, lists: list[Any], streams: list[Any]):
        self.lists = lists
        self.streams = streams
        self.list_queries: list[dict[str, Any]] = []
        self.watch_queries: list[dict[str, Any]] = []

    def request(self, method: str, path: str, *, query: dict[str, Any], resource: str) -> Any:
        self.list_queries.append(dict(query))
        page = self.lists.pop(0) if self.lists else {"items": [], "metadata": {"resourceVersion": "1"}}
        if isinstance(page, Exception):
            raise page
        return page

    def open_stream(self, path: str, *, query: dict[str, Any], resource: str, read_timeout: float) -> Any:
        self.watch_queries.append(dict(query))
        stream = self.streams.pop(0) if self.streams else FakeStream([])
        if isinstance(stream, Exception):
            raise stream
        return stream


def page(items: list[dict[str, Any]], version: str, cont: str = "") -> dict[str, Any]:
    meta = {"resourceVersion": version} | ({"continue": cont} if cont else {})
    return {"items": items, "metadata": meta}


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def names(informer: Informer, key: AppKey) -> list[str]:
    try:
        return sorted(informer[key])
    except KeyError:
        return []


def start(kube: FakeKube, woken: list[AppKey]) -> Informer:
    informer = Informer(
        kube,  # type: ignore[arg-type]
        Source("ConfigMap", lambda obj: obj["metadata"]["name"]),
        namespace=NS,
        label_selector=f"{labels.MANAGED_BY}={labels.MANAGER}",
        on_change=woken.append,
    )
    informer.start()
    return informer


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "MIN_BACKOFF_SECONDS", 0.01)


def test_pages_are_listed_then_watch_events_update_and_wake() -> None:
    kube = FakeKube(
        lists=[
            page([child("a-1", "a", 5), child("stray", "x", 6, ours=False)], "10", cont="next"),
            page([child("b-1", "b", 7)], "11"),
        ],
        streams=[
            FakeStream([
                {"type": "ADDED", "object": child("a-2", "a", 12)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
                {"type": "DELETED", "object": child("b-1", "b", 21)},
            ], hang=False),  # the server ends this watch: resume from the bookmark's version
        ],
    )
    woken: list[AppKey] = []
    informer = start(kube, woken)
    try:
        until(lambda: len(kube.watch_queries) == 2)
        assert informer.synced.is_set()
        assert kube.list_queries[1]["continue"] == "next"
        assert [q["resourceVersion"] for q in kube.watch_queries] == ["11", "21"]
        assert names(informer, (NS, "a")) == ["a-1", "a-2"]
        assert names(informer, (NS, "b")) == []  # deleted, and its empty entry dropped
        assert names(informer, (NS, "x")) == []  # not managed by us: never kept
        assert woken == [(NS, "a"), (NS, "b")]  # the initial list wakes nobody
        assert informer.object_count() == 2
    finally:
        informer.stop()


def test_an_expired_watch_relists_and_wakes_only_what_changed() -> None:
    kube = FakeKube(
        lists=[
            page([child("a-1", "a", 5), child("b-1", "b", 6), child("c-1", "c", 7)], "10"),
            # meanwhile: a's unchanged, b's child gone, c got a second one, d is new
            page([child("a-1", "a", 5), child("c-1", "c", 7), child("c-2", "c", 30), child("d-1", "d", 31)], "40"),
        ],
        streams=[FakeStream([{"type": "ERROR", "object": {"code": 410, "message": "too old"}}], hang=False)],
    )
    woken: list[AppKey] = []
    informer = start(kube, woken)
    try:
        until(lambda: len(kube.watch_queries) == 2)
        assert kube.watch_queries[1]["resourceVersion"] == "40"
        assert sorted(woken) == [(NS, "b"), (NS, "c"), (NS, "d")]
        assert names(informer, (NS, "c")) == ["c-1", "c-2"]
        assert names(informer, (NS, "b")) == []
    finally:
        informer.stop()


def test_outages_are_retried_and_the_cache_is_kept() -> None:
    down = ApiError(503, "ServiceUnavailable", "apiserver is shutting down")
    kube = FakeKube(
        lists=[down, page([child("a-1", "a", 5)], "10")],
        streams=[down, ConnectionResetError("reset by peer"),
                 FakeStream([{"type": "MODIFIED", "object": child("a-1", "a", 50)}])],
    )
    woken: list[AppKey] = []
    informer = start(kube, woken)
    try:
        until(lambda: woken == [(NS, "a")])
        assert len(kube.list_queries) == 2  # the failed list and its retry; watch errors do not relist
        assert [q["resourceVersion"] for q in kube.watch_queries] == ["10", "10", "10"]
        assert names(informer, (NS, "a")) == ["a-1"]
    finally:
        informer.stop()


def test_stop_ends_a_hanging_watch() -> None:
    kube = FakeKube(lists=[page([], "1")], streams=[FakeStream([])])
    informer = start(kube, [])
    until(lambda: len(kube.watch_queries) == 1)
    informer.stop()
    informer._thread.join(timeout=5)
    assert not informer._thread.is_alive()


def test_an_object_it_cannot_read_is_skipped_not_retried_forever() -> None:
    def keep(obj: dict[str, Any]) -> str:
        if obj["metadata"]["name"].startswith("bad"):
            raise ValueError("unexpected shape")
        return str(obj["metadata"]["name"])

    kube = FakeKube(
        lists=[page([child("bad-1", "a", 5), child("a-1", "a", 6)], "10")],
        streams=[FakeStream([
            {"type": "ADDED", "object": child("bad-2", "a", 11)},
            {"type": "ADDED", "object": child("a-2", "a", 12)},
        ])],
    )
    woken: list[AppKey] = []
    informer = Informer(
        kube,  # type: ignore[arg-type]
        Source("ConfigMap", keep),
        namespace=NS,
        label_selector="",
        on_change=woken.append,
    )
    informer.start()
    try:
        until(lambda: len(woken) == 2)
        assert names(informer, (NS, "a")) == ["a-1", "a-2"]
        assert len(kube.watch_queries) == 1  # the watch went on past the bad event
    finally:
        informer.stop()


def test_watch_events_are_handed_on_once_the_cache_has_them() -> None:
    """What a watch event says (the IndexCache drops our write once the watch has it); not an
    object it could not read, which the cache does not have."""
    kube = FakeKube(
        lists=[page([child("a-1", "a", 5)], "10")],
        streams=[FakeStream([
            {"type": "ADDED", "object": child("bad-1", "a", 11)},
            {"type": "ADDED", "object": child("a-2", "a", 12)},
            {"type": "DELETED", "object": child("a-1", "a", 13)},
        ])],
    )
    handed: list[tuple[str, str, list[str]]] = []

    def keep(obj: dict[str, Any]) -> str:
        if obj["metadata"]["name"].startswith("bad"):
            raise ValueError("unreadable")
        return str(obj["metadata"]["name"])

    informer = Informer(
        kube,  # type: ignore[arg-type]
        Source("ConfigMap", keep),
        namespace=NS,
        label_selector="",
        on_change=lambda key: None,
        on_event=lambda event_type, obj: handed.append(
            (event_type, obj["metadata"]["name"], names(informer, (NS, "a")))),
    )
    informer.start()
    try:
        until(lambda: len(handed) == 2)
        assert handed == [("ADDED", "a-2", ["a-1", "a-2"]), ("DELETED", "a-1", ["a-2"])]  # not the listed a-1
    finally:
        informer.stop()


def test_an_object_moves_with_its_label_and_a_deletion_needs_no_label() -> None:
    """An object's app is what its labels say now: a relabelled one leaves its old app (both
    are woken), and a deletion takes it from the app it was filed under even when the
    deleted object no longer names one (the console's Events of a pod that is gone)."""
    moved = child("one", "b", 12)
    unlabelled = child("two", "a", 13)
    unlabelled["metadata"]["labels"] = {}
    kube = FakeKube(
        lists=[page([child("one", "a", 5), child("two", "a", 6)], "10")],
        streams=[FakeStream([{"type": "MODIFIED", "object": moved},
                             {"type": "DELETED", "object": unlabelled}])],
    )
    woken: list[AppKey] = []
    informer = start(kube, woken)
    try:
        until(lambda: len(woken) == 3)
        assert sorted(woken[:2]) == [(NS, "a"), (NS, "b")] and woken[2] == (NS, "a")
        assert names(informer, (NS, "a")) == []
        assert names(informer, (NS, "b")) == ["one"]
        assert informer.owner_of(NS, "one") == (NS, "b") and informer.owner_of(NS, "two") is None
        assert informer.keys() == [(NS, "b")] and informer.get((NS, "a")) == []
    finally:
        informer.stop()


def test_it_reports_lists_watches_events_and_when_it_has_listed() -> None:
    class Counting(informer_module.WatchObserver):
        def __init__(self) -> None:
            self.seen: list[tuple[str, ...]] = []

        def requested(self, kind: str, verb: str) -> None:
            self.seen.append(("requested", kind, verb))

        def streaming(self, kind: str, open_: bool) -> None:
            self.seen.append(("streaming", kind, str(open_)))

        def received(self, kind: str) -> None:
            self.seen.append(("received", kind))

    observer = Counting()
    listed = threading.Event()
    kube = FakeKube(lists=[page([child("a-1", "a", 5)], "10")],
                    streams=[FakeStream([{"type": "ADDED", "object": child("a-2", "a", 11)},
                                         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}],
                                        hang=False)])
    informer = Informer(kube, Source("ConfigMap", lambda obj: obj["metadata"]["name"]),  # type: ignore[arg-type]
                        namespace=NS, label_selector="", on_change=lambda key: None, on_synced=listed.set,
                        observer=observer)
    informer.start()
    try:
        assert listed.wait(5)
        until(lambda: ("streaming", "ConfigMap", "False") in observer.seen)
        assert observer.seen[:5] == [("requested", "ConfigMap", "list"), ("requested", "ConfigMap", "watch"),
                                     ("streaming", "ConfigMap", "True"), ("received", "ConfigMap"),
                                     ("streaming", "ConfigMap", "False")]
    finally:
        informer.stop()
