"""Who is asking, and what may they see and do. RBAC decides; the console only asks it.

Three ways to know the user (``AuthMode``):
  kubeconfig     `apprelease console` on a laptop: the kubeconfig's identity, for everything.
  token          in the cluster: the user's bearer token, as an authenticating proxy (or the
                 user) sends it in the Authorization header; passed through to the apiserver.
  impersonation  in the cluster behind an authenticating proxy that sets the user (and
                 groups) headers; the console's ServiceAccount impersonates that user.
Reads served from the shared watch caches are checked with SelfSubjectAccessReviews made as
the user, per namespace, cached for a short while; writes simply go to the apiserver as the
user, which answers 403 where RBAC says no.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..k8s.client import OWN, ApiError, AsyncKube, Identity

AuthMode = Literal["kubeconfig", "token", "impersonation"]
AUTH_MODES: tuple[AuthMode, ...] = ("kubeconfig", "token", "impersonation")
ACCESS_TTL_SECONDS = 30.0
MAX_CACHED_ANSWERS = 20_000  # past this, expired answers are dropped
GROUP = "apprelease.io"

# What each part of the pages reads, as (group, resource).
APPRELEASES = (GROUP, "appreleases")
DETAIL_READS = {
    "deployments": ("apps", "deployments"),
    "pods": ("", "pods"),
    "revisions": ("apps", "controllerrevisions"),
    "events": ("", "events"),
}


class NotAuthenticated(Exception):
    """The request carries no identity the configured mode accepts."""


@dataclass(frozen=True)
class ProxyHeaders:
    user: str = "X-Forwarded-User"
    groups: str = "X-Forwarded-Groups"


def identity_from_headers(mode: AuthMode, headers: Mapping[str, str], proxy: ProxyHeaders) -> Identity:
    """The request's identity under ``mode`` (headers as aiohttp gives them, case-insensitive)."""
    if mode == "kubeconfig":
        return OWN
    if mode == "token":
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("this console passes your own token to Kubernetes: sign in through "
                                   "the authenticating proxy (no 'Authorization: Bearer' header came)")
        return Identity("bearer", token=token.strip())
    user = (headers.get(proxy.user) or "").strip()
    if not user:
        raise NotAuthenticated(f"no {proxy.user} header: reach the console through its authenticating proxy")
    if user.startswith("system:"):
        raise NotAuthenticated(f"{proxy.user} names a system identity: refused")
    # Groups the proxy passes are the organisation's; Kubernetes' own (system:masters...) are
    # never taken from a header.
    groups = tuple(g.strip() for g in (headers.get(proxy.groups) or "").split(",")
                   if g.strip() and not g.strip().startswith("system:"))
    return Identity("impersonate", user=user, groups=groups)


class Access:
    """SelfSubjectAccessReviews as each user, cached for ACCESS_TTL_SECONDS."""

    def __init__(self, client: Callable[[Identity], AsyncKube], ttl: float = ACCESS_TTL_SECONDS):
        self._client = client
        self._ttl = ttl
        self._answers: dict[tuple[str, str, str, str, str], tuple[float, asyncio.Future[bool]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    async def can(self, identity: Identity, verb: str, resource: tuple[str, str], namespace: str) -> bool:
        """May ``identity`` do ``verb`` on ``resource`` in ``namespace`` ("" = every namespace)?"""
        group, plural = resource
        key = (identity.key, verb, group, plural, namespace)
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and now - cached[0] < self._ttl and not (
            cached[1].done() and cached[1].exception() is not None
        ):
            return await asyncio.shield(cached[1])
        if len(self._answers) > MAX_CACHED_ANSWERS:
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self._ttl}
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._answers[key] = (now, future)  # concurrent askers share one review
        try:
            allowed = await self._client(identity).can(verb, plural, namespace, group)
        except ApiError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning
            self._answers.pop(key, None)
            raise
        future.set_result(allowed)
        return allowed

    async def visible_namespaces(self, identity: Identity, namespaces: Iterable[str],
                                 resource: tuple[str, str] = APPRELEASES) -> set[str]:
        """The namespaces among ``namespaces`` where ``identity`` may list ``resource``."""
        wanted = set(namespaces)
        if await self.can(identity, "list", resource, ""):
            return wanted
        ordered = sorted(wanted)
        answers = await asyncio.gather(*(self.can(identity, "list", resource, ns) for ns in ordered))
        return {ns for ns, allowed in zip(ordered, answers, strict=True) if allowed}

    async def detail_reads(self, identity: Identity, namespace: str) -> dict[str, bool]:
        """Which parts of an app page (pods, Deployments, history, Events) the user may read."""
        parts = list(DETAIL_READS)
        answers = await asyncio.gather(*(self.can(identity, "list", DETAIL_READS[p], namespace) for p in parts))
        return dict(zip(parts, answers, strict=True))

    async def user_name(self, identity: Identity) -> str:
        now = time.monotonic()
        cached = self._names.get(identity.key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            name = await self._client(identity).whoami()
        except ApiError:
            name = identity.user or "?"
        self._names[identity.key] = (now, name)
        return name
