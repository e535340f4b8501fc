"""Action requests from the app page's buttons: the same patches as the CLI, sent as the user.

The console does not decide who may act: the apiserver does, for the user's own identity,
and its answer (403 included) is what the page shows. The middleware has already checked
the CSRF token; read-only mode refuses before anything is sent.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .. import actions
from ..k8s.client import ApiError
from .context import console_of, identity_of
from .metrics import ACTIONS

log = logging.getLogger("apprelease.console.actions")


def _result(request: web.Request, ok: bool, text: str, status: int = 200) -> web.Response:
    html = console_of(request).render("_message.html", ok=ok, text=text)
    return web.Response(text=html, content_type="text/html", status=status)


async def _perform(request: web.Request, action: actions.Action, label: str) -> web.Response:
    console = console_of(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    identity = identity_of(request)
    user = await console.access.user_name(identity)
    if console.settings.read_only:
        ACTIONS.labels(label, "read-only").inc()
        return _result(request, False, "this console is read-only", status=403)
    try:
        message = await console.client(identity).call(actions.perform, namespace, name, action)
    except actions.ActionError as exc:
        ACTIONS.labels(label, "invalid").inc()
        return _result(request, False, f"{name}: {exc}", status=409)
    except ApiError as exc:
        ACTIONS.labels(label, str(exc.status)).inc()
        log.info("user %s: %s %s/%s refused: %s %s", user, label, namespace, name, exc.status, exc.reason)
        return _result(request, False, exc.message or str(exc), status=exc.status if exc.status >= 400 else 502)
    ACTIONS.labels(label, "ok").inc()
    log.info("user %s: %s %s/%s: %s", user, label, namespace, name, message)
    return _result(request, True, message)


async def simple_action(request: web.Request) -> web.Response:
    verb = request.match_info["action"]
    make = actions.ACTIONS.get(verb)
    if make is None:
        raise web.HTTPNotFound(text=f"no action {verb!r}")
    return await _perform(request, make(), verb)


async def rollback(request: web.Request) -> web.Response:
    form = await request.post()
    revision = str(form.get("revision", "")).strip()
    if revision and not revision.isdigit():
        return _result(request, False, f"{revision!r} is not a revision number", status=400)
    return await _perform(request, actions.Rollback(to_revision=int(revision) if revision else None), "rollback")


async def offline(request: web.Request) -> web.Response:
    form = await request.post()
    pod = str(form.get("pod", "")).strip()
    if not pod:
        return _result(request, False, "which pod?", status=400)
    take_offline = form.get("offline", "true") == "true"
    return await _perform(request, actions.SetOffline((pod,), take_offline), "offline" if take_offline else "online")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/apps/{namespace}/{name}/rollback", rollback)
    router.add_post("/apps/{namespace}/{name}/offline", offline)
    router.add_post("/apps/{namespace}/{name}/actions/{action}", simple_action)
