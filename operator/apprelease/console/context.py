"""What every page handler shares: the settings, the process's Console (client, watches,
change log, templates), and the request's identity, session and CSRF token.

The server (server.py) builds these and routes to the pages; the pages (overview.py,
app_page.py, operations.py, deploy.py) use them. Neither pages nor this module import the
server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ..k8s.client import Apiserver, AsyncKube, Identity, Kube
from . import csrf
from .access import Access, AuthMode, ProxyHeaders
from .watch import AppKey, Watches

PACKAGE_DIR = Path(__file__).resolve().parent
CHANGE_LOG_LENGTH = 50_000
DETAILS_SYNC_TIMEOUT_SECONDS = 10.0
API_THREADS = 16  # apiserver calls in flight at once (each user's reviews, actions, forms)

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
    """Everything the handlers share (one per process). Create it on the serving event loop."""

    def __init__(self, settings: Settings, apiserver: Apiserver, executor: ThreadPoolExecutor, watching: Kube):
        """``watching``: the console's own client for the watches, on a pool of its own (each
        watch holds its connection for minutes)."""
        self.settings = settings
        self.apiserver = apiserver
        self._executor = executor
        self.access = Access(self.client)
        self.watches = Watches(watching, settings.namespace)
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

    def client(self, identity: Identity) -> AsyncKube:
        """The one client, acting as ``identity``, its calls on the console's thread pool."""
        return AsyncKube(self.apiserver.as_(identity), self._executor)

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
