"""pytest plugin: real Nacos servers and simulated app instances for registry tests.

Fixtures:
  nacos_server (session)     a Nacos 2.x (newest on Maven Central unless
                             $APPRELEASE_TEST_NACOS_VERSION), started once; or the server at
                             $APPRELEASE_TEST_NACOS_URL (+ _USERNAME, _PASSWORD) if set.
  nacos_server_v3 (session)  the same for 3.x ($APPRELEASE_TEST_NACOS3_URL / _VERSION / ...).
  nacos_endpoint             parametrized over both: a test using it runs against 2.x and 3.x.
  app_instances              factory of AppInstanceSimulator, all stopped after the test.
A server that cannot start fails the tests that need it (pytest.fail), it never skips them.

Helpers:
  AppInstanceSimulator  plays an app that registers itself (gRPC or HTTP) and stays alive.
  register_persistent_instance  what an operator's script would do for a non-ephemeral one.
  wait_until(condition, timeout, message)  poll until truthy, else AssertionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from apprelease_dev.nacos import NacosServer

from apprelease.registry.nacos import NacosRegistry, NacosSettings
from tests.plugins.cluster import wait_for

SERVER_START_TIMEOUT_SECONDS = 240.0
DEFAULT_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2
# HTTP-registered instances: Nacos marks them unhealthy this long after their last beat
# (preserved.* metadata is Nacos' per-instance override of the 15 s / 30 s defaults).
HTTP_BEAT_INTERVAL_MS = 1000
HTTP_BEAT_TIMEOUT_MS = 3000
HTTP_DELETE_TIMEOUT_MS = 600_000

T = TypeVar("T")


@dataclass(frozen=True)
class NacosEndpoint:
    """How tests reach one Nacos server."""

    base_url: str  # http://host:port/nacos
    username: str | None
    password: str | None = field(repr=False)
    major: int
    version: str

    @property
    def server_addr(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.hostname}:{parts.port}"

    def settings(self, service_name: str, **overrides: Any) -> NacosSettings:
        values: dict[str, Any] = {
            "server_addr": self.base_url,
            "service_name": service_name,
            "username": self.username,
            "password": self.password,
        }
        values.update(overrides)
        return NacosSettings(**values)

    def registry(self, service_name: str, **overrides: Any) -> NacosRegistry:
        return NacosRegistry(self.settings(service_name, **overrides))


def pytest_configure(config: pytest.Config) -> None:
    # nacos-sdk-python's pydantic models trigger this at import; not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:Support for class-based `config` is deprecated:DeprecationWarning"
    )


# --- waiting -----------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T | None], timeout: float = DEFAULT_WAIT_SECONDS, message: str = ""
) -> T:
    """Poll `condition` until it returns something truthy (which is returned)."""
    return wait_for(condition, timeout, POLL_SECONDS, message)  # type: ignore[arg-type]


def holds_for(condition: Callable[[], object], seconds: float, message: str = "") -> None:
    """Assert `condition` stays truthy for `seconds` (for "nothing happens" checks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        observed = condition()
        assert observed, f"stopped holding: {message} (observed: {observed!r})"
        time.sleep(POLL_SECONDS)


def unused_port() -> int:
    """A loopback TCP port nothing listened on a moment ago (connections get refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- servers -----------------------------------------------------------------------------------


def _external_endpoint(prefix: str, major: int) -> NacosEndpoint | None:
    url = os.environ.get(f"{prefix}_URL")
    if not url:
        return None
    settings = NacosSettings(
        server_addr=url,
        service_name="probe",
        username=os.environ.get(f"{prefix}_USERNAME") or None,
        password=os.environ.get(f"{prefix}_PASSWORD") or None,
    )
    with NacosRegistry(settings) as probe:
        version = probe.server_version or f"{major}.x"
    return NacosEndpoint(settings.base_url, settings.username, settings.password, major, version)


def _server_endpoint(server: NacosServer) -> NacosEndpoint:
    return NacosEndpoint(
        server.base_url, server.username, server.password, server.major, server.version
    )


def _session_server(
    tmp_path_factory: pytest.TempPathFactory, prefix: str, major: int
) -> Iterator[NacosEndpoint]:
    try:
        external = _external_endpoint(prefix, major)
    except Exception as error:
        pytest.fail(f"the Nacos at ${prefix}_URL is not usable: {error}", pytrace=False)
    if external is not None:
        yield external
        return
    # Imported here, not when unit tests load this plugin.
    from apprelease_dev.nacos import NacosError, ensure_nacos, start_nacos

    version = os.environ.get(f"{prefix}_VERSION", str(major))
    workdir = tmp_path_factory.mktemp(f"nacos{major}")
    try:
        distribution = ensure_nacos(version)
        server = start_nacos(distribution, workdir, timeout_seconds=SERVER_START_TIMEOUT_SECONDS)
    except (NacosError, OSError) as error:
        pytest.fail(f"could not start Nacos {version} in {workdir}: {error}", pytrace=False)
    with server:
        yield _server_endpoint(server)


@pytest.fixture(scope="session")
def nacos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NacosEndpoint]:
    yield from _session_server(tmp_path_factory, "APPRELEASE_TEST_NACOS", 2)


@pytest.fixture(scope="session")
def nacos_server_v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NacosEndpoint]:
    yield from _session_server(tmp_path_factory, "APPRELEASE_TEST_NACOS3", 3)


@pytest.fixture(params=["nacos2", "nacos3"])
def nacos_endpoint(request: pytest.FixtureRequest) -> NacosEndpoint:
    fixture = "nacos_server" if request.param == "nacos2" else "nacos_server_v3"
    endpoint: NacosEndpoint = request.getfixturevalue(fixture)
    return endpoint


@pytest.fixture
def service_name() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


# --- simulated apps ----------------------------------------------------------------------------


class AppInstanceSimulator:
    """Plays one application instance that registers itself in Nacos and stays alive.

    transport="grpc" (default) registers through nacos-sdk-python's gRPC client, like Nacos
    2.x/3.x Java clients (Spring Cloud Alibaba, Dubbo) do: the instance lives as long as the
    connection, is always healthy while connected, and Nacos' HTTP deregistration does not
    touch it. That is what the operator meets in production, so it is the default.
    transport="http" registers with the v1 HTTP API and sends beats from a background thread,
    like 1.x clients and many non-Java ones; pause_heartbeats() then makes Nacos mark it
    unhealthy after HTTP_BEAT_TIMEOUT_MS, which gRPC instances cannot show.
    """

    def __init__(
        self,
        endpoint: NacosEndpoint,
        *,
        service_name: str,
        ip: str,
        port: int,
        workdir: Path,
        namespace: str = "public",
        group: str = "DEFAULT_GROUP",
        cluster: str = "DEFAULT",
        weight: float = 1.0,
        metadata: dict[str, str] | None = None,
        transport: Literal["grpc", "http"] = "grpc",
    ) -> None:
        self.endpoint = endpoint
        self.service_name = service_name
        self.ip = ip
        self.port = port
        self.namespace = namespace
        self.group = group
        self.cluster = cluster
        self.weight = weight
        self.metadata = dict(metadata or {})
        self.transport = transport
        self._workdir = workdir
        self._app: _GrpcApp | _HttpApp | None = None

    def start(self) -> AppInstanceSimulator:
        app = _GrpcApp(self) if self.transport == "grpc" else _HttpApp(self)
        app.start()
        self._app = app
        return self

    def stop(self, *, deregister: bool = True) -> None:
        """Deregister (unless told not to, like a crashed app) and stop keeping it alive."""
        if self._app is not None:
            self._app.stop(deregister=deregister)
            self._app = None

    def pause_heartbeats(self) -> None:
        self._http_app().paused.set()

    def resume_heartbeats(self) -> None:
        self._http_app().paused.clear()

    def _http_app(self) -> _HttpApp:
        if not isinstance(self._app, _HttpApp):
            raise TypeError("heartbeats can only be paused for transport='http'")
        return self._app

    def __repr__(self) -> str:
        return f"AppInstanceSimulator({self.transport} {self.ip}:{self.port} {self.service_name})"


class _GrpcApp:
    """nacos-sdk-python (asyncio) on its own event loop thread."""

    def __init__(self, sim: AppInstanceSimulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=f"nacos-app-{sim.ip}:{sim.port}", daemon=True
        )
        self.naming: Any = None
        self.log_handlers: list[logging.Handler] = []

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=timeout)

    def start(self) -> None:
        from v2.nacos import (
            ClientConfigBuilder,
            NacosNamingService,
            RegisterInstanceParam,
        )

        sim = self.sim
        # The SDK logs an ERROR at start when its (empty) service cache directory is missing.
        (sim._workdir / "sdk-cache" / "naming" / sim.namespace).mkdir(parents=True, exist_ok=True)
        builder = (
            ClientConfigBuilder()
            .server_address(sim.endpoint.server_addr)
            .namespace_id(sim.namespace)
            .log_level(logging.WARNING)
            .log_dir(str(sim._workdir / "sdk-logs"))
            .cache_dir(str(sim._workdir / "sdk-cache"))
        )
        if sim.endpoint.username:
            builder = builder.username(sim.endpoint.username).password(sim.endpoint.password)
        self.thread.start()
        logger = logging.getLogger("naming")
        before = list(logger.handlers)
        self.naming = self.run(NacosNamingService.create_naming_service(builder.build()))
        self.log_handlers = [h for h in logger.handlers if h not in before]
        registered = self.run(
            self.naming.register_instance(
                RegisterInstanceParam(
                    ip=sim.ip,
                    port=sim.port,
                    weight=sim.weight,
                    metadata=sim.metadata,
                    cluster_name=sim.cluster,
                    service_name=sim.service_name,
                    group_name=sim.group,
                    ephemeral=True,
                )
            )
        )
        if not registered:
            self.stop(deregister=False)
            raise RuntimeError(f"gRPC registration of {sim!r} was refused")

    def stop(self, *, deregister: bool) -> None:
        from v2.nacos import DeregisterInstanceParam

        sim = self.sim
        try:
            if self.naming is not None:
                if deregister:
                    with contextlib.suppress(Exception):
                        self.run(
                            self.naming.deregister_instance(
                                DeregisterInstanceParam(
                                    ip=sim.ip,
                                    port=sim.port,
                                    cluster_name=sim.cluster,
                                    service_name=sim.service_name,
                                    group_name=sim.group,
                                    ephemeral=True,
                                )
                            )
                        )
                with contextlib.suppress(Exception):
                    self.run(self.naming.shutdown())
        finally:
            self._stop_loop()
            logger = logging.getLogger("naming")
            for handler in self.log_handlers:  # the SDK adds one file handler per client
                logger.removeHandler(handler)
                handler.close()

    def _stop_loop(self) -> None:
        async def cancel_leftovers() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                self.run(cancel_leftovers(), timeout=10.0)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10.0)
        if not self.thread.is_alive():
            self.loop.close()


class _HttpApp:
    """v1 HTTP registration plus a beat thread (which re-registers after a 20404 answer, as
    Nacos' own HTTP clients do)."""

    def __init__(self, sim: AppInstanceSimulator) -> None:
        self.sim = sim
        self.http = httpx.Client(base_url=sim.endpoint.base_url, timeout=5.0)
        self.token: str | None = None
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.thread = threading.Thread(
            target=self._beat_loop, name=f"nacos-beat-{sim.ip}:{sim.port}", daemon=True
        )

    def start(self) -> None:
        self._login()
        self._register()
        self.thread.start()

    def stop(self, *, deregister: bool) -> None:
        self.stopping.set()
        self.thread.join(timeout=10.0)
        if deregister:
            with contextlib.suppress(httpx.HTTPError):
                self._request("DELETE", "/v1/ns/instance", self._instance_params())
        self.http.close()

    def _login(self) -> None:
        endpoint = self.sim.endpoint
        if not endpoint.username:
            return
        response = self.http.post(
            "/v1/auth/login", data={"username": endpoint.username, "password": endpoint.password}
        )
        response.raise_for_status()
        self.token = response.json()["accessToken"]

    def _request(self, method: str, path: str, params: dict[str, str]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.http.request(method, path, params=params, headers=headers)
        response.raise_for_status()
        return response

    def _instance_params(self) -> dict[str, str]:
        sim = self.sim
        return {
            "namespaceId": sim.namespace,
            "groupName": sim.group,
            "serviceName": sim.service_name,
            "clusterName": sim.cluster,
            "ip": sim.ip,
            "port": str(sim.port),
            "ephemeral": "true",
        }

    def _register(self) -> None:
        metadata = {
            **self.sim.metadata,
            "preserved.heart.beat.interval": str(HTTP_BEAT_INTERVAL_MS),
            "preserved.heart.beat.timeout": str(HTTP_BEAT_TIMEOUT_MS),
            "preserved.ip.delete.timeout": str(HTTP_DELETE_TIMEOUT_MS),
        }
        params = {
            **self._instance_params(),
            "weight": str(self.sim.weight),
            "healthy": "true",
            "enabled": "true",
            "metadata": json.dumps(metadata),
        }
        self._request("POST", "/v1/ns/instance", params)

    def _beat_loop(self) -> None:
        while not self.stopping.wait(HTTP_BEAT_INTERVAL_MS / 1000):
            if self.paused.is_set():
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError):
                answer = self._request("PUT", "/v1/ns/instance/beat", self._instance_params())
                if answer.json().get("code") == 20404:  # the server forgot us: register again
                    self._register()


@pytest.fixture
def app_instances(
    tmp_path: Path,
) -> Iterator[Callable[..., AppInstanceSimulator]]:
    """Factory: app_instances(endpoint, service_name=..., ip=..., port=..., ...) -> started."""
    started: list[AppInstanceSimulator] = []

    def start(endpoint: NacosEndpoint, **kwargs: Any) -> AppInstanceSimulator:
        workdir = tmp_path / f"app-{len(started)}"
        simulator = AppInstanceSimulator(endpoint, workdir=workdir, **kwargs).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in reversed(started):
        simulator.stop()


def register_persistent_instance(
    endpoint: NacosEndpoint,
    *,
    service_name: str,
    ip: str,
    port: int,
    cluster: str = "DEFAULT",
    weight: float = 1.0,
) -> None:
    """Register a persistent (non-ephemeral) instance over HTTP, as an admin would."""
    path = "/v3/admin/ns/instance" if endpoint.major >= 3 else "/v1/ns/instance"
    with httpx.Client(base_url=endpoint.base_url, timeout=10.0) as http:
        headers = {}
        if endpoint.username:
            login = "/v3/auth/user/login" if endpoint.major >= 3 else "/v1/auth/login"
            answer = http.post(
                login, data={"username": endpoint.username, "password": endpoint.password}
            )
            answer.raise_for_status()
            headers["Authorization"] = f"Bearer {answer.json()['accessToken']}"
        params = {
            "serviceName": service_name,
            "clusterName": cluster,
            "ip": ip,
            "port": str(port),
            "weight": str(weight),
            "ephemeral": "false",
        }
        http.post(path, params=params, headers=headers).raise_for_status()
