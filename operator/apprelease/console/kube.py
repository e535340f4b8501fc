"""The console's asynchronous apiserver client, acting as one identity or another.

Credentials come from the official client's loaders (kubeconfig with its context, or the
pod's ServiceAccount); requests go through one aiohttp session. An ``Identity`` says whose
request it is: the console's own credentials (locally: the user's kubeconfig), a user's
bearer token passed through, or the console's credentials impersonating a user that an
authenticating proxy vouched for. RBAC at the apiserver then decides.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from ..k8s.client import RESOURCES, ApiError

USER_AGENT = "apprelease-console"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
TOKEN_REFRESH_SECONDS = 60.0  # a projected ServiceAccount token is rotated on disk


@dataclass(frozen=True)
class Identity:
    """Whose request this is. ``key`` names it in caches, never the secret itself."""

    kind: str  # "console" | "bearer" | "impersonate"
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        if self.kind == "bearer":
            return "bearer:" + hashlib.sha256((self.token or "").encode()).hexdigest()[:24]
        if self.kind == "impersonate":
            return f"as:{self.user}:{','.join(self.groups)}"
        return "console"


CONSOLE = Identity("console")


class ApiFailure(ApiError):
    """An ApiError with the apiserver's per-field causes (a 422's details.causes)."""

    def __init__(self, status: int, reason: str, message: str, causes: list[dict[str, Any]]):
        super().__init__(status, reason, message)
        self.causes = causes

    @classmethod
    def of(cls, status: int, reason: str, payload: bytes) -> ApiFailure:
        base = ApiError.from_body(status, reason, payload)
        causes: list[dict[str, Any]] = []
        try:
            body = orjson.loads(payload or b"{}")
            causes = list(((body.get("details") or {}).get("causes")) or [])
        except (orjson.JSONDecodeError, AttributeError):
            pass
        return cls(base.status, base.reason, base.message, causes)


def load_configuration(kubeconfig: str | None, context: str | None) -> k8s_client.Configuration:
    """The kubeconfig (explicit, $KUBECONFIG or ~/.kube/config) with its context, or, in a
    pod without a kubeconfig, the ServiceAccount."""
    configuration = k8s_client.Configuration()
    if not kubeconfig and not context:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return configuration
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=configuration)
    return configuration


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace the kubeconfig's context names ("default" if none)."""
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next(c for c in contexts if c["name"] == context)
        return str(active.get("context", {}).get("namespace") or "default")
    except (k8s_config.ConfigException, StopIteration, OSError):
        return "default"


def _ssl_context(configuration: k8s_client.Configuration, *, client_cert: bool) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    if not configuration.verify_ssl:
        return False  # the kubeconfig says insecure-skip-tls-verify
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if client_cert and configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class Apiserver:
    """One session to the apiserver; `as_(identity)` gives a client acting as someone."""

    def __init__(self, configuration: k8s_client.Configuration):
        self._configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._console_ssl = _ssl_context(configuration, client_cert=True)
        self._user_ssl = _ssl_context(configuration, client_cert=False)  # never our certificate
        self._session: aiohttp.ClientSession | None = None
        self._token_read_at = 0.0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Apiserver.start() first"
        return self._session

    def _console_authorization(self) -> str | None:
        hook = self._configuration.refresh_api_key_hook
        if hook is not None and time.monotonic() - self._token_read_at > TOKEN_REFRESH_SECONDS:
            hook(self._configuration)
            self._token_read_at = time.monotonic()
        return self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")

    def credentials(self, identity: Identity) -> tuple[list[tuple[str, str]], ssl.SSLContext | bool]:
        """Headers and TLS settings for a request made as ``identity``."""
        if identity.kind == "bearer":
            return [("Authorization", f"Bearer {identity.token}")], self._user_ssl
        headers: list[tuple[str, str]] = []
        own = self._console_authorization()
        if own:
            headers.append(("Authorization", own))
        if identity.kind == "impersonate":
            headers.append(("Impersonate-User", identity.user or ""))
            headers += [("Impersonate-Group", group) for group in identity.groups]
        return headers, self._console_ssl

    def as_(self, identity: Identity) -> Client:
        return Client(self, identity)


class Client:
    """JSON requests as one identity; same method names as the CLI's Kube (for actions)."""

    def __init__(self, apiserver: Apiserver, identity: Identity):
        self._apiserver = apiserver
        self.identity = identity

    async def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      resource: str = "") -> Any:
        headers, ssl_setting = self._apiserver.credentials(self.identity)
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers.append(("Content-Type", content_type))
        async with self._apiserver.session.request(
            method, self._apiserver.host + path, params=query or None, data=data,
            headers=headers, ssl=ssl_setting, timeout=REQUEST_TIMEOUT,
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                raise ApiFailure.of(response.status, response.reason or "", payload)
            return orjson.loads(payload) if payload else None

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", RESOURCES[kind].path(namespace, name), resource=kind)
        return result

    async def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        result = await self.request("GET", RESOURCES[kind].path(namespace), query=query, resource=kind)
        return list(result.get("items", []))

    async def lines(self, path: str, query: dict[str, Any], read_timeout: float) -> AsyncIterator[bytes]:
        """A streamed GET (a watch): its body, line by line."""
        headers, ssl_setting = self._apiserver.credentials(self.identity)
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
        async with self._apiserver.session.get(
            self._apiserver.host + path, params=query, headers=headers, ssl=ssl_setting, timeout=timeout,
        ) as response:
            if response.status >= 400:
                raise ApiError.from_body(response.status, response.reason or "", await response.read())
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line

    async def can(self, verb: str, resource: str, namespace: str, group: str = "") -> bool:
        """SelfSubjectAccessReview: may this identity do ``verb`` on ``resource`` here?"""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "namespace": namespace, "verb": verb, "group": group, "resource": resource}},
        }
        result = await self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                    body=review, resource="SelfSubjectAccessReview")
        return bool((result.get("status") or {}).get("allowed"))

    async def whoami(self) -> str:
        """The user name the apiserver sees (SelfSubjectReview), for the page header."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        result = await self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                    body=review, resource="SelfSubjectReview")
        return str(((result.get("status") or {}).get("userInfo") or {}).get("username", "?"))
