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
| create service | POST /nacos/v2/ns/service               | POST /nacos/v3/admin/ns/service    |
| deregister     | DELETE /nacos/v1/ns/instance            | DELETE /nacos/v3/admin/ns/instance |

Listing uses the console catalog (2.x) and the admin list (3.x) because the client-facing
lists (`/v1/ns/instance/list`, `/v2/ns/instance/list`, `/v3/client/ns/instance/list`) leave out
disabled instances, even with healthyOnly=false. Both need a cluster name ("cluster X is not
found!" when it has no instance), so without a configured cluster every cluster of the service
is listed. Verified against Nacos 2.3.2 and 3.1.0 (see tests/nacos/).

A write ahead (an instance record before its app registers) for a service Nacos does not know
yet is refused ("service not found"), so the service is created first, as an ephemeral one
when the instance is: the v1 create on 2.x makes a persistent service, into which the apps'
gRPC registration is then refused ("is persistent service, can't register ephemeral
instance"), hence the v2 create there (Nacos 2.2+). Nacos itself removes a service that
stays empty (nacos.naming.empty-service.auto-clean, on by default), so one created for pods
that never came does not stay.

Deadlines. httpx's timeouts are per read: a server (or a proxy) that sends its headers or its
body a byte at a time never trips them. So every exchange runs on one event loop shared by all
clients (`_IoLoop`) under an asyncio deadline that covers all of it - name resolution,
connect, TLS, headers, body - and each public call (a listing is several requests, a login
included) ends within `call_deadline_seconds` in total.

Where it connects. With a `connect_check` (the operator passes its policy), each server's name
is resolved by the client, every address it resolves to is checked, and the connection goes
to a checked address (Host header and TLS name stay the server's name), so a name that
resolves elsewhere between the check and the connect (DNS rebinding) cannot move it.

Auth. The token from the login goes in an `Authorization: Bearer` header (accepted by 2.x and
3.x), not in the query string, so it stays out of URLs and the server's access log. It is
renewed before its `tokenTtl` runs out and once more after a 401/403. The password and token
never appear in exceptions, logs or repr().
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import httpx

from apprelease import metrics
from apprelease.net import AddressRefused, CheckedAddresses, ConnectCheck, Resolver, system_resolver
from apprelease.registry.base import (
    InstanceNotRegistered,
    RegistryBadResponse,
    RegistryInstance,
    RegistryMisconfigured,
    RegistryRefused,
    RegistryUnavailable,
)
from apprelease.registry.nacos_answers import (
    DEFAULT_CLUSTER,
    MAX_DETAIL_CHARS,
    NOT_FOUND_MESSAGE,
    BadWeight,
    as_float,
    as_int,
    envelope_data,
    flag,
    json_body,
    list_rows,
    parse_instance,
    printable,
    says_already_exists,
    says_not_found,
    says_service_not_found,
)

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
# Renew the token once this fraction of its lifetime has passed.
TOKEN_RENEW_FRACTION = 0.8
CATALOG_PAGE_SIZE = 500
# A list of thousands of instances is well under this; a server streaming without end is not.
MAX_BODY_BYTES = 16 * 1024 * 1024
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]+")
# A public call (a listing, an update: every request, server and try, a login included).
CALL_DEADLINE_SECONDS = 12.0
# The calling thread waits this much longer than an exchange's own deadline before it gives
# up on the I/O loop itself.
LOOP_GRACE_SECONDS = 2.0


_P = ParamSpec("_P")
_R = TypeVar("_R")


class NacosApi(enum.Enum):
    V1 = "v1"  # Nacos 1.x/2.x: v1 Open API and console catalog
    V3 = "v3"  # Nacos 3.x: v3 admin API


@dataclass(frozen=True)
class _Paths:
    login: str
    service: str
    instances: str
    instance: str
    create_service: str


PATHS = {
    NacosApi.V1: _Paths(
        login="/v1/auth/login",
        service="/v1/ns/service",
        instances="/v1/ns/catalog/instances",
        instance="/v1/ns/instance",
        create_service="/v2/ns/service",
    ),
    NacosApi.V3: _Paths(
        login="/v3/auth/user/login",
        service="/v3/admin/ns/service",
        instances="/v3/admin/ns/instance/list",
        instance="/v3/admin/ns/instance",
        create_service="/v3/admin/ns/service",
    ),
}


@dataclass(frozen=True)
class NacosSettings:
    """Where the service lives in Nacos and how to reach it.

    `server_addr` is "host:port" (scheme from `tls`, path from `context_path`), a full URL
    ("https://nacos.example:8848", "http://host:8848/custom-context"), or a comma-separated
    list of either: the servers of one Nacos cluster, tried in turn as Nacos' own clients do.
    `cluster=None` means every cluster of the service.
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
    # The CA certificates (PEM) themselves: used in memory, never written to a file.
    tls_ca_data: str | None = field(default=None, repr=False)
    # One request to one server, body included, never takes longer than this: a server that
    # drips a byte every few seconds is cut off here, not at every read timeout.
    timeout_seconds: float = 5.0
    # One call (all servers, all tries, a login included) never takes longer than this.
    call_deadline_seconds: float = CALL_DEADLINE_SECONDS
    # Tries per server when the connection fails (refused, reset, timed out).
    connect_attempts: int = 2

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Each server's base URL (credentials in an address are dropped, never used)."""
        return tuple(_base_url(a.strip(), self.tls, self.context_path) for a in self.server_addr.split(",") if a.strip())

    @property
    def base_url(self) -> str:
        return self.base_urls[0] if self.base_urls else ""

    @property
    def host_ports(self) -> tuple[str, ...]:
        """host:port of each server, for the operator's allow-list."""
        return tuple(urlsplit(url).netloc for url in self.base_urls)


def _base_url(address: str, tls: bool, context_path: str) -> str:
    """One server's base URL; RegistryMisconfigured when it is not host:port or a URL."""
    text = address if "://" in address else f"{'https' if tls else 'http'}://{address.strip('/')}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RegistryMisconfigured(f"serverAddr {printable(address)!r} is not host:port or a URL ({exc})") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
        raise RegistryMisconfigured(f"serverAddr {printable(address)!r} is not host:port or a URL")
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"  # drops any user:password@ from the address
    path = parts.path.rstrip("/") if "://" in address else ""
    return f"{parts.scheme}://{netloc}{path or context_path}"


class _IoLoop:
    """The event loop (one thread) on which every client's HTTP exchanges run; callers block
    on the result. One for the process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="nacos-io", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, _R], limit: float) -> _R:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _TooSlow(f"no complete answer within {limit:.0f} s") from None

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run it without waiting (closing a client)."""
        asyncio.run_coroutine_threadsafe(coroutine, self.loop())


_IO = _IoLoop()


def _one_call(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A public call: it ends within call_deadline_seconds, all of its requests included
    (calls it makes on itself share the deadline)."""

    @functools.wraps(method)
    def bounded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        client: NacosRegistry = args[0]  # type: ignore[assignment]
        with client.one_call():
            return method(*args, **kwargs)

    return bounded


class NacosRegistry:
    """RegistryProvider for one Nacos service. Thread-safe; close() (or `with`) when done.

    `clock` (monotonic seconds) times the token's lifetime; tests pass a fake one.
    `transport` is handed to httpx (e.g. a mock transport in unit tests).
    `connect_check` refuses addresses (see the module's doc); `resolver` replaces the system's
    name resolution (tests).
    """

    def __init__(
        self,
        settings: NacosSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_check: ConnectCheck | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._settings = settings
        self._servers = settings.base_urls  # RegistryMisconfigured for a bad address
        if not self._servers:
            raise RegistryMisconfigured("serverAddr names no server")
        self._current = 0  # the server that answered last: tried first
        self._base_url = ", ".join(self._servers)  # for messages: never carries credentials
        self._clock = clock
        self._addresses = CheckedAddresses(connect_check, resolver or system_resolver)
        self._local = threading.local()  # the deadline of the public call on this thread
        self._http = httpx.AsyncClient(
            timeout=settings.timeout_seconds,
            verify=_tls_verification(settings),
            transport=transport,
        )
        self._closed = False
        self._lock = threading.RLock()  # re-entrant: _login runs under it and may detect the API
        self._api: NacosApi | None = None
        self._server_version: str | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._logins = 0

    # --- RegistryProvider ---------------------------------------------------------------

    @_one_call
    def list_instances(self) -> list[RegistryInstance]:
        """Every instance of the service, healthy or not, enabled or not."""
        clusters = [self._settings.cluster] if self._settings.cluster else self._cluster_names()
        instances: list[RegistryInstance] = []
        for cluster in clusters:
            instances.extend(self._list_cluster(cluster))
        return instances

    @_one_call
    def update_instance(
        self,
        ip: str,
        port: int,
        *,
        enabled: bool,
        weight: float,
        metadata: Mapping[str, str],
        cluster: str | None = None,
        ephemeral: bool = True,
        must_exist: bool = True,
    ) -> None:
        """Write the instance's server-side state: enabled, weight and metadata, together.

        Nacos keeps them as one override record keyed by ip:port:cluster (see set_enabled)
        and an update replaces all three: omitting the weight resets it to 1.0 and omitting
        the metadata empties the override's. ``metadata`` is merged over what the instance
        shows now (the app's own keys stay). With ``must_exist=False`` the record is written
        even with no instance there yet: the app that registers at that address next joins
        with this state (that is how a new pod joins disabled).
        """
        found = self._matching(ip, port, ephemeral)
        if not found and must_exist:
            raise InstanceNotRegistered(
                f"no instance {ip}:{port} of {self._service_label()} in Nacos at {self._base_url}"
            )
        targets = found or [RegistryInstance(
            ip=ip, port=port, healthy=False, enabled=enabled, weight=weight, ephemeral=ephemeral,
            cluster=cluster or self._settings.cluster or DEFAULT_CLUSTER,
        )]
        for instance in targets:
            merged = {**instance.metadata, **metadata}
            params = {
                **self._instance_params(instance),
                "enabled": flag(enabled),
                "weight": repr(float(weight)),
                "metadata": json.dumps(merged, sort_keys=True),
            }
            self._write_ahead(params, ephemeral=instance.ephemeral, what="updating the instance")

    @_one_call
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

    @_one_call
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

    @_one_call
    def undo_write_ahead(
        self, ip: str, port: int, *, cluster: str | None = None, ephemeral: bool = True
    ) -> None:
        """Neutralise a record written ahead (``update_instance(must_exist=False)``) for an
        instance that never came: an app registering at that address later would inherit it
        (disabled) for good, since Nacos expires a record only when an instance there leaves.
        Nacos cannot delete one, so it is rewritten as what an instance has when nothing
        overrides it: enabled, weight 1.0, none of our metadata.

        With an instance at ip:port now it does nothing: the record is that instance's and
        expires with it."""
        if self._matching(ip, port, ephemeral):
            return
        absent = RegistryInstance(ip=ip, port=port, healthy=False, enabled=True, weight=1.0, ephemeral=ephemeral,
                                  cluster=cluster or self._settings.cluster or DEFAULT_CLUSTER)
        params = {**self._instance_params(absent), "enabled": "true", "weight": "1.0", "metadata": "{}"}
        # Nacos may have removed the (empty) service since: the record it keeps may not be gone.
        self._write_ahead(params, ephemeral=ephemeral, what="undoing a write ahead")

    @_one_call
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
        """Idempotent; a call still running on another thread ends as RegistryUnavailable."""
        if self._closed:
            return
        self._closed = True
        _IO.submit(self._http.aclose())

    # --- for clients of other Nacos APIs built on this one (registry/config_store.py) ----

    @contextlib.contextmanager
    def one_call(self) -> Iterator[None]:
        """Everything inside is one public call: its requests end within call_deadline_seconds."""
        if getattr(self._local, "deadline", None) is not None:
            yield
            return
        self._local.deadline = time.monotonic() + self._settings.call_deadline_seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def exchange(self, method: str, path: str, *, what: str, params: Mapping[str, str] | None = None,
                 form: Mapping[str, str] | None = None) -> httpx.Response:
        """One logged-in request (again after a 401/403), answer not interpreted."""
        response = self._send(method, path, params=params, form=form, headers=self._auth_headers(), what=what)
        if response.status_code in (401, 403) and self._settings.username:
            with self._lock:
                self._token = None  # rejected (expired, server restarted with a new key, ...)
            response = self._send(method, path, params=params, form=form, headers=self._auth_headers(), what=what)
        return response

    # --- extras -------------------------------------------------------------------------

    @property
    def api(self) -> NacosApi:
        """The API generation in use (detected on first use, then cached)."""
        return _one_call(NacosRegistry._detect)(self)

    @property
    def server_version(self) -> str | None:
        _one_call(NacosRegistry._detect)(self)
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

    def _write_ahead(self, params: Mapping[str, str], *, ephemeral: bool, what: str) -> None:
        """Write an instance record that may precede its instance and its service: when Nacos
        does not know the service yet, create it and write again."""
        response = self.exchange("PUT", self._paths().instance, params=params, what=what)
        if says_service_not_found(response):
            self._create_service(ephemeral=ephemeral)
            response = self.exchange("PUT", self._paths().instance, params=params, what=what)
        self._interpret(response, what, missing_ok=False)

    def _create_service(self, *, ephemeral: bool) -> None:
        """Create the service (ephemeral or not, as its instances will be); one created
        meanwhile (the app registering, another write) is as good."""
        what = "creating the service"
        params = {**self._service_params(), "ephemeral": flag(ephemeral)}
        response = self.exchange("POST", self._paths().create_service, params=params, what=what)
        if not says_already_exists(response):
            self._interpret(response, what, missing_ok=False)
        log.info("Created %s in Nacos at %s for a write ahead", self._service_label(), self._base_url)

    def _write_override(self, instance: RegistryInstance, *, enabled: bool, what: str) -> None:
        params = {
            **self._instance_params(instance),
            "enabled": flag(enabled),
            "weight": repr(instance.weight),
        }
        self._call("PUT", self._paths().instance, params=params, what=what)

    def _instance_params(self, instance: RegistryInstance) -> dict[str, str]:
        return {
            **self._service_params(),
            "clusterName": instance.cluster,
            "ip": instance.ip,
            "port": str(instance.port),
            "ephemeral": flag(instance.ephemeral),
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
            data = envelope_data(body)
            clusters = data.get("clusterMap") if isinstance(data, dict) else None
            return sorted(clusters) if isinstance(clusters, dict) else []
        try:
            return sorted(str(cluster["name"]) for cluster in body.get("clusters") or [])
        except (AttributeError, KeyError, TypeError):
            raise RegistryBadResponse(f"Nacos at {self._base_url}: reading the service: no cluster names in the answer") from None

    def _list_cluster(self, cluster: str) -> list[RegistryInstance]:
        params = {**self._service_params(), "clusterName": cluster}
        what = "listing instances"
        if self._detect() is NacosApi.V3:
            body = self._call(
                "GET", self._paths().instances, params=params, what=what, missing_ok=True
            )
            return [] if body is None else [self._parsed(raw) for raw in list_rows(envelope_data(body))]
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
            if not isinstance(body, dict):
                raise RegistryBadResponse(f"Nacos at {self._base_url}: {what}: not a catalog page")
            found = list_rows(body.get("list"))
            for raw in found:
                yield self._parsed(raw)
            seen += len(found)
            if not found or seen >= as_int(body.get("count")):
                return
            page += 1

    def _parsed(self, raw: Any) -> RegistryInstance:
        try:
            return parse_instance(raw)
        except BadWeight as exc:
            raise RegistryBadResponse(f"Nacos at {self._base_url}: an instance row with weight {exc}") from None
        except (AttributeError, KeyError, TypeError, ValueError):
            raise RegistryBadResponse(
                f"Nacos at {self._base_url}: an instance row without a valid ip/port"
            ) from None

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
            state = json_body(legacy, self._base_url, what)
            version = state.get("version") if isinstance(state, dict) else None
            major = str(version or "2").split(".")[0]
            api = NacosApi.V3 if major.isdigit() and int(major) >= 3 else NacosApi.V1
            return api, version
        current = self._send("GET", "/v3/admin/core/state", headers={}, what=what)
        if current.status_code == 200:
            data = envelope_data(json_body(current, self._base_url, what))
            return NacosApi.V3, data.get("version") if isinstance(data, dict) else None
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
        return self._interpret(self.exchange(method, path, params=params, what=what), what, missing_ok)

    def _interpret(self, response: httpx.Response, what: str, missing_ok: bool) -> Any:
        status = response.status_code
        detail = self.detail(response)
        if missing_ok and status in (400, 404, 500) and says_not_found(response):
            return None
        if status in (401, 403):
            reason = (
                "refused after a fresh login" if self._settings.username else "needs credentials"
            )
            raise RegistryRefused(
                f"Nacos at {self._base_url}: {what}: {reason} (HTTP {status}{detail})"
            )
        if status >= 300:
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: HTTP {status}{detail}")
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type:
            return response.text
        body = json_body(response, self._base_url, what)
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and code != 0 and "data" in body:  # v2/v3 Result envelope
            if missing_ok and NOT_FOUND_MESSAGE.search(str(body.get("data"))):
                return None
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: code {code}{detail}")
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
        """One request, failing over across the servers; it ends within what is left of the
        public call's deadline, one try within timeout_seconds."""
        settings = self._settings
        deadline = getattr(self._local, "deadline", None) or time.monotonic() + settings.call_deadline_seconds
        order = [(self._current + i) % len(self._servers) for i in range(len(self._servers))]
        last_error = "no server tried"
        for index in order:
            for attempt in range(max(1, settings.connect_attempts)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._closed:
                    # Replaced (serverAddr edited) while a lane still used it: an outage to the
                    # caller, who already knows what to do with one.
                    raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: client closed")
                server, started = urlsplit(self._servers[index]).netloc, time.monotonic()
                try:
                    response = self._request(_Try(index, attempt, method, path, params, form, headers), remaining)
                except (httpx.TransportError, _TooSlow) as error:
                    _measured(server, method, started, _error_kind(error))
                    # Never the exception's text: it may carry the request (Authorization).
                    last_error = f"{self._servers[index]}: {_transport_reason(error)}"
                    self._addresses.forget()  # the server may have moved: resolve again
                    if attempt + 1 < settings.connect_attempts:
                        time.sleep(min(0.2 * 2**attempt, max(0.0, deadline - time.monotonic())))
                    continue
                except _ClosedMeanwhile:
                    raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: client closed") from None
                _measured(server, method, started, "http_5xx" if response.status_code >= 500 else None)
                if response.status_code >= 500 and index != order[-1]:
                    last_error = f"{self._servers[index]}: HTTP {response.status_code}"
                    break  # a node without a leader, overloaded...: the next server may answer
                self._current = index
                return response
        raise RegistryUnavailable(f"Nacos at {self._base_url}: {what}: {last_error}")

    def _request(self, request: _Try, remaining: float) -> httpx.Response:
        budget = min(self._settings.timeout_seconds, remaining)
        return _IO.run(self._exchange(request, budget), budget + LOOP_GRACE_SECONDS)

    async def _exchange(self, request: _Try, budget: float) -> httpx.Response:
        """One request to one server, on the I/O loop: resolution, connect, TLS, headers and
        body all within ``budget`` seconds."""
        try:
            async with asyncio.timeout(budget):
                base, extra_headers, extensions = await self._route(request.server, request.attempt)
                async with self._http.stream(
                    request.method, base + request.path, params=request.params, data=request.form,
                    headers={**request.headers, **extra_headers},
                    timeout=httpx.Timeout(budget), extensions=extensions,
                ) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY_BYTES:
                            raise RegistryBadResponse(f"Nacos at {self._base_url}: an answer over {MAX_BODY_BYTES} bytes")
                    # What was read, already decoded: the encoding headers no longer apply.
                    kept = {k: v for k, v in response.headers.items()
                            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")}
                    return httpx.Response(
                        response.status_code, headers=kept, content=bytes(body), request=response.request
                    )
        except TimeoutError:
            raise _TooSlow(f"no complete answer within {budget:.0f} s") from None
        except RuntimeError:
            if not self._http.is_closed:
                raise
            raise _ClosedMeanwhile() from None

    async def _route(self, index: int, attempt: int) -> tuple[str, dict[str, str], dict[str, Any]]:
        """Where this try connects: (base URL, extra headers, httpx extensions). Without a
        connect check, the server's own URL; with one, a checked address of the server's name
        (RegistryMisconfigured when any address it resolves to is refused)."""
        try:
            route = await self._addresses.route(self._servers[index], attempt)
        except AddressRefused as refused:
            raise RegistryMisconfigured(str(refused)) from None
        return route.url, route.headers, route.extensions

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
        if response.status_code in (401, 403):
            raise RegistryRefused(
                f"Nacos at {self._base_url}: {what} failed (HTTP {response.status_code}); check the username and password"
            )
        if response.status_code != 200:
            raise RegistryUnavailable(f"Nacos at {self._base_url}: {what} failed (HTTP {response.status_code})")
        body = json_body(response, self._base_url, what)
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not token:
            raise RegistryBadResponse(
                f"Nacos at {self._base_url}: {what}: no accessToken in the answer"
            )
        ttl = as_float(body.get("tokenTtl"))
        self._token = str(token)
        self._token_renew_at = self._clock() + ttl * TOKEN_RENEW_FRACTION
        self._logins += 1
        log.debug("Logged in to Nacos at %s; token valid for %.0f s", self._base_url, ttl)

    def detail(self, response: httpx.Response) -> str:
        """", <Nacos' own message>" from a JSON error answer, short and printable, or "".
        Never an HTML or text body: a proxy's page, a stack trace, an echo of our request."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        text = body.get("message") or body.get("data") or body.get("error") or ""
        text = printable(" ".join(str(text).split()))[:MAX_DETAIL_CHARS]
        return f": {self.redact(text)}" if text else ""

    def redact(self, text: str) -> str:
        for secret in (self._token, self._settings.password):
            if secret:
                text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class _Try:
    """One request to one server (its index in the list), the how-manieth try there."""

    server: int
    attempt: int
    method: str
    path: str
    params: Mapping[str, str] | None
    form: Mapping[str, str] | None
    headers: Mapping[str, str]


class _TooSlow(Exception):
    """The server answers too slowly (a byte at a time): the request is cut off."""


def _measured(server: str, method: str, started: float, error: str | None) -> None:
    """Latency of one request to one server, and its failure if it failed."""
    metrics.NACOS_REQUEST_SECONDS.labels(server, method).observe(time.monotonic() - started)
    if error is not None:
        metrics.NACOS_REQUEST_ERRORS.labels(server, error).inc()


def _error_kind(error: Exception) -> str:
    if isinstance(error, _TooSlow | httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connection"
    return "transport"


class _ClosedMeanwhile(Exception):
    """The client was closed while a call still used it."""




def _transport_reason(error: Exception) -> str:
    if isinstance(error, _TooSlow):
        return str(error)
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.ConnectError):
        return "connection failed"
    return type(error).__name__


def _tls_verification(settings: NacosSettings) -> ssl.SSLContext | bool:
    if not settings.tls_verify:
        return False
    if settings.tls_ca_file or settings.tls_ca_data:
        try:
            return ssl.create_default_context(cafile=settings.tls_ca_file, cadata=settings.tls_ca_data)
        except (ssl.SSLError, OSError, ValueError):
            raise RegistryMisconfigured("the TLS CA (ca.crt) is not a PEM certificate") from None
    return True
