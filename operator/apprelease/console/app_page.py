"""One app's page: status, steps, weights and tracks, the analysis runs' metrics, the
revisions → Deployments → pods tree, the registry's instance table, Events, history with a
diff of any two revisions, and the actions the user may take. Sections are redrawn from the
watch caches as they change.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from .. import actions
from ..k8s.client import ApiError
from ..rollout import diff
from . import analysis, views
from .access import APPRELEASES
from .context import Console, Feed, console_of, identity_of, page_context
from .metrics import STREAMS_OPEN, UPDATES_SENT
from .watch import AppKey

COALESCE_SECONDS = 0.1
SECTIONS = ("header", "actions", "rollout", "analysis", "tree", "registry", "events", "history", "details")


@dataclass(frozen=True)
class Permissions:
    may_see: bool
    may_patch: bool
    reads: dict[str, bool]


async def permissions(console: Console, request: web.Request, namespace: str) -> Permissions:
    identity = identity_of(request)
    may_see, may_patch, reads = await asyncio.gather(
        console.access.can(identity, "get", APPRELEASES, namespace),
        console.access.can(identity, "patch", APPRELEASES, namespace),
        console.access.detail_reads(identity, namespace),
    )
    return Permissions(may_see, may_patch and not console.settings.read_only, reads)


def _key(request: web.Request) -> AppKey:
    return request.match_info["namespace"], request.match_info["name"]


def sections(console: Console, key: AppKey, allowed: Permissions) -> dict[str, str]:
    """Each section's HTML, from the caches (an app that is gone renders as such)."""
    watches = console.watches
    app = watches.apps.get(key)
    if app is None:
        return {"header": console.render("_gone.html", namespace=key[0], name=key[1])} | {
            s: "" for s in SECTIONS if s != "header"}
    spec, status = app.get("spec") or {}, app.get("status") or {}
    now = views.utcnow()
    records = []
    if allowed.reads["revisions"]:
        try:
            records = actions.history_of(watches.revisions.of_app(key))
        except (KeyError, ValueError):  # a revision written by a newer operator: show the rest
            records = []
    context: dict[str, Any] = {
        "app": app, "key": key, "spec": spec, "status": status, "now": now,
        "row": views.overview_row(app, now),
        "buttons": views.buttons(app, allowed.may_patch),
        "reads": allowed.reads,
        "steps": views.steps(spec, status),
        "aborted": views.aborted(status),
        "weights": views.weights(status),
        "tracks": views.tracks(status),
        "analysis": analysis.runs(status),
        "conditions": views.conditions(status.get("conditions") or []),
        "tree": views.tree(watches.deployments.of_app(key) if allowed.reads["deployments"] else [],
                           watches.pods.of_app(key) if allowed.reads["pods"] else [],
                           views.offline_pods(app)),
        "registration": views.registration(status),
        "nacos_config": views.nacos_config(status, records,
                                           watches.pods.of_app(key) if allowed.reads["pods"] else []),
        "offline": views.offline_pods(app),
        "events": views.events(watches.events_of(key), now) if allowed.reads["events"] else [],
        "history": views.history(records, status),
        "details": views.details(status),
        "errors": {s.kind: s.error for s in (watches.apps, *watches.detail_stores()) if s.error},
    }
    return {name: console.render(f"_section_{name}.html", **context) for name in SECTIONS}


async def app_page(request: web.Request) -> web.Response:
    console = console_of(request)
    key = _key(request)
    allowed = await permissions(console, request, key[0])
    if not allowed.may_see:
        raise web.HTTPForbidden(text=f"you may not read AppReleases in namespace {key[0]}")
    await console.details_ready()
    html = console.render("app.html", **await page_context(request), key=key, namespace=key[0], name=key[1],
                          sections=sections(console, key, allowed), since=console.changes.number)
    return web.Response(text=html, content_type="text/html")


async def app_events(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    key = _key(request)
    allowed = await permissions(console, request, key[0])
    if not allowed.may_see:
        raise web.HTTPForbidden(text=f"you may not read AppReleases in namespace {key[0]}")
    feed = Feed(lambda kind, app: app == key)
    console.changes.attach(feed)
    STREAMS_OPEN.labels("app").inc()
    try:
        since = int(request.query.get("since", "0") or 0)
        missed = console.changes.since(since)
        # What the page shows: as of now if nothing changed since it was drawn, else unknown.
        sent = sections(console, key, allowed) if missed == [] else {}
        if not sent:
            feed.offer("AppRelease", key)
        async with sse_response(request) as response:
            while response.is_connected():
                if feed.dirty:
                    await asyncio.sleep(COALESCE_SECONDS)
                    feed.take()
                    fresh = sections(console, key, allowed)
                    changed = {name: html for name, html in fresh.items() if sent.get(name) != html}
                    if changed:
                        message = "".join(console.render("_oob_section.html", name=name, html=html)
                                          for name, html in changed.items())
                        await response.send(message, event="update")
                        UPDATES_SENT.labels("app").inc()
                    sent = fresh
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await feed.wake.wait()
                allowed = await permissions(console, request, key[0])  # cached; RBAC may change
        return response
    except ConnectionResetError:  # the page went away mid-message
        raise web.HTTPNoContent() from None
    finally:
        console.changes.detach(feed)
        STREAMS_OPEN.labels("app").dec()


async def revision_diff(request: web.Request) -> web.Response:
    console = console_of(request)
    key = _key(request)
    allowed = await permissions(console, request, key[0])
    if not (allowed.may_see and allowed.reads["revisions"]):
        raise web.HTTPForbidden(text=f"you may not read ControllerRevisions in namespace {key[0]}")
    try:
        left, right = int(request.query["a"]), int(request.query["b"])
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(text="choose two revisions") from None
    try:
        records = {r.number: r for r in actions.history_of(console.watches.revisions.of_app(key))}
    except ApiError as exc:
        raise web.HTTPBadGateway(text=exc.message) from None
    if left not in records or right not in records:
        return web.Response(text=console.render("_message.html", ok=False,
                                                text=f"revision {left if left not in records else right} "
                                                     "is not in the history"), content_type="text/html")
    result = diff.diff(left, records[left].template.to_wire(), right, records[right].template.to_wire())
    return web.Response(text=console.render("_diff.html", diff=result), content_type="text/html")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/apps/{namespace}/{name}", app_page)
    router.add_get("/events/apps/{namespace}/{name}", app_events)
    router.add_get("/apps/{namespace}/{name}/diff", revision_diff)
