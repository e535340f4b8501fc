"""NacosRegistry against real Nacos 2.x and 3.x servers (see tests/plugins/nacos.py).

Instances use 127.0.0.x addresses: Nacos health-checks persistent instances by connecting to
them, and nothing but loopback may be a target here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import count

import pytest

from apprelease.registry.base import InstanceNotRegistered, RegistryInstance, RegistryUnavailable
from apprelease.registry.nacos import NacosApi, NacosRegistry, NacosSettings
from tests.plugins.nacos import (
    AppInstanceSimulator,
    NacosEndpoint,
    holds_for,
    register_persistent_instance,
    unused_port,
    wait_until,
)

pytestmark = pytest.mark.nacos

AppFactory = Callable[..., AppInstanceSimulator]
_addresses = count(10)


def loopback_ip() -> str:
    """A loopback address no other test in this session uses."""
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


class FakeClock:
    """Monotonic clock the test moves by hand (drives the client's token lifetime)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def find(registry: NacosRegistry, ip: str, port: int) -> RegistryInstance | None:
    return next((i for i in registry.list_instances() if i.ip == ip and i.port == port), None)


def instance_where(
    registry: NacosRegistry, ip: str, port: int, **expected: object
) -> Callable[[], RegistryInstance | None]:
    """Condition for wait_until: the instance at ip:port, once it has all `expected` fields."""

    def check() -> RegistryInstance | None:
        found = find(registry, ip, port)
        if found and all(getattr(found, key) == value for key, value in expected.items()):
            return found
        return None

    return check


# --- API detection and auth ----------------------------------------------------------------


def test_detects_the_api_generation(nacos_endpoint: NacosEndpoint, service_name: str) -> None:
    with nacos_endpoint.registry(service_name) as registry:
        expected = NacosApi.V3 if nacos_endpoint.major >= 3 else NacosApi.V1
        assert registry.api is expected
        assert (registry.server_version or "").startswith(str(nacos_endpoint.major))
        assert registry.list_instances() == []  # an unknown service is empty, not an error


def test_logs_in_once_and_again_when_the_token_clock_passes_its_ttl(
    nacos_endpoint: NacosEndpoint, service_name: str
) -> None:
    clock = FakeClock()
    with NacosRegistry(nacos_endpoint.settings(service_name), clock=clock) as registry:
        registry.list_instances()
        registry.list_instances()
        assert registry.login_count == 1
        clock.advance(60)  # well within Nacos' default 18000 s token lifetime
        registry.list_instances()
        assert registry.login_count == 1
        clock.advance(18000)
        registry.list_instances()
        assert registry.login_count == 2


def test_logs_in_again_once_when_the_server_rejects_the_token(
    nacos_endpoint: NacosEndpoint, service_name: str
) -> None:
    with nacos_endpoint.registry(service_name) as registry:
        registry.list_instances()
        # As after a server restart with a new signing key: Nacos answers 403 "token invalid".
        registry._token = "eyJhbGciOiJIUzM4NCJ9.eyJzdWIiOiJub2JvZHkifQ.bm90LWEtc2lnbmF0dXJl"
        assert registry.list_instances() == []
        assert registry.login_count == 2


def test_wrong_password_raises_registry_unavailable_without_the_password(
    nacos_endpoint: NacosEndpoint, service_name: str
) -> None:
    wrong = "wrong-password-4f1c9e"
    settings = nacos_endpoint.settings(service_name, password=wrong)
    with NacosRegistry(settings) as registry, pytest.raises(RegistryUnavailable) as raised:
        registry.list_instances()
    message = str(raised.value)
    assert settings.base_url in message
    assert "logging in failed" in message
    assert wrong not in message and wrong not in repr(raised.value)
    assert raised.value.__cause__ is None


def test_unreachable_server_fails_fast_without_the_password(service_name: str) -> None:
    secret = "never-print-me-7d2a"
    port = unused_port()  # nothing listens there: connections are refused
    settings = NacosSettings(
        server_addr=f"127.0.0.1:{port}",
        service_name=service_name,
        username="nacos",
        password=secret,
    )
    started = time.monotonic()
    with NacosRegistry(settings) as registry, pytest.raises(RegistryUnavailable) as raised:
        registry.list_instances()
    assert time.monotonic() - started < 5.0
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "connection failed" in message
    assert secret not in message and raised.value.__cause__ is None


def test_repr_shows_neither_password_nor_token(
    nacos_endpoint: NacosEndpoint, service_name: str
) -> None:
    with nacos_endpoint.registry(service_name) as registry:
        registry.list_instances()
        token = registry._token
        assert token and nacos_endpoint.password
        for text in (repr(registry), repr(registry._settings)):
            assert token not in text and nacos_endpoint.password not in text


# --- listing ---------------------------------------------------------------------------------


def test_lists_healthy_unhealthy_and_disabled_instances(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    healthy_ip, disabled_ip, unhealthy_ip = loopback_ip(), loopback_ip(), loopback_ip()
    app_instances(
        nacos_endpoint,
        service_name=service_name,
        ip=healthy_ip,
        port=8080,
        weight=2.0,
        metadata={"version": "v1"},
    )
    app_instances(nacos_endpoint, service_name=service_name, ip=disabled_ip, port=8080)
    hung = app_instances(
        nacos_endpoint, service_name=service_name, ip=unhealthy_ip, port=8080, transport="http"
    )
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, disabled_ip, 8080), message="disabled-to-be")
        registry.set_enabled(disabled_ip, 8080, False)
        hung.pause_heartbeats()

        healthy = wait_until(instance_where(registry, healthy_ip, 8080), message="healthy")
        disabled = wait_until(
            instance_where(registry, disabled_ip, 8080, enabled=False), message="disabled"
        )
        unhealthy = wait_until(
            instance_where(registry, unhealthy_ip, 8080, healthy=False), message="unhealthy"
        )

    assert healthy == RegistryInstance(
        ip=healthy_ip,
        port=8080,
        healthy=True,
        enabled=True,
        weight=2.0,
        ephemeral=True,
        cluster="DEFAULT",
        metadata={"version": "v1"},
    )
    assert (disabled.healthy, disabled.enabled, disabled.weight) == (True, False, 1.0)
    assert (unhealthy.healthy, unhealthy.enabled, unhealthy.ephemeral) == (False, True, True)


def test_namespace_group_and_cluster_are_respected(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    namespace, group = "apprelease-test", "APPRELEASE"
    default_ip, c1_ip, c2_ip = loopback_ip(), loopback_ip(), loopback_ip()
    app_instances(nacos_endpoint, service_name=service_name, ip=default_ip, port=80)
    for ip, cluster in ((c1_ip, "c1"), (c2_ip, "c2")):
        app_instances(
            nacos_endpoint,
            service_name=service_name,
            ip=ip,
            port=80,
            namespace=namespace,
            group=group,
            cluster=cluster,
        )

    def ips(**scope: object) -> Callable[[], set[str]]:
        def listed() -> set[str]:
            with nacos_endpoint.registry(service_name, **scope) as registry:
                return {i.ip for i in registry.list_instances()}

        return listed

    wait_until(lambda: ips()() == {default_ip}, message="default scope")
    wait_until(
        lambda: ips(namespace=namespace, group=group, cluster="c1")() == {c1_ip}, message="c1"
    )
    wait_until(
        lambda: ips(namespace=namespace, group=group, cluster=None)() == {c1_ip, c2_ip},
        message="all clusters",
    )
    assert ips(namespace=namespace, cluster=None)() == set()  # right namespace, wrong group


# --- set_enabled / clear_overrides -------------------------------------------------------------


def test_set_enabled_is_stored_server_side_and_outlives_the_instance(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    ip = loopback_ip()
    app = dict(service_name=service_name, ip=ip, port=8080, weight=3.0, metadata={"app": "a"})
    first = app_instances(nacos_endpoint, **app)
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, ip, 8080), message="registered")
        registry.set_enabled(ip, 8080, False)
        disabled = wait_until(instance_where(registry, ip, 8080, enabled=False), message="off")
        # Weight kept; the override is not part of the instance's own metadata.
        assert (disabled.weight, dict(disabled.metadata)) == (3.0, {"app": "a"})

        with nacos_endpoint.registry(service_name) as fresh:  # another client, another login
            assert instance_where(fresh, ip, 8080, enabled=False)()

        # The app goes away and a new one registers on the same ip:port: it starts disabled,
        # because Nacos keeps the override (keyed by ip:port:cluster) beyond the instance.
        first.stop()
        wait_until(lambda: find(registry, ip, 8080) is None, message="first app gone")
        app_instances(nacos_endpoint, **app)
        wait_until(instance_where(registry, ip, 8080, enabled=False), message="inherited")

        registry.clear_overrides(ip, 8080)
        cleared = wait_until(instance_where(registry, ip, 8080, enabled=True), message="cleared")
        assert (cleared.weight, dict(cleared.metadata)) == (3.0, {"app": "a"})

        registry.set_enabled(ip, 8080, False)
        wait_until(instance_where(registry, ip, 8080, enabled=False), message="off again")
        registry.set_enabled(ip, 8080, True)
        wait_until(instance_where(registry, ip, 8080, enabled=True), message="on again")


def test_set_enabled_on_an_absent_instance_raises_and_leaves_no_override(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    present_ip, absent_ip = loopback_ip(), loopback_ip()
    app_instances(nacos_endpoint, service_name=service_name, ip=present_ip, port=8080)
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, present_ip, 8080), message="service exists")
        with pytest.raises(InstanceNotRegistered):
            registry.set_enabled(absent_ip, 8080, False)
        registry.clear_overrides(absent_ip, 8080)  # nothing to clear: a no-op
        with pytest.raises(InstanceNotRegistered):  # wrong kind: the instance is ephemeral
            registry.set_enabled(present_ip, 8080, False, ephemeral=False)

        app_instances(nacos_endpoint, service_name=service_name, ip=absent_ip, port=8080)
        late = wait_until(instance_where(registry, absent_ip, 8080), message="late app")
        assert late.enabled


# --- deregister --------------------------------------------------------------------------------


def test_deregisters_a_persistent_instance(
    nacos_endpoint: NacosEndpoint, service_name: str
) -> None:
    ip, port = loopback_ip(), unused_port()
    register_persistent_instance(nacos_endpoint, service_name=service_name, ip=ip, port=port)
    with nacos_endpoint.registry(service_name) as registry:
        persistent = wait_until(instance_where(registry, ip, port), message="persistent")
        assert persistent.ephemeral is False
        registry.deregister(ip, port, ephemeral=False)
        wait_until(lambda: find(registry, ip, port) is None, message="persistent gone")
        registry.deregister(ip, port, ephemeral=False)  # again: nothing there, no error


def test_deregisters_an_http_registered_ephemeral_instance(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    ip = loopback_ip()
    app = app_instances(
        nacos_endpoint, service_name=service_name, ip=ip, port=8080, transport="http"
    )
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, ip, 8080), message="registered over HTTP")
        app.pause_heartbeats()  # a beating app would be registered again by its next beat
        registry.deregister(ip, 8080, ephemeral=True)
        wait_until(lambda: find(registry, ip, 8080) is None, message="deregistered")
    app.stop(deregister=False)


def test_deregister_leaves_a_grpc_registered_instance_in_place(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    ip = loopback_ip()
    app_instances(nacos_endpoint, service_name=service_name, ip=ip, port=8080)
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, ip, 8080), message="registered over gRPC")
        registry.deregister(ip, 8080, ephemeral=True)  # Nacos answers "ok"...
        holds_for(instance_where(registry, ip, 8080), 3.0, "gRPC instance still registered")


def test_an_undone_write_ahead_leaves_a_later_instance_at_that_address_as_it_registers(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    """A write ahead (disabled, for a pod that never registered) stays for good: Nacos expires
    an override only when an instance at that address leaves. Undone, the next app there
    starts enabled with its own weight and metadata, not the old pod's."""
    present_ip, absent_ip = loopback_ip(), loopback_ip()
    app_instances(nacos_endpoint, service_name=service_name, ip=present_ip, port=8080)
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(instance_where(registry, present_ip, 8080), message="service exists")
        registry.update_instance(absent_ip, 8080, enabled=False, weight=3.0, must_exist=False,
                                 metadata={"apprelease.io/owner": "ns/gone"})
        registry.undo_write_ahead(absent_ip, 8080)
        app_instances(nacos_endpoint, service_name=service_name, ip=absent_ip, port=8080, metadata={"app": "b"})
        late = wait_until(instance_where(registry, absent_ip, 8080), message="the later app")
        assert late.enabled and late.weight == 1.0 and dict(late.metadata) == {"app": "b"}
        registry.undo_write_ahead(present_ip, 8080)  # an instance is there: its record is left alone
        assert instance_where(registry, present_ip, 8080, enabled=True)()


def test_a_write_ahead_on_a_service_nacos_does_not_know_yet_lands_and_the_app_joins_disabled(
    nacos_endpoint: NacosEndpoint, service_name: str, app_instances: AppFactory
) -> None:
    """A new app's first pod: Nacos refuses an instance write for a service it does not know
    ("service not found"), so the client creates the service - ephemeral, or the app's gRPC
    registration into it would be refused - and writes again."""
    ip = loopback_ip()
    with nacos_endpoint.registry(service_name) as registry:
        assert registry.list_instances() == []  # nothing there: Nacos does not know the service
        registry.update_instance(ip, 8080, enabled=False, weight=1.0, must_exist=False,
                                 metadata={"apprelease.io/owner": "ns/orders"})
        # Written again (the service exists now): no error either.
        registry.update_instance(ip, 8080, enabled=False, weight=1.0, must_exist=False,
                                 metadata={"apprelease.io/owner": "ns/orders"})
        app_instances(nacos_endpoint, service_name=service_name, ip=ip, port=8080)
        joined = wait_until(instance_where(registry, ip, 8080), message="the app registered over gRPC")
        assert (joined.enabled, joined.ephemeral) == (False, True)
        assert joined.metadata.get("apprelease.io/owner") == "ns/orders"
