"""A small stand-in for the apiserver, served over real HTTP on loopback, for the console's
integration tests: the console's server runs for real (its middleware, sessions, handlers,
client and watches); only the cluster behind it is scripted. The real apiserver is in
tests/browser.

It answers what the console asks: LIST and WATCH of the kinds it caches (the watch stays open
until the server stops), SelfSubjectAccessReviews (allowed unless a test says otherwise),
SelfSubjectReviews, and PATCH / POST of AppReleases, which it records.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

T = TypeVar("T")
USER = "alice@example.com"


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]  # as sent, repeated headers repeated
    body: Any

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@dataclass
class FakeApiserver:
    """Objects by resource path (``/apis/apprelease.io/v1alpha1/appreleases``); every request
    that is not a read is recorded in ``writes``."""

    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    writes: list[Recorded] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)  # every one, reads included
    allowed: bool = True
    port: int = 0
    _stop: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        raw = await request.read()
        body = json.loads(raw) if raw else None
        recorded = Recorded(request.method, path, list(request.headers.items()), body)
        self.requests.append(recorded)
        if request.method == "POST" and path.endswith("/selfsubjectaccessreviews"):
            return web.json_response({**body, "status": {"allowed": self.allowed}})
        if request.method == "POST" and path.endswith("/selfsubjectreviews"):
            return web.json_response({"status": {"userInfo": {"username": USER}}})
        if request.method != "GET":
            self.writes.append(recorded)
            return web.json_response(body or {})
        collection = path.rsplit("/namespaces/", 1)[0] if "/namespaces/" in path else path
        if "/namespaces/" in path:  # a namespaced list: /apis/g/v/namespaces/ns/plural
            prefix, _, rest = path.partition("/namespaces/")
            namespace, _, plural = rest.partition("/")
            collection = f"{prefix}/{plural}"
            items = [o for o in self.objects.get(collection, []) if o["metadata"].get("namespace") == namespace]
        else:
            items = list(self.objects.get(collection, []))
        if request.query.get("watch") == "true":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            assert self._stop is not None
            await self._stop.wait()  # an open watch, as the real one until its timeout
            return response
        return web.json_response({"items": items, "metadata": {"resourceVersion": "1"}})


class Served:
    """The fake apiserver (and whatever else a test starts) on a loop in a thread of its own."""

    def __init__(self, apiserver: FakeApiserver):
        self.apiserver = apiserver
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-apiserver", daemon=True)
        self._runner: web.AppRunner | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.apiserver._stop = asyncio.Event()
        self._runner = web.AppRunner(self.apiserver.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.apiserver.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        async def stop() -> None:
            assert self.apiserver._stop is not None and self._runner is not None
            self.apiserver._stop.set()
            await self._runner.cleanup()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig naming the fake apiserver, with a bearer token."""
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.apiserver.port}"}}],
            "users": [{"name": "alice", "user": {"token": "alice-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "alice", "namespace": "shop"}}],
        }))
        return path


@contextmanager
def serving(apiserver: FakeApiserver) -> Iterator[Served]:
    served = Served(apiserver)
    served.start()
    try:
        yield served
    finally:
        served.stop()
