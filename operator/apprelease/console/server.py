"""The console's web server (aiohttp): settings, shared state, security middleware, start-up.

Pages are Jinja2 templates with auto-escaping; live updates are server-sent events fed from
the shared watches (watch.py); htmx swaps what the server renders. Every request is tied to
an identity (access.py) before a handler runs; every POST must carry the session's CSRF
token; the response headers forbid framing and any script or style not served from here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import csrf
from .access import Access, AuthMode, NotAuthenticated, ProxyHeaders, identity_from_headers
from .kube import CONSOLE, Apiserver, Identity, context_namespace, load_configuration
from .metrics import REGISTRY
from .watch import AppKey, Watches

log = logging.getLogger("apprelease.console")

PACKAGE_DIR = Path(__file__).resolve().parent
CHANGE_LOG_LENGTH = 50_000
DETAILS_SYNC_TIMEOUT_SECONDS = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The names a browser uses for this machine's loopback, as `kubectl proxy` accepts them.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1"
    port: int = 7070
    read_only: bool = False
    auth: AuthMode = "kubeconfig"
    namespace: str | None = None  # watch only this namespace (else every namespace)
    kubeconfig: str | None = None
    context: str | None = None
    proxy_headers: ProxyHeaders = field(default_factory=ProxyHeaders)
    accept_hosts: tuple[str, ...] = ()  # more Host names to answer locally (--accept-host)
    secret: bytes = field(default_factory=csrf.new_secret, repr=False)

    @property
    def behind_proxy(self) -> bool:
        """In the cluster, an authenticating proxy (or the user's own client) names the user
        and the site; locally nothing stands between the browser and the console."""
        return self.auth != "kubeconfig"

    def accepts_host(self, host: str | None) -> bool:
        """Locally, only loopback names: a page on another site that points its own name at
        127.0.0.1 (DNS rebinding) sends that name, and is refused before anything else."""
        if self.behind_proxy:
            return True
        name = host_name(host or "")
        return bool(name) and (name in LOOPBACK_NAMES or name in {h.lower() for h in self.accept_hosts})


def host_name(host: str) -> str:
    """The name part of a Host header value (``[::1]:7070`` → ``[::1]``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else ""
    return host.partition(":")[0]


class Changes:
    """A numbered log of which apps changed, so a page rendered at number N can catch up."""

    def __init__(self) -> None:
        self.number = 0
        self._log: deque[tuple[int, str, AppKey]] = deque(maxlen=CHANGE_LOG_LENGTH)
        self._feeds: set[Feed] = set()

    def record(self, kind: str, app: AppKey) -> None:
        self.number += 1
        self._log.append((self.number, kind, app))
        for feed in list(self._feeds):
            feed.offer(kind, app)

    def since(self, number: int) -> list[tuple[str, AppKey]] | None:
        """Changes after ``number``, or None if the log no longer reaches that far back."""
        if self._log and self._log[0][0] > number + 1:
            return None
        return [(kind, app) for n, kind, app in self._log if n > number]

    def attach(self, feed: Feed) -> None:
        self._feeds.add(feed)

    def detach(self, feed: Feed) -> None:
        self._feeds.discard(feed)


class Feed:
    """One live page's interest: the apps (of some kinds) that changed since it last sent."""

    def __init__(self, wants: Callable[[str, AppKey], bool]):
        self._wants = wants
        self.dirty: set[AppKey] = set()
        self.wake = asyncio.Event()

    def offer(self, kind: str, app: AppKey) -> None:
        if self._wants(kind, app):
            self.dirty.add(app)
            self.wake.set()

    def take(self) -> set[AppKey]:
        taken, self.dirty = self.dirty, set()
        self.wake.clear()
        return taken


class Console:
    """Everything the handlers share (one per process)."""

    def __init__(self, settings: Settings, apiserver: Apiserver):
        self.settings = settings
        self.apiserver = apiserver
        self.access = Access(apiserver)
        self.watches = Watches(apiserver.as_(CONSOLE), settings.namespace)
        self.changes = Changes()
        self.watches.subscribe(self.changes.record)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
            autoescape=True,  # every value is escaped unless a template says otherwise
            undefined=jinja2.ChainableUndefined,  # status fields are optional: absent renders empty
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.row_cache: dict[tuple[AppKey, str, str], str] = {}

    def render(self, template: str, **context: Any) -> str:
        return self.templates.get_template(template).render(**context)

    async def details_ready(self) -> None:
        await self.watches.wait_details(DETAILS_SYNC_TIMEOUT_SECONDS)


CONSOLE_KEY = web.AppKey("console", Console)
IDENTITY = "apprelease.identity"
SESSION = "apprelease.session"


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def identity_of(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY]
    return identity


def request_host(request: web.Request) -> str:
    """The site the browser addressed: behind a proxy the one the proxy names, locally the
    Host itself (X-Forwarded-Host is just another header a page may set)."""
    if console_of(request).settings.behind_proxy:
        return request.headers.get("X-Forwarded-Host") or request.host
    return request.host


def csrf_token(request: web.Request) -> str:
    return csrf.token_for(console_of(request).settings.secret, request[SESSION], identity_of(request).key)


async def page_context(request: web.Request) -> dict[str, Any]:
    """What every full page's layout needs."""
    console = console_of(request)

    def static(filename: str) -> str:
        return str(request.app.router["static"].url_for(filename=filename))

    return {
        "static": static,
        "csrf_token": csrf_token(request),
        "user": await console.access.user_name(identity_of(request)),
        "read_only": console.settings.read_only,
        "auth": console.settings.auth,
    }


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


async def _scoped(settings: Settings, apiserver: Apiserver) -> Settings:
    """Locally, a user who may not list AppReleases in every namespace gets the context's."""
    if settings.namespace or settings.auth != "kubeconfig":
        return settings
    client = apiserver.as_(CONSOLE)
    if await client.can("list", "appreleases", "", "apprelease.io"):
        return settings
    namespace = context_namespace(settings.kubeconfig, settings.context)
    log.warning("you may not list AppReleases in every namespace: showing namespace %s (-n to choose)",
                namespace)
    return dataclasses.replace(settings, namespace=namespace)


def create_app(settings: Settings) -> web.Application:
    from . import app_page, deploy, operations, overview

    app = web.Application(middlewares=[security], client_max_size=4 * 1024 * 1024)

    async def lifecycle(app: web.Application) -> Any:
        configuration = load_configuration(settings.kubeconfig, settings.context)
        apiserver = Apiserver(configuration)
        await apiserver.start()
        console = Console(await _scoped(settings, apiserver), apiserver)
        app[CONSOLE_KEY] = console
        console.watches.start()
        yield
        await console.watches.stop()
        await apiserver.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_static("/static/", PACKAGE_DIR / "static", append_version=True, name="static")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/favicon.ico", favicon)
    overview.add_routes(app.router)
    app_page.add_routes(app.router)
    operations.add_routes(app.router)
    deploy.add_routes(app.router)
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
