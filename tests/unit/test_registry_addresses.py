"""Registry addresses are not an SSRF lever: an AppRelease's serverAddr cannot make the
operator connect to loopback (its own pod), link-local or cloud metadata endpoints, the
unspecified address or its apiserver, unless the platform allows it. Names are resolved and
every address is checked; the connection goes to the checked address (no DNS rebinding)."""

from __future__ import annotations

import base64
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from apprelease.api.spec import AppRelease
from apprelease.controller.reconciler import Reconciler
from apprelease.domain import Policy
from apprelease.registry.base import RegistryMisconfigured
from apprelease.registry.monitor import RegistryMonitor
from apprelease.registry.nacos import NacosRegistry, NacosSettings
from apprelease.rollout.observed import Observed
from tests.unit.test_nacos_client_faults import ROW, nacos_like, server
from tests.unit.test_reconciler import NAME, NS, FakeCache, FakeKube, setup

DEFAULT = Policy()


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("169.254.170.2", "link-local"),
    ("100.100.100.200", "metadata"), ("fd00:ec2::254", "metadata"), ("168.63.129.16", "metadata"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "unspecified"),
    ("::ffff:169.254.169.254", "link-local"), ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("2002:a9fe:a9fe::1", "link-local"),
    ("224.0.0.1", "multicast"), ("255.255.255.255", "reserved"), ("240.0.0.1", "reserved"),
])
def test_loopback_link_local_metadata_and_unspecified_addresses_are_refused_by_default(address: str, kind: str) -> None:
    refusal = DEFAULT.registry_address_refusal("nacos", 8848, address)
    assert refusal is not None and kind in refusal


@pytest.mark.parametrize("address", ["10.96.0.10", "10.0.12.7", "172.20.1.1", "192.168.1.20", "100.64.3.4",
                                     "203.0.113.9", "fd12:3456::10", "2001:db8::5"])
def test_cluster_service_pod_and_vpc_addresses_are_fine(address: str) -> None:
    assert DEFAULT.registry_address_refusal("nacos.nacos.svc", 8848, address) is None


def test_the_platform_opts_in_by_network_or_by_naming_the_server_exactly() -> None:
    by_network = Policy(registry_networks_allowed=("127.0.0.0/8", "::1/128"))
    assert by_network.registry_address_refusal("localhost", 8848, "127.0.0.1") is None
    assert by_network.registry_address_refusal("localhost", 8848, "::1") is None
    assert by_network.registry_address_refusal("x", 8848, "169.254.169.254") is not None
    exact = Policy(nacos_servers=("nacos.local:8848",))
    assert exact.registry_address_refusal("nacos.local", 8848, "127.0.0.1") is None
    assert exact.registry_address_refusal("nacos.local", 9848, "127.0.0.1") is not None
    pattern = Policy(nacos_servers=("*:8848",))  # a pattern is not an explicit choice of this server
    assert pattern.registry_address_refusal("nacos.local", 8848, "127.0.0.1") is not None


def test_the_apiserver_is_never_a_registry_whatever_is_allowed() -> None:
    policy = Policy(registry_networks_allowed=("127.0.0.0/8",), apiserver_endpoints=("127.0.0.1:6443", "10.96.0.1:443"),
                    nacos_servers=("10.96.0.1:443",))
    assert "apiserver" in (policy.registry_address_refusal("k", 6443, "127.0.0.1") or "")
    assert "apiserver" in (policy.registry_address_refusal("10.96.0.1", 443, "10.96.0.1") or "")
    assert policy.registry_address_refusal("n", 8848, "127.0.0.1") is None  # another port of that host


# The client: resolution, the check of every address, the connection to the checked one ---------


def refusing(host: str, port: int, address: str) -> str | None:
    reason = DEFAULT.registry_address_refusal(host, port, address)
    return f"{host}:{port} resolves to {address}, {reason}" if reason else None


def test_a_name_resolving_to_a_metadata_address_is_refused_before_any_connection() -> None:
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["10.0.0.8", "169.254.169.254"]  # one bad address among good ones is enough

    with NacosRegistry(NacosSettings(server_addr="metadata.example:80", service_name="shop"),
                       connect_check=refusing, resolver=resolver) as nacos, pytest.raises(
            RegistryMisconfigured, match=r"169\.254\.169\.254, a link-local"):
        nacos.list_instances()
    assert resolved == ["metadata.example"]


def test_localhost_is_refused_by_the_system_resolver_too() -> None:
    with NacosRegistry(NacosSettings(server_addr="localhost:8848", service_name="shop"),
                       connect_check=refusing) as nacos, pytest.raises(RegistryMisconfigured, match="loopback"):
        nacos.list_instances()


def test_the_connection_goes_to_the_checked_address_with_the_servers_name_as_host() -> None:
    """A name that is not in any DNS: the request arrives only because the client connected to
    the address it resolved and checked, not to whatever a second lookup would answer."""
    hosts: list[str] = []

    def recording(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        hosts.append(handler.headers.get("Host", ""))
        nacos_like([ROW])(handler, path, query)

    allowed = Policy(registry_networks_allowed=("127.0.0.0/8",))

    def check(host: str, port: int, address: str) -> str | None:
        return allowed.registry_address_refusal(host, port, address)

    with server(recording) as address:
        port = int(address.rsplit(":", 1)[1])
        with NacosRegistry(NacosSettings(server_addr=f"nacos.invalid:{port}", service_name="shop"),
                           connect_check=check, resolver=lambda host, p: ["127.0.0.1"]) as nacos:
            assert [i.ip for i in nacos.list_instances()] == ["10.0.0.1"]
    assert hosts and set(hosts) == {f"nacos.invalid:{port}"}


# The operator: a verdict naming the field, before any Secret is read -------------------------


def nacos_app(server_addr: str, **nacos: Any) -> AppRelease:
    return AppRelease.model_validate({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u"},
        "spec": {"image": "shop:v1", "port": 8080, "registry": {"nacos": {
            "serverAddr": server_addr, "serviceName": "shop", "credentialsSecret": {"name": "creds"}, **nacos}}},
    })


class SecretsKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.secret_reads = 0
        data = {"username": base64.b64encode(b"u").decode(), "password": base64.b64encode(b"p").decode()}
        self.objects[("Secret", NS, "creds")] = {"kind": "Secret", "metadata": {"name": "creds"}, "data": data}

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        self.secret_reads += kind == "Secret"
        return super().get(kind, namespace, name)


@pytest.mark.parametrize("server_addr", ["127.0.0.1:8848", "[::1]:8848", "http://169.254.169.254:80",
                                         "nacos-a:8848,0.0.0.0:8848"])
def test_a_refused_literal_address_is_misconfigured_naming_the_field_and_no_secret_is_read(server_addr: str) -> None:
    kube = SecretsKube()
    monitor = RegistryMonitor(kube, lambda key: [], lambda key: None)  # type: ignore[arg-type]
    observed = monitor.state_for(nacos_app(server_addr), Observed())
    registration = observed.registration
    assert registration is not None and registration.state.failure_reason == "RegistryMisconfigured"
    assert "spec.registry.nacos.serverAddr" in (registration.state.error or "")
    assert "--allow-registry-network" in (registration.state.error or "")
    assert kube.secret_reads == 0


def test_an_allowed_loopback_server_gets_a_client_that_checks_at_connect_time() -> None:
    kube = SecretsKube()
    policy = Policy(registry_networks_allowed=("127.0.0.0/8",))
    monitor = RegistryMonitor(kube, lambda key: [], lambda key: None, policy=policy)  # type: ignore[arg-type]
    observed = monitor.state_for(nacos_app("127.0.0.1:8848"), Observed())
    assert observed.registration is not None and observed.registration.state.failure_reason == "Pending"
    target = monitor._where[(NS, NAME)].targets[(NS, NAME)]
    assert target.client._addresses.connect_check is not None
    monitor.stop()


def test_the_verdict_is_stalled_with_a_warning_event_naming_the_field() -> None:
    reconciler, kube, _clock = setup({"registry": {"nacos": {"serverAddr": "169.254.169.254:80", "serviceName": "shop"}}})
    reconciler.registry = RegistryMonitor(kube, lambda key: [], lambda key: None)  # type: ignore[arg-type]
    reconciler.reconcile((NS, NAME))
    status = kube.objects[("AppRelease", NS, NAME)]["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and status["failure"]["reason"] == "RegistryMisconfigured"
    assert "spec.registry.nacos.serverAddr" in status["message"] and "link-local" in status["message"]
    warnings = [e for e in kube.events if e["type"] == "Warning"]
    assert any(e["reason"] == "RegistryMisconfigured" and "spec.registry.nacos.serverAddr" in e["message"]
               for e in warnings)
    assert isinstance(reconciler, Reconciler) and isinstance(FakeCache(kube), FakeCache)


def test_the_opt_in_takes_networks_and_refuses_what_is_not_one() -> None:
    import click

    from apprelease.cli import common
    from apprelease.cli.main import cli

    run = cli.commands["run"]
    parent = click.Context(cli, obj=common.Context())
    context = run.make_context("run", ["--allow-registry-network", "127.0.0.1", "--allow-registry-network", "::1/128"],
                               parent=parent)
    assert context.params["registry_networks"] == ("127.0.0.1/32", "::1/128")
    with pytest.raises(click.BadParameter, match="not appear to be an IPv4 or IPv6 network"):
        run.make_context("run", ["--allow-registry-network", "nacos.local"], parent=parent)
