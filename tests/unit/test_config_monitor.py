"""The operator's config monitor on a fake store: reads the keys a plan needs on the server's
own thread, runs the plan's actions there, wakes the app; a misconfigured server is a read
error, never an exception in the reconcile."""

from __future__ import annotations

from typing import Any

from apprelease.api.spec import AppRelease
from apprelease.domain import ConfigAction
from apprelease.registry.base import RegistryUnavailable
from apprelease.registry.config_monitor import ConfigMonitor, config_server
from apprelease.registry.config_store import ConfigKey
from apprelease.registry.monitor import RegistryMonitor
from apprelease.rollout.observed import Observed
from tests.plugins.cluster import wait_for

from .fake_config_store import FakeConfigStore


def app(server: str = "nacos.example:8848", **nacos: Any) -> AppRelease:
    return AppRelease.model_validate({
        "metadata": {"name": "shop", "namespace": "ns"},
        "spec": {"image": "shop:v1", "config": {"nacos": {
            "serverAddr": server, "items": [{"dataId": "shop.yaml", "group": "SHOP", "content": "a: 1"}], **nacos}}},
    })


def monitor(store: FakeConfigStore, woken: list[tuple[str, str]]) -> ConfigMonitor:
    registry = RegistryMonitor(None, lambda key: [], lambda key: None)  # type: ignore[arg-type]
    config = ConfigMonitor(registry, woken.append, poll_seconds=0.2, store_factory=lambda settings, check: store)
    config.start()
    return config


def test_reads_the_plans_keys_runs_its_actions_and_wakes_the_app() -> None:
    store = FakeConfigStore()
    woken: list[tuple[str, str]] = []
    config = monitor(store, woken)
    try:
        first = config.state_for(app(), Observed(), None)
        assert first.config is None  # the first read is on its way: the plan waits
        wait_for(lambda: config.state_for(app(), Observed(), None).config is not None, 5, 0.05, "a first read")
        read = config.state_for(app(), Observed(), None).config
        assert read is not None and read.error is None
        copy = next(k for k in read.md5 if k[0].startswith("SHOP.rev-"))
        assert read.md5[copy] is None and read.md5[("SHOP", "shop.yaml")] is None
        assert ("ns", "shop") in woken
        config.execute(app(), (ConfigAction("publish", copy[0], "shop.yaml", content="a: 1", type="yaml"),))
        wait_for(lambda: (config.state_for(app(), Observed(), None).config or read).md5.get(copy) is not None,
                 5, 0.05, "the publish read back")
        assert store.contents()[ConfigKey("", copy[0], "shop.yaml")] == "a: 1"
    finally:
        config.stop()


def test_an_outage_is_a_read_error_and_a_refusal_an_action_error() -> None:
    store = FakeConfigStore(fail_with=RegistryUnavailable("nacos.example:8848: connection refused"))
    config = monitor(store, [])
    try:
        config.state_for(app(), Observed(), None)
        wait_for(lambda: (config.state_for(app(), Observed(), None).config or None) is not None, 5, 0.05, "a read")
        read = config.state_for(app(), Observed(), None).config
        assert read is not None and read.error is not None and "connection refused" in read.error
        store.fail_with = None
        store.refuse = {ConfigKey("", "SHOP", "shop.yaml")}
        config.execute(app(), (ConfigAction("publish", "SHOP", "shop.yaml", content="a: 1"),))
        wait_for(lambda: (config.state_for(app(), Observed(), None).config or read).action_error is not None,
                 5, 0.05, "the refusal")
        after = config.state_for(app(), Observed(), None).config
        assert after is not None and "SHOP/shop.yaml" in (after.action_error or "")
    finally:
        config.stop()


def test_a_server_the_policy_refuses_is_a_read_error_naming_it() -> None:
    config = monitor(FakeConfigStore(), [])
    try:
        observed = config.state_for(app("169.254.169.254:8848"), Observed(), None)
        assert observed.config is not None and observed.config.error_reason == "RegistryMisconfigured"
        assert "169.254.169.254:8848" in (observed.config.error or "")
    finally:
        config.stop()


def test_the_config_server_defaults_to_the_registrys() -> None:
    body = {"metadata": {"name": "shop", "namespace": "ns"}, "spec": {
        "image": "shop:v1",
        "registry": {"nacos": {"serverAddr": "nacos:8848", "namespace": "prod", "serviceName": "shop",
                               "credentialsSecret": {"name": "nacos"}}},
        "config": {"nacos": {"items": [{"dataId": "shop.yaml", "content": "a: 1"}]}}}}
    spec = config_server(AppRelease.model_validate(body))
    assert spec is not None and (spec.server_addr, spec.namespace) == ("nacos:8848", "prod")
    assert spec.credentials_secret is not None and spec.credentials_secret.name == "nacos"
    assert config_server(AppRelease.model_validate({**body, "spec": {"image": "x"}})) is None
