"""A client-side watch of a few objects, for the CLI (`status`, `get -w`): LIST, then WATCH
from the list's resourceVersion, as kubectl does.

A stream the apiserver ends (its timeoutSeconds) resumes from the last version seen; an
expired version (410 Gone) lists again; a dropped connection is retried with back-off. The
watch ends by itself at ``until`` (the apiserver is asked to end the stream by then), so a
`--timeout` needs no polling. Nothing is read between events: the apiserver pushes them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError as TransportError

from .client import RESOURCES, ApiError, Kube

# The apiserver ends a watch after this long; we resume from the last version seen.
SERVER_TIMEOUT_SECONDS = 300
# A stream silent for this much longer than the server's timeout is dead.
READ_GRACE_SECONDS = 30
MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0


@dataclass(frozen=True)
class WatchEvent:
    """LISTED: every object that matches (on start and after an expired watch); ADDED,
    MODIFIED, DELETED: one object."""

    type: str
    objects: list[dict[str, Any]] = field(default_factory=list)


class _Expired(Exception):
    """The version we watch from is too old (410 Gone): list again."""


def watch(
    kube: Kube,
    kind: str,
    namespace: str | None,
    *,
    field_selector: str | None = None,
    label_selector: str | None = None,
    until: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[Exception], None] | None = None,
) -> Generator[WatchEvent, None, None]:
    """Events until ``until`` (a ``clock`` time; None: for ever). The first LIST's failure
    is raised (nothing to watch yet, e.g. an unreachable apiserver); later transport
    failures and 5xx answers are retried, reported through ``on_retry``."""
    path = RESOURCES[kind].path(namespace)
    selectors = {
        **({"fieldSelector": field_selector} if field_selector else {}),
        **({"labelSelector": label_selector} if label_selector else {}),
    }
    version: str | None = None
    listed_once = False
    backoff = MIN_BACKOFF_SECONDS
    while until is None or clock() < until:
        try:
            if version is None:
                page = kube.request("GET", path, query=selectors, resource=kind)
                version = str((page.get("metadata") or {}).get("resourceVersion") or "")
                listed_once = True
                yield WatchEvent("LISTED", list(page.get("items") or []))
            version = yield from _stream(kube, path, selectors, kind, version, until, clock)
            backoff = MIN_BACKOFF_SECONDS
        except _Expired:
            version = None
        except (TransportError, OSError, ApiError) as exc:
            if not listed_once or (isinstance(exc, ApiError) and exc.status < 500):
                raise
            if on_retry is not None:
                on_retry(exc)
            pause = backoff if until is None else min(backoff, max(0.0, until - clock()))
            sleep(pause)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)


def _stream(
    kube: Kube, path: str, selectors: dict[str, str], kind: str, version: str,
    until: float | None, clock: Callable[[], float],
) -> Generator[WatchEvent, None, str]:
    """One watch request: its events; returns the last version seen."""
    timeout = SERVER_TIMEOUT_SECONDS
    if until is not None:
        timeout = max(1, min(SERVER_TIMEOUT_SECONDS, math.ceil(until - clock())))
    query = {
        **selectors,
        "watch": "true",
        "resourceVersion": version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": timeout,
    }
    response = kube.open_stream(path, query=query, resource=kind, read_timeout=timeout + READ_GRACE_SECONDS)
    try:
        if response.status == 410:
            raise _Expired()
        for line in iter_resp_lines(response):
            if not line:
                continue
            event = orjson.loads(line)
            kind_of_event = event.get("type")
            obj = event.get("object") or {}
            if kind_of_event == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired()
                raise ApiError(int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", ""))
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind_of_event != "BOOKMARK":
                yield WatchEvent(str(kind_of_event), [obj])
            if until is not None and clock() >= until:
                break
    finally:
        # Closed rather than returned to the pool: a stream left half-read would hand the
        # next request on that connection the rest of the watch.
        with contextlib.suppress(Exception):
            response.close()
        with contextlib.suppress(Exception):
            response.release_conn()
    return version
