"""NacosConfigStore's reading of Nacos' answers (a mock transport plays Nacos 2.x and 3.x):
a refusal is ConfigRefused with Nacos' own words, an outage RegistryUnavailable, credentials
never in a message. The real servers: tests/nacos/test_config_store.py. Also the fake's
semantics, which unit tests of the operator rely on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from apprelease.registry.base import (
    RegistryBadResponse,
    RegistryMisconfigured,
    RegistryRefused,
    RegistryUnavailable,
)
from apprelease.registry.config_store import ConfigKey, ConfigRefused, NacosConfigStore, content_md5
from apprelease.registry.nacos import NacosSettings
from tests.unit.fake_config_store import FakeConfigStore

PASSWORD = "s3cret-pass"
TOKEN = "tok-abcdef"
KEY = ConfigKey("", "orders.rev-0123456789", "orders.yaml")
Answer = Callable[[httpx.Request], httpx.Response]


def nacos(major: int, config: Answer) -> NacosConfigStore:
    """A store talking to a fake Nacos `major`.x whose config paths answer with `config`."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/v1/console/server/state"):
            return httpx.Response(200, json={"version": "2.3.2"}) if major == 2 else httpx.Response(410)
        if path.endswith("/v3/admin/core/state"):
            return httpx.Response(200, json={"code": 0, "data": {"version": "3.1.0"}})
        if path.endswith("/auth/login") or path.endswith("/auth/user/login"):
            return httpx.Response(200, json={"accessToken": TOKEN, "tokenTtl": 18000})
        return config(request)

    settings = NacosSettings(server_addr="nacos.test:8848", service_name="", username="nacos",
                             password=PASSWORD, call_deadline_seconds=3, connect_attempts=1)
    return NacosConfigStore(settings, transport=httpx.MockTransport(handle))


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("major", [2, 3])
def test_a_name_nacos_refuses_is_config_refused_in_nacos_own_words(major: int) -> None:
    store = nacos(major, lambda _: httpx.Response(
        400, text="Param 'dataId' is illegal, illegal characters should not appear in the param.\r\n"))
    with pytest.raises(ConfigRefused) as refused:
        run(store.publish(KEY, "a: 1", "yaml"))
    assert "Param 'dataId' is illegal" in refused.value.reason and "orders.yaml" in refused.value.reason
    assert not isinstance(refused.value, RegistryUnavailable)


def test_an_html_refusal_is_refused_without_the_page() -> None:
    store = nacos(2, lambda _: httpx.Response(413, text="<html><body>Request Entity Too Large</body></html>",
                                              headers={"content-type": "text/html"}))
    with pytest.raises(ConfigRefused) as refused:
        run(store.publish(KEY, "a: 1", "yaml"))
    assert "HTTP 413" in refused.value.reason and "<html>" not in refused.value.reason


@pytest.mark.parametrize("major", [2, 3])
def test_a_server_error_is_an_outage_and_no_secret_reaches_the_message(major: int) -> None:
    store = nacos(major, lambda request: httpx.Response(
        503, json={"message": f"overloaded {PASSWORD} {request.headers.get('authorization')}"}))
    with pytest.raises(RegistryUnavailable) as outage:
        run(store.read(KEY))
    assert "HTTP 503" in str(outage.value)
    assert PASSWORD not in str(outage.value) and TOKEN not in str(outage.value)


def test_credentials_refused_are_registry_refused() -> None:
    store = nacos(3, lambda _: httpx.Response(403, json={"code": 403, "message": "no permission", "data": None}))
    with pytest.raises(RegistryRefused):
        run(store.delete(KEY))


@pytest.mark.parametrize("major", [2, 3])
def test_an_absent_config_reads_as_none_and_deletes_fine(major: int) -> None:
    def absent(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(200, json=True if major == 2 else {"code": 0, "data": True})
        if major == 2:  # show=all: an empty 200
            return httpx.Response(200, content=b"", headers={"content-type": "application/json"})
        return httpx.Response(404, json={"code": 20004, "message": "resource not found", "data": "Config not exist"})

    store = nacos(major, absent)
    assert run(store.read(KEY)) is None
    run(store.delete(KEY))


def test_a_publish_nacos_does_not_acknowledge_is_a_bad_response() -> None:
    store = nacos(2, lambda _: httpx.Response(200, json=False))
    with pytest.raises(RegistryBadResponse):
        run(store.publish(KEY, "a: 1", "yaml"))


@pytest.mark.parametrize("major", [2, 3])
def test_publish_sends_the_content_as_a_form_and_returns_the_md5_read_back(major: int) -> None:
    content = "name: ørders\nlist:\n  - 1\n"
    sent: dict[str, Any] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sent.update(httpx.QueryParams(request.content.decode()))
            return httpx.Response(200, json=True if major == 2 else {"code": 0, "data": True})
        row = {"content": sent["content"], "md5": content_md5(sent["content"])}
        return httpx.Response(200, json=row if major == 2 else {"code": 0, "data": row})

    assert run(nacos(major, answer).publish(KEY, content, "yaml")) == content_md5(content)
    assert sent["content"] == content and sent["type"] == "yaml" and sent["dataId"] == "orders.yaml"
    where = (sent["tenant"], sent["group"]) if major == 2 else (sent["namespaceId"], sent["groupName"])
    assert where == ("" if major == 2 else "public", KEY.group)


def test_list_groups_pages_through_and_keeps_the_exact_data_id_only() -> None:
    pages = {1: [{"dataId": "orders.yaml", "group": "orders"}, {"dataId": "ordersXyaml", "group": "other"}],
             2: [{"dataId": "orders.yaml", "group": "orders.rev-1"}]}

    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["pageNo"])
        return httpx.Response(200, json={"totalCount": 3, "pageNumber": page, "pagesAvailable": 2,
                                         "pageItems": pages[page]})

    assert run(nacos(2, answer).list_groups("public", "orders.yaml")) == ["orders", "orders.rev-1"]


def test_the_fake_store_keeps_nacos_semantics() -> None:
    store = FakeConfigStore()
    md5 = run(store.publish(ConfigKey("public", "g", "d"), "ä: 1\n", "yaml"))
    assert md5 == hashlib.md5("ä: 1\n".encode()).hexdigest()
    stored = run(store.read(ConfigKey("", "g", "d")))  # "" and "public": one namespace
    assert stored is not None and stored.md5 == md5 and stored.content == "ä: 1\n"
    store.hand_edit(ConfigKey("", "g", "d"), "ä: 2\n")
    assert run(store.read(ConfigKey("", "g", "d"))).md5 == content_md5("ä: 2\n")
    assert run(store.list_groups("", "d")) == ["g"]
    run(store.delete(ConfigKey("", "g", "d")))
    run(store.delete(ConfigKey("", "g", "d")))
    assert run(store.read(ConfigKey("", "g", "d"))) is None
    with pytest.raises(ConfigRefused):
        run(store.publish(ConfigKey("", "g", "d"), "", "text"))


def test_the_operator_address_policy_applies_before_any_connection() -> None:
    """The store is the registry client underneath: a server the policy refuses (here: its
    name resolves to the metadata address) is never connected to, credentials never sent."""
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"version": "2.3.2"})

    settings = NacosSettings(server_addr="nacos.test:8848", service_name="", username="nacos", password=PASSWORD)
    store = NacosConfigStore(
        settings, transport=httpx.MockTransport(record), resolver=lambda host, port: ["169.254.169.254"],
        connect_check=lambda host, port, address: f"{host} resolves to {address}, link-local")
    with pytest.raises(RegistryMisconfigured) as refused:
        run(store.read(KEY))
    assert "link-local" in str(refused.value) and not requests
