"""The operator's config store (registry/config_store.py) against real Nacos 2.3.2 and 3.1.0:
what it publishes is what Nacos serves (md5 included), the groups of a dataId are listed for
GC, a name Nacos refuses is ConfigRefused, and a Nacos that stops answering is
RegistryUnavailable within the call's deadline."""

from __future__ import annotations

import time
import uuid

import pytest

from apprelease.registry.base import RegistryUnavailable
from apprelease.registry.config_store import (
    ConfigKey,
    ConfigRefused,
    NacosConfigStore,
    StoredConfig,
    content_md5,
)
from tests.nacos.conftest import run
from tests.plugins.fault_proxy import Mode, fault_proxy
from tests.plugins.nacos import NacosEndpoint

pytestmark = pytest.mark.nacos

CONTENT = "greeting: \"你好, Grüße\"\nlist:\n  - a\n  - b\nemoji: \"🚀\"\n\n# trailing blank line kept\n\n"
# The fault test's bound: one try of a request, and the whole call.
TRY_SECONDS = 2.0
CALL_SECONDS = 4.0
# What it may take beyond the deadline (the worker thread, the proxy's own closing).
SLACK_SECONDS = 2.5


@pytest.fixture
def data_id() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}.yaml"


def test_publish_read_and_delete_keep_content_and_md5(config_store: NacosConfigStore, data_id: str) -> None:
    key = ConfigKey("", "orders.rev-0a1b2c3d4e", data_id)
    assert run(config_store.read(key)) is None
    md5 = run(config_store.publish(key, CONTENT, "yaml"))
    assert md5 == content_md5(CONTENT)
    stored = run(config_store.read(key))
    assert stored is not None and stored.content == CONTENT and stored.md5 == md5
    # "public" is the same namespace as "" on both versions.
    public = ConfigKey("public", key.group, data_id)
    assert run(config_store.read(public)) == StoredConfig(public, CONTENT, md5)
    changed = CONTENT.replace("a", "c")
    assert run(config_store.publish(key, changed, "yaml")) == content_md5(changed)
    run(config_store.delete(key))
    assert run(config_store.read(key)) is None
    run(config_store.delete(key))  # absent: fine


def test_list_groups_names_every_group_of_the_data_id_and_no_other(config_store: NacosConfigStore, data_id: str) -> None:
    groups = ["orders", "orders.rev-0a1b2c3d4e", "orders.rev-ffffffffff", "orders.drift-12345678"]
    for group in groups:
        run(config_store.publish(ConfigKey("", group, data_id), f"group: {group}\n", "yaml"))
    # Another dataId a LIKE could mistake for it ("_" matches any one character there).
    lookalike = data_id.replace("-", "_", 1)
    run(config_store.publish(ConfigKey("", "elsewhere", lookalike), "x: 1\n", "yaml"))
    assert run(config_store.list_groups("", data_id)) == sorted(groups)
    assert run(config_store.list_groups("public", data_id)) == sorted(groups)
    for group in groups[1:]:
        run(config_store.delete(ConfigKey("", group, data_id)))
    assert run(config_store.list_groups("", data_id)) == ["orders"]
    assert run(config_store.list_groups("", f"absent-{data_id}")) == []
    run(config_store.delete(ConfigKey("", "orders", data_id)))
    run(config_store.delete(ConfigKey("", "elsewhere", lookalike)))


@pytest.mark.parametrize(("data_id", "words"), [
    ("orders/config.yaml", "illegal characters"),
    ("o" * 300, "length"),
])
def test_a_name_nacos_refuses_is_config_refused_naming_why(config_store: NacosConfigStore, data_id: str, words: str) -> None:
    with pytest.raises(ConfigRefused) as refused:
        run(config_store.publish(ConfigKey("", "orders", data_id), "a: 1\n", "yaml"))
    assert words in refused.value.reason and "dataId" in refused.value.reason


@pytest.mark.parametrize("mode", ["drip-headers", "down"])
def test_a_nacos_that_stops_answering_is_unavailable_within_the_deadline(
    nacos_endpoint: NacosEndpoint, data_id: str, mode: Mode,
) -> None:
    with fault_proxy(nacos_endpoint.base_url.removesuffix("/nacos")) as proxy:
        store = NacosConfigStore(nacos_endpoint.settings(
            "", server_addr=f"http://{proxy.address}/nacos", timeout_seconds=TRY_SECONDS,
            call_deadline_seconds=CALL_SECONDS))
        key = ConfigKey("", "orders.rev-0a1b2c3d4e", data_id)
        try:
            assert run(store.publish(key, CONTENT, "yaml")) == content_md5(CONTENT)  # through the proxy
            proxy.set_mode(mode)
            for call in (store.publish(key, "a: 2\n", "yaml"), store.read(key), store.list_groups("", data_id)):
                started = time.monotonic()
                with pytest.raises(RegistryUnavailable) as outage:
                    run(call)
                assert time.monotonic() - started < CALL_SECONDS + SLACK_SECONDS
                assert nacos_endpoint.password is None or nacos_endpoint.password not in str(outage.value)
            proxy.set_mode("pass")
            stored = run(store.read(key))
            assert stored is not None and stored.content == CONTENT  # nothing half-written
        finally:
            proxy.set_mode("pass")
            run(store.delete(key))
            store.close()
