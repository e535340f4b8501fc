"""The overview: every AppRelease the user may see, live.

The page is a skeleton; its table is filled by the first message of its event stream and
kept current by the next ones (rows replaced, added or removed out of band, counts redrawn),
so there is one code path and no gap between what the page shows and what the stream sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from . import views
from .access import APPRELEASES
from .context import Console, Feed, console_of, identity_of, page_context
from .metrics import STREAMS_OPEN, UPDATES_SENT
from .watch import AppKey

log = logging.getLogger("apprelease.console.overview")
COALESCE_SECONDS = 0.05  # a burst of changes goes out as one message
ROW_CACHE_LIMIT = 20_000
RENDER_BATCH = 100  # rows rendered between two chances for the event loop to do other work


def _filters(request: web.Request) -> tuple[str, str]:
    return request.query.get("ns", "").strip(), request.query.get("q", "").strip()


async def overview_page(request: web.Request) -> web.Response:
    console = console_of(request)
    namespace, search = _filters(request)
    identity = identity_of(request)
    may_create = not console.settings.read_only and await console.access.can(
        identity, "create", APPRELEASES, namespace)
    namespaces = sorted({ns for ns, _ in console.watches.apps.app_keys()})
    visible = sorted(await console.access.visible_namespaces(identity, namespaces))
    html = console.render("overview.html", **await page_context(request), namespace=namespace, search=search,
                          namespaces=visible, may_create=may_create, watch_error=console.watches.apps.error)
    return web.Response(text=html, content_type="text/html")


def _row_html(console: Console, app: dict[str, Any], now: Any, *, oob: bool = False) -> str:
    """A row, rendered once per version (and age) for every page that shows it."""
    row = views.overview_row(app, now)
    key = ((row.namespace, row.name), f"{app['metadata'].get('resourceVersion', '')}:{int(oob)}", row.age)
    html = console.row_cache.get(key)
    if html is None:
        if len(console.row_cache) > ROW_CACHE_LIMIT:
            console.row_cache.clear()
        html = console.render("_row.html", row=row, oob=oob)
        console.row_cache[key] = html
    return html


class OverviewStream:
    """What one open overview shows, and the messages that keep it so."""

    def __init__(self, console: Console, request: web.Request):
        self.console = console
        self.identity = identity_of(request)
        self.namespace, self.search = _filters(request)
        self.shown: set[AppKey] = set()

    async def _visible(self, keys: Iterable[AppKey]) -> dict[AppKey, dict[str, Any]]:
        """The apps among ``keys`` this page shows (filters, and what the user may see)."""
        apps = self.console.watches.apps
        candidates = {k: app for k in keys if (app := apps.get(k)) is not None
                      and views.matches(app, self.namespace, self.search)}
        allowed = await self.console.access.visible_namespaces(self.identity, {ns for ns, _ in candidates})
        return {k: app for k, app in candidates.items() if k[0] in allowed}

    async def initial(self) -> str:
        await self.console.watches.apps.synced.wait()
        visible = await self._visible(self.console.watches.apps.app_keys())
        now = views.utcnow()
        ordered = sorted(visible)
        self.shown = set(ordered)
        parts = []
        for index, key in enumerate(ordered):
            if index and index % RENDER_BATCH == 0:
                await asyncio.sleep(0)  # let other pages' updates go out meanwhile
            parts.append(_row_html(self.console, visible[key], now))
        rows = "".join(parts)
        if not ordered:
            rows = self.console.render("_empty_row.html", filtered=bool(self.namespace or self.search))
        return rows

    def counts_html(self) -> str:
        apps = [self.console.watches.apps.get(k) for k in self.shown]
        phases = ((app.get("status") or {}).get("phase") or "Unknown" for app in apps if app is not None)
        return self.console.render("_counts.html", counts=views.count_phases(phases), oob=True)

    async def update(self, keys: set[AppKey]) -> str:
        visible = await self._visible(keys)
        now = views.utcnow()
        parts = []
        for key in sorted(keys):
            row_id = views.row_id(*key)
            if key in visible:
                replace = key in self.shown
                html = _row_html(self.console, visible[key], now, oob=replace)
                where = "true" if replace else "beforeend:#rows"
                parts.append(self.console.render("_oob_row.html", html=html, where=where))
                self.shown.add(key)
            elif key in self.shown:
                parts.append(self.console.render("_oob_delete.html", row_id=row_id))
                self.shown.discard(key)
        if not parts:
            return ""
        return "".join(parts) + self.counts_html()


async def overview_events(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    stream = OverviewStream(console, request)
    feed = Feed(lambda kind, app: kind == "AppRelease")
    console.changes.attach(feed)  # before the snapshot: nothing can fall between the two
    STREAMS_OPEN.labels("overview").inc()
    try:
        async with sse_response(request) as response:
            began = time.perf_counter()
            rows = await stream.initial()
            log.info("overview: %d rows rendered in %.0f ms", len(stream.shown), (time.perf_counter() - began) * 1000)
            await response.send(rows, event="rows")
            await response.send(stream.counts_html(), event="update")
            UPDATES_SENT.labels("overview").inc()
            while response.is_connected():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await feed.wake.wait()
                if not feed.dirty:
                    continue
                await asyncio.sleep(COALESCE_SECONDS)
                message = await stream.update(feed.take())
                if message:
                    await response.send(message, event="update")
                    UPDATES_SENT.labels("overview").inc()
        return response
    except ConnectionResetError:  # the page went away mid-message
        raise web.HTTPNoContent() from None
    finally:
        console.changes.detach(feed)
        STREAMS_OPEN.labels("overview").dec()


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", overview_page)
    router.add_get("/events/overview", overview_events)
