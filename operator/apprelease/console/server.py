"""The console's web server (aiohttp): security middleware, routes, start-up.

Pages are Jinja2 templates with auto-escaping; live updates are server-sent events fed from
the shared watches (watch.py); htmx swaps what the server renders. Every request is tied to
an identity (access.py) before a handler runs; every POST must carry the session's CSRF
token; the response headers forbid framing and any script or style not served from here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..k8s.client import OWN, Apiserver, AsyncKube, context_namespace, load_configuration
from . import app_page, csrf, deploy, operations, overview, pipelines, pod_logs
from .access import NotAuthenticated, identity_from_headers
from .context import (
    API_THREADS,
    CONSOLE_KEY,
    IDENTITY,
    PACKAGE_DIR,
    SESSION,
    Console,
    Settings,
    console_of,
    identity_of,
    request_host,
)
from .metrics import REGISTRY
from .watch import WATCHED_KINDS

log = logging.getLogger("apprelease.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host, identity, session cookie and CSRF check before any handler; security headers after."""
    settings = console_of(request).settings
    if not settings.accepts_host(request.headers.get("Host")):
        log.warning("refused %s %s for Host %r: not a loopback name", request.method, request.path,
                    request.headers.get("Host"))
        return web.Response(status=403, text="this console answers only to localhost, 127.0.0.1 and [::1] "
                                             "(another name may be a website pointing its own name here); "
                                             "--accept-host NAME adds one")
    if request.path.startswith("/static/") or request.path in ("/healthz", "/metrics", "/favicon.ico"):
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
    console = console_of(request)
    try:
        request[IDENTITY] = identity_from_headers(console.settings.auth, request.headers,
                                                  console.settings.proxy_headers)
    except NotAuthenticated as exc:
        return web.Response(status=401, text=str(exc))
    session = request.cookies.get(csrf.SESSION_COOKIE)
    new_session = session is None
    request[SESSION] = session or csrf.new_session()
    if request.method not in ("GET", "HEAD"):
        problem = csrf.check(console.settings.secret, session, identity_of(request).key, request.headers,
                             request_host(request))
        if problem:
            log.warning("refused %s %s: %s", request.method, request.path, problem)
            return web.Response(status=403, text=problem)
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if new_session and not response.prepared:
        response.set_cookie(csrf.SESSION_COOKIE, request[SESSION], httponly=True, samesite="Strict",
                            secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
                            path="/")
    return response


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    synced = console_of(request).watches.apps.synced.is_set()
    return web.Response(status=200 if synced else 503, text="ok" if synced else "syncing")


async def _scoped(settings: Settings, client: AsyncKube) -> Settings:
    """Locally, a user who may not list AppReleases in every namespace gets the context's."""
    if settings.namespace or settings.behind_proxy:
        return settings
    if await client.can("list", "appreleases", "", "apprelease.io"):
        return settings
    namespace = context_namespace(settings.kubeconfig, settings.context)
    log.warning("you may not list AppReleases in every namespace: showing namespace %s (-n to choose)",
                namespace)
    return dataclasses.replace(settings, namespace=namespace)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[security], client_max_size=4 * 1024 * 1024)

    async def lifecycle(app: web.Application) -> Any:
        configuration = load_configuration(settings.kubeconfig, settings.context)
        apiserver = Apiserver(configuration, pool_size=API_THREADS)
        watching = Apiserver(configuration, pool_size=WATCHED_KINDS)
        executor = ThreadPoolExecutor(API_THREADS, thread_name_prefix="console-api")
        try:
            scoped = await _scoped(settings, AsyncKube(apiserver.as_(OWN), executor))
            console = Console(scoped, apiserver, executor, watching.as_(OWN))
            app[CONSOLE_KEY] = console
            console.watches.start()
            yield
            console.watches.stop()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            apiserver.close()
            watching.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_static("/static/", PACKAGE_DIR / "static", append_version=True, name="static")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/favicon.ico", favicon)
    overview.add_routes(app.router)
    app_page.add_routes(app.router)
    pod_logs.add_routes(app.router)
    operations.add_routes(app.router)
    deploy.add_routes(app.router)
    pipelines.add_routes(app.router)
    return app


async def serve(settings: Settings, on_ready: Callable[[str], None]) -> None:
    """Run until cancelled; ``on_ready`` gets the URL once the port is bound."""
    runner = web.AppRunner(create_app(settings), access_log=logging.getLogger("apprelease.console.access"))
    await runner.setup()
    site = web.TCPSite(runner, settings.address, settings.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    host = settings.address if ":" not in settings.address else f"[{settings.address}]"
    on_ready(f"http://{host}:{port}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
