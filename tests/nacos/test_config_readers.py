"""The judge of issue 20 against real Nacos 2.3.2 and 3.1.0: simulated pods, each an official
nacos-client ConfigService (tests/plugins/nacos_config_readers.py), read the group they are
given at startup, present their own IP to Nacos, see a change through their listener, and
stop reading once removed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from apprelease.registry.config_store import ConfigKey, NacosConfigStore, content_md5
from tests.nacos.conftest import run
from tests.plugins.nacos import NacosEndpoint, holds_for
from tests.plugins.nacos_config_readers import ConfigReaders, nacos_listeners

pytestmark = pytest.mark.nacos

# How long after a publish a listening pod must have the new content (Nacos pushes it in
# well under a second; this is the bound, not the expectation).
FOLLOW_SECONDS = 10.0
QUIET_SECONDS = 3.0


@pytest.mark.parametrize("jvm_per_pod", [True, False], ids=["jvm-per-pod", "one-jvm"])
def test_each_pod_reads_its_group_then_follows_changes_until_removed(
    nacos_endpoint: NacosEndpoint, config_store: NacosConfigStore,
    config_readers: Callable[..., ConfigReaders], jvm_per_pod: bool,
) -> None:
    data_id = f"orders-{uuid.uuid4().hex[:8]}.yaml"
    old, new = ConfigKey("", "orders.rev-aaaaaaaaaa", data_id), ConfigKey("", "orders.rev-bbbbbbbbbb", data_id)
    contents = {old: "greeting: hello\n", new: "greeting: 你好\nlimit: 2\n"}
    for key, content in contents.items():
        run(config_store.publish(key, content, "yaml"))
    readers = config_readers(nacos_endpoint, jvm_per_pod=jvm_per_pod)
    readers.add_pod("orders-stable-1", "10.244.0.11", old.group, [data_id, "absent.yaml"])
    readers.add_pod("orders-canary-1", "10.244.0.12", new.group, [data_id])

    startup = {(r.pod, r.data_id): r.md5 for r in readers.reads() if r.event == "read"}
    assert startup == {("orders-stable-1", data_id): content_md5(contents[old]),
                       ("orders-stable-1", "absent.yaml"): None,
                       ("orders-canary-1", data_id): content_md5(contents[new])}
    if jvm_per_pod:  # each pod shows Nacos its own IP, and what it holds
        assert nacos_listeners(nacos_endpoint, "", old.group, data_id) == {"10.244.0.11": content_md5(contents[old])}
        assert nacos_listeners(nacos_endpoint, "", new.group, data_id) == {"10.244.0.12": content_md5(contents[new])}

    changed = "greeting: hello again\n"
    published = time.time()
    run(config_store.publish(old, changed, "yaml"))
    readers.wait_until(lambda r: r.holding()[("orders-stable-1", data_id)].md5 == content_md5(changed),
                       FOLLOW_SECONDS, "the stable pod's listener to get the change")
    seen = [r for r in readers.reads(pod="orders-stable-1", data_id=data_id) if r.event == "change"]
    assert [r.md5 for r in seen] == [content_md5(changed)] and seen[0].at >= published - 1.0
    # The other group's reader saw nothing of it.
    assert [r.event for r in readers.reads(pod="orders-canary-1")] == ["read"]

    readers.remove_pod("orders-stable-1")
    run(config_store.publish(old, "greeting: nobody reads this\n", "yaml"))
    holds_for(lambda: len(readers.reads(pod="orders-stable-1")) == 3, QUIET_SECONDS, "a removed pod reads nothing")
    assert readers.pods() == ["orders-canary-1"]
    for key in contents:
        run(config_store.delete(key))
