"""Nacos as a RegistryProvider, over Nacos' HTTP API (sync httpx, bounded retries).

Which API. The generation is detected once per client: `GET /nacos/v1/console/server/state`
answers 200 with the version on 2.x (and 1.x); 3.x answers 410 Gone there (its admin/console
v1/v2 APIs are off by default) and 200 on `GET /nacos/v3/admin/core/state`.

| operation      | Nacos 2.x                               | Nacos 3.x                          |
| -------------- | --------------------------------------- | ---------------------------------- |
| login          | POST /nacos/v1/auth/login               | POST /nacos/v3/auth/user/login     |
| clusters       | GET  /nacos/v1/ns/service               | GET  /nacos/v3/admin/ns/service    |
| list instances | GET  /nacos/v1/ns/catalog/instances     | GET  /nacos/v3/admin/ns/instance/list |
| set enabled    | PUT  /nacos/v1/ns/instance              | PUT  /nacos/v3/admin/ns/instance   |
| deregister     | DELETE /nacos/v1/ns/instance            | DELETE /nacos/v3/admin/ns/instance |

Listing uses the console catalog (2.x) and the admin list (3.x) because the client-facing
lists (`/v1/ns/instance/list`, `/v2/ns/instance/list`, `/v3/client/ns/instance/list`) leave out
disabled instances, even with healthyOnly=false. Both need a cluster name ("cluster X is not
found!" when it has no instance), so without a configured cluster every cluster of the service
is listed. Verified against Nacos 2.3.2 and 3.1.0 (see tests/nacos/).

Auth. The token from the login goes in an `Authorization: Bearer` header (accepted by 2.x and
3.x), not in the query string, so it stays out of URLs and the server's access log. It is
renewed before its `tokenTtl` runs out and once more after a 401/403. The password and token
never appear in exceptions, logs or repr().
"""

from __future__ import annotations

import enum
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from apprelease.registry.base import (
    InstanceNotRegistered,
    RegistryInstance,
    RegistryUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
# Renew the token once this fraction of its lifetime has passed.
TOKEN_RENEW_FRACTION = 0.8
CATALOG_PAGE_SIZE = 500
# Nacos' own "nothing there" messages ("service X is not found!", "cluster X is not found!",
# "service not found, namespace: ..."); case-sensitive so Spring's generic "Not Found" for an
# unknown path is not mistaken for an empty service.
NOT_FOUND_MESSAGE = re.compile(r"is not found|service not found")
MAX_DETAIL_CHARS = 200


class NacosApi(enum.Enum):
    V1 = "v1"  # Nacos 1.x/2.x: v1 Open API and console catalog
    V3 = "v3"  # Nacos 3.x: v3 admin API


@dataclass(frozen=True)
class _Paths:
    login: str
    service: str
    instances: str
    instance: str


PATHS = {
    NacosApi.V1: _Paths(
        login="/v1/auth/login",
        service="/v1/ns/service",
        instances="/v1/ns/catalog/instances",
        instance="/v1/ns/instance",
    ),
    NacosApi.V3: _Paths(
        login="/v3/auth/user/login",
        service="/v3/admin/ns/service",
        instances="/v3/admin/ns/instance/list",
        instance="/v3/admin/ns/instance",
    ),
}


@dataclass(frozen=True)
class NacosSettings:
    """Where the service lives in Nacos and how to reach it.

    `server_addr` is "host:port" (scheme from `tls`, path from `context_path`) or a full URL
    ("https://nacos.example:8848", "http://host:8848/custom-context"). `cluster=None` means
    every cluster of the service.
    """

    server_addr: str
    service_name: str
    namespace: str = DEFAULT_NAMESPACE
    group: str = DEFAULT_GROUP
    cluster: str | None = DEFAULT_CLUSTER
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    context_path: str = "/nacos"
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None
    timeout_seconds: float = 5.0
    # Tries per request when the connection fails (refused, reset, timed out).
    connect_attempts: int = 3

    @property
    def base_url(self) -> str:
        if "://" in self.server_addr:
            parts = urlsplit(self.server_addr)
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            if parts.port:
                netloc += f":{parts.port}"  # drops any user:password@ from the address
            path = parts.path.rstrip("/") or self.context_path
            return f"{parts.scheme}://{netloc}{path}"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.server_addr.strip('/')}{self.context_path}"


class NacosRegistry:
    """RegistryProvider for one Nacos service. Thread-safe; close() (or `with`) when done.

    `clock` (monotonic seconds) times the token's lifetime; tests pass a fake one.
    `transport` is handed to httpx (e.g. a mock transport in unit tests).
    """

    def __init__(
        self,
        settings: NacosSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._base_url = settings.base_url
        self._clock = clock
        self._http = httpx.Client(
            base_url=self._base_url,
            timeout=settings.timeout_seconds,
            verify=_tls_verification(settings),
            transport=transport,
        )
        self._lock = threading.RLock()  # re-entrant: _login runs under it and may detect the API
        self._api: NacosApi | None = None
        self._server_version: str | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._logins = 0

    # --- RegistryProvider ---------------------------------------------------------------

    def list_instances(self) -> list[RegistryInstance]:
        """Every instance of the service, healthy or not, enabled or not."""
        clusters = [self._settings.cluster] if self._settings.cluster else self._cluster_names()
        instances: list[RegistryInstance] = []
        for cluster in clusters:
            instances.extend(self._list_cluster(cluster))
        return instances

    def set_enabled(self, ip: str, port: int, enabled: bool, *, ephemeral: bool = True) -> None:
        """Switch traffic to an instance on or off, whoever registered it.

        Works on the apps' own ephemeral instances, including gRPC-registered ones (verified).
        Nacos keeps the value as a server-side "instance metadata" override (CP-replicated,
        keyed by ip:port:cluster), not in the app's registration and not in the instance's
        metadata map. It therefore outlives the instance: Nacos drops it only
        nacos.naming.clean.expired-metadata.expired-time (default 60 s, per Nacos' docs)
        after the last instance at that ip:port:cluster is gone, and an instance registering
        there before that inherits it (verified). The update always carries a weight (omitting it resets the override's
        weight to 1.0, verified), so the current weight is written back unchanged.

        Raises InstanceNotRegistered if no such instance exists: Nacos would accept the write
        for an absent ip:port and keep that override, never expiring, for a future instance.
        """
        for instance in self._registered(ip, port, ephemeral):
            self._write_override(instance, enabled=enabled, what="setting enabled")

    def clear_overrides(self, ip: str, port: int, *, ephemeral: bool = True) -> None:
        """Undo set_enabled(): the instance at ip:port is enabled again with its current weight.

        Nacos has no API that deletes an instance's override record (only its own expiry
        cleaner does; the metadata batch-delete API edits the record's metadata map and keeps
        enabled/weight). So this rewrites it as enabled=true with the weight the instance has
        now - ours never change the weight, so that is the app's registered one. Use it when
        a new instance turned up at an ip:port that carried a disabled override.

        With no instance at ip:port it does nothing: writing then would create a record that
        never expires, and an existing one expires by itself 60 s after its instance left.
        """
        for instance in self._matching(ip, port, ephemeral):
            self._write_override(instance, enabled=True, what="clearing overrides")

    def deregister(self, ip: str, port: int, *, ephemeral: bool) -> None:
        """Remove the instance at ip:port; no-op if it is not registered.

        Works for persistent instances and for ephemeral ones registered over HTTP (v1 POST +
        beats; the app's next beat registers it again). For ephemeral instances registered
        over gRPC (nacos-client 2.x+, nacos-sdk-python v2) Nacos answers "ok" and changes
        nothing: the instance belongs to the app's connection and leaves with it (verified on
        2.3.2 and 3.1.0). To take traffic away from such an instance use set_enabled(False).
        """
        for instance in self._matching(ip, port, ephemeral):
            params = self._instance_params(instance)
            self._call("DELETE", self._paths().instance, params=params, what="deregistering")

    def close(self) -> None:
        self._http.close()

    # --- extras -------------------------------------------------------------------------

    @property
    def api(self) -> NacosApi:
        """The API generation in use (detected on first use, then cached)."""
        return self._detect()

    @property
    def server_version(self) -> str | None:
        self._detect()
        return self._server_version

    @property
    def login_count(self) -> int:
        """Logins performed so far (first use, renewals, retries after 401/403)."""
        return self._logins

    def __enter__(self) -> NacosRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"NacosRegistry(server={self._base_url!r}, namespace={s.namespace!r}, "
            f"group={s.group!r}, service={s.service_name!r}, cluster={s.cluster!r})"
        )

    # --- instances ----------------------------------------------------------------------

    def _matching(self, ip: str, port: int, ephemeral: bool) -> list[RegistryInstance]:
        return [
            instance
            for instance in self.list_instances()
            if instance.ip == ip and instance.port == port and instance.ephemeral == ephemeral
        ]

    def _registered(self, ip: str, port: int, ephemeral: bool) -> list[RegistryInstance]:
        found = self._matching(ip, port, ephemeral)
        if not found:
            kind = "ephemeral" if ephemeral else "persistent"
            raise InstanceNotRegistered(
                f"no {kind} instance {ip}:{port} of {self._service_label()} in Nacos at "
                f"{self._base_url}"
            )
        return found

    def _write_override(self, instance: RegistryInstance, *, enabled: bool, what: str) -> None:
        params = {
            **self._instance_params(instance),
            "enabled": _flag(enabled),
            "weight": repr(instance.weight),
        }
        self._call("PUT", self._paths().instance, params=params, what=what)

    def _instance_params(self, instance: RegistryInstance) -> dict[str, str]:
        return {
            **self._service_params(),
            "clusterName": instance.cluster,
            "ip": instance.ip,
            "port": str(instance.port),
            "ephemeral": _flag(instance.ephemeral),
        }

    def _service_params(self) -> dict[str, str]:
        s = self._settings
        return {
            "namespaceId": s.namespace or DEFAULT_NAMESPACE,
            "groupName": s.group or DEFAULT_GROUP,
            "serviceName": s.service_name,
        }

    def _cluster_names(self) -> list[str]:
        body = self._call(
            "GET",
            self._paths().service,
            params=self._service_params(),
            what="reading the service",
            missing_ok=True,
        )
        if body is None:
            return []
        if self._detect() is NacosApi.V3:
            return sorted((_data(body) or {}).get("clusterMap") or {})
        return sorted(str(cluster["name"]) for cluster in body.get("clusters") or [])

    def _list_cluster(self, cluster: str) -> list[RegistryInstance]:
        params = {**self._service_params(), "clusterName": cluster}
        what = "listing instances"
        if self._detect() is NacosApi.V3:
            body = self._call(
                "GET", self._paths().instances, params=params, what=what, missing_ok=True
            )
            return [] if body is None else [_instance(raw) for raw in _data(body) or []]
        return list(self._catalog_pages(params, what))

    def _catalog_pages(self, params: dict[str, str], what: str) -> Iterator[RegistryInstance]:
        page = 1
        seen = 0
        while True:
            paged = {**params, "pageNo": str(page), "pageSize": str(CATALOG_PAGE_SIZE)}
            body = self._call(
                "GET", self._paths().instances, params=paged, what=what, missing_ok=True
            )
            if body is None:
                return
            rows = body.get("list") or []
            for raw in rows:
                yield _instance(raw)
            seen += len(rows)
            if not rows or seen >= int(body.get("count") or 0):
                return
            page += 1

    def _service_label(self) -> str:
        s = self._settings
        return f"service {s.group}@@{s.service_name} (namespace {s.namespace})"

    # --- HTTP ---------------------------------------------------------------------------

    def _paths(self) -> _Paths:
        return PATHS[self._detect()]

    def _detect(self) -> NacosApi:
        if self._api is not None:
            return self._api
        with self._lock:
            if self._api is None:
                self._api, self._server_version = self._probe_api()
                log.debug(
                    "Nacos at %s speaks %s (version %s)",
                    self._base_url,
                    self._api.value,
                    self._server_version,
                )
        return self._api

    def _probe_api(self) -> tuple[NacosApi, str | None]:
        what = "detecting the Nacos API"
        legacy = self._send("GET", "/v1/console/server/state", headers={}, what=what)
        if legacy.status_code == 200:
            version = _json(legacy, self._base_url, what).get("version")
            major = str(version or "2").split(".")[0]
            api = NacosApi.V3 if major.isdigit() and int(major) >= 3 else NacosApi.V1
            return api, version
        current = self._send("GET", "/v3/admin/core/state", headers={}, what=what)
        if current.status_code == 200:
            return NacosApi.V3, _data(_json(current, self._base_url, what)).get("version")
        if current.status_code in (401, 403):
            return NacosApi.V3, None
        if legacy.status_code in (401, 403):
            return NacosApi.V1, None
        raise RegistryUnavailable(
            f"Nacos at {self._base_url}: {what}: no Nacos API answered (v1 state: HTTP "
            f"{legacy.status_code}, v3 state: HTTP {current.status_code})"
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        what: str,
        missing_ok: bool = False,
    ) -> Any:
        """Send an authenticated request; the parsed JSON (or text) body, or None when
        `missing_ok` and Nacos said the service/cluster does not exist."""
        response = self._send(method, path, params=params, headers=self._auth_headers(), what=what)
        if response.status_code in (401, 403) and self._settings.username:
            with self._lock:
                self._token = None  # rejected (expired, server restarted with a new key, ...)
            response = self._send(
                method, path, params=params, headers=self._auth_headers(), what=what
            )
        return self._interpret(response, what, missing_ok)

    def _interpret(self, response: httpx.Response, what: str, missing_ok: bool) -> Any:
        status = response.status_code
        detail = self._detail(response)
        if missing_ok and status in (400, 404, 500) and NOT_FOUND_MESSAGE.search(detail):
            return None
        if status in (401, 403):
            reason = (
                "refused after a fresh login" if self._settings.username else "needs credentials"
            )
            raise RegistryUnavailable(
                f"Nacos at {self._base_url}: {what}: {reason} (HTTP {status}: {detail})"
            )
        if status >= 300:
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: HTTP {status}: {detail}")
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type:
            return response.text
        body = _json(response, self._base_url, what)
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and code != 0 and "data" in body:  # v2/v3 Result envelope
            if missing_ok and NOT_FOUND_MESSAGE.search(str(body.get("data"))):
                return None
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: code {code}: {detail}")
        return body

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        what: str,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(httpx.TransportError),
            stop=tenacity.stop_after_attempt(max(1, self._settings.connect_attempts)),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._http.request(
                        method, path, params=params, data=form, headers=headers
                    )
        except httpx.TransportError as error:
            # `from None`: the chained httpx error holds the request, Authorization header included.
            reason = self._redact(f"{type(error).__name__}: {error}")
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: {reason}") from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _auth_headers(self) -> dict[str, str]:
        if not self._settings.username:
            return {}
        with self._lock:
            if self._token is None or self._clock() >= self._token_renew_at:
                self._login()
            assert self._token is not None
            return {"Authorization": f"Bearer {self._token}"}

    def _login(self) -> None:
        """Log in (caller holds the lock). Failures name the server and status, never the
        user's password or the server's answer (it may echo the user name)."""
        what = "logging in"
        form = {
            "username": self._settings.username or "",
            "password": self._settings.password or "",
        }
        response = self._send("POST", self._paths().login, form=form, headers={}, what=what)
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"Nacos at {self._base_url}: {what} failed (HTTP {response.status_code}); check the username and password"
            )
        body = _json(response, self._base_url, what)
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not token:
            raise RegistryUnavailable(
                f"Nacos at {self._base_url}: {what}: no accessToken in the answer"
            )
        ttl = float(body.get("tokenTtl") or 0)
        self._token = str(token)
        self._token_renew_at = self._clock() + ttl * TOKEN_RENEW_FRACTION
        self._logins += 1
        log.debug("Logged in to Nacos at %s; token valid for %.0f s", self._base_url, ttl)

    def _detail(self, response: httpx.Response) -> str:
        text = response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            text = str(body.get("data") or body.get("message") or body.get("error") or text)
        text = " ".join(text.split())
        return self._redact(text[:MAX_DETAIL_CHARS])

    def _redact(self, text: str) -> str:
        for secret in (self._token, self._settings.password):
            if secret:
                text = text.replace(secret, "***")
        return text


def _tls_verification(settings: NacosSettings) -> ssl.SSLContext | bool:
    if not settings.tls_verify:
        return False
    if settings.tls_ca_file:
        return ssl.create_default_context(cafile=settings.tls_ca_file)
    return True


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _json(response: httpx.Response, base_url: str, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RegistryUnavailable(
            f"Nacos at {base_url}: {what}: expected JSON, got HTTP {response.status_code} "
            f"{response.headers.get('content-type', 'without content type')}"
        ) from None


def _data(body: Any) -> Any:
    """The payload of a v2/v3 `{"code": 0, "data": ...}` envelope."""
    return body.get("data") if isinstance(body, dict) else None


def _instance(raw: Mapping[str, Any]) -> RegistryInstance:
    metadata = raw.get("metadata") or {}
    return RegistryInstance(
        ip=str(raw["ip"]),
        port=int(raw["port"]),
        healthy=bool(raw.get("healthy", False)),
        enabled=bool(raw.get("enabled", True)),
        weight=float(raw.get("weight", 1.0)),
        ephemeral=bool(raw.get("ephemeral", True)),
        cluster=str(raw.get("clusterName") or DEFAULT_CLUSTER),
        metadata={str(key): str(value) for key, value in metadata.items()},
    )
