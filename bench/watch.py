"""Background watches that timestamp every event on arrival (time.monotonic()).

Latencies are differences between two such timestamps, or between one and the moment the
bench sent a request: both sides see the apiserver through the same kind of stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apprelease.k8s.client import ApiError
from bench.api import Api

log = logging.getLogger("bench.watch")
RETRY_SECONDS = 0.5
GONE = 410


@dataclass(frozen=True)
class WatchEvent:
    at: float  # time.monotonic() when the event reached the bench
    type: str  # ADDED / MODIFIED / DELETED (LISTED for the initial list)
    obj: dict[str, Any]


Handler = Callable[[WatchEvent], None]


class Watcher:
    """LIST, then WATCH from its resourceVersion, forever (until stop); relist on 410."""

    def __init__(
        self, api: Api, kind: str, namespace: str | None, handler: Handler, **query: Any
    ):
        self._api = api
        self._kind = kind
        self._namespace = namespace
        self._handler = handler
        self._query = query
        self._stopping = threading.Event()
        self._listed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self, timeout: float = 60.0) -> Watcher:
        self._thread.start()
        if not self._listed.wait(timeout):
            raise TimeoutError(f"initial list of {self._kind} took longer than {timeout:g} s")
        return self

    def stop(self) -> None:
        self._stopping.set()  # the thread is a daemon: an open stream does not block exit

    def _run(self) -> None:
        resource_version = self._relist()
        while not self._stopping.is_set():
            try:
                for raw in self._api.watch(
                    self._kind, self._namespace, resource_version, **self._query
                ):
                    if self._stopping.is_set():
                        return
                    kind = raw.get("type", "")
                    obj = raw.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == GONE:
                            resource_version = self._relist()
                        break
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if kind != "BOOKMARK":
                        self._handler(WatchEvent(time.monotonic(), kind, obj))
            except ApiError as exc:
                if exc.status == GONE:
                    resource_version = self._relist()
                else:
                    log.warning("watch %s: %s", self._kind, exc)
                    time.sleep(RETRY_SECONDS)
            except Exception as exc:  # connection reset, read timeout: resume from the rv
                if self._stopping.is_set():
                    return
                log.debug("watch %s interrupted: %s", self._kind, exc)
                time.sleep(RETRY_SECONDS)

    def _relist(self) -> str:
        while True:
            try:
                listed = self._api.list(self._kind, self._namespace, **self._query)
                break
            except Exception as exc:
                log.warning("list %s: %s", self._kind, exc)
                time.sleep(RETRY_SECONDS)
        now = time.monotonic()
        for item in listed.get("items", []):
            self._handler(WatchEvent(now, "LISTED", item))
        self._listed.set()
        return str(listed["metadata"]["resourceVersion"])
