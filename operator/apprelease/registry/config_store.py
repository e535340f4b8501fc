"""Nacos configuration (dataIds) as the operator reads and writes it: the ConfigStore interface
and its Nacos implementation (issue 20, docs/nacos-config.md).

Which API. The same detection as the registry client (registry/nacos.py): Nacos 2.x gets the v1
Open API, 3.x its v3 admin API (v1/v2 are off there by default). Verified on 2.3.2 and 3.1.0
(tests/nacos/test_config_store.py).

| operation   | Nacos 2.x                                   | Nacos 3.x                                   |
| ----------- | ------------------------------------------- | ------------------------------------------- |
| read        | GET /v1/cs/configs?show=all (JSON with md5) | GET /v3/admin/cs/config (404: absent)       |
| publish     | POST /v1/cs/configs (form)                  | POST /v3/admin/cs/config (form)             |
| delete      | DELETE /v1/cs/configs (absent: still ok)    | DELETE /v3/admin/cs/config (absent: ok)     |
| list groups | GET /v1/cs/configs?search=accurate&group=   | GET /v3/admin/cs/config/list?search=accurate|

Namespaces. The public namespace is "" to Nacos 2.x, which stores a `tenant=public` as another
namespace of that name; 3.x calls it "public" and maps "" to it. So "" and "public" both mean
the public namespace here, on both.

Everything else - the servers and failing over, the login and its token, TLS, the operator's
address policy (SSRF), the deadline around each whole call - is the registry client's
(`NacosRegistry.exchange`/`one_call`); the calls run in a worker thread so the caller's event
loop never blocks.

Errors: RegistryUnavailable (or a subclass) when Nacos cannot be used now - unreachable, too
slow, 5xx, an answer that is not Nacos', credentials refused (401/403: RegistryRefused, as for
the registry); ConfigRefused when Nacos refused this config (4xx: a name it does not accept, a
content it does not store). Messages name the server and the dataId, never a credential.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from apprelease.registry.base import RegistryBadResponse, RegistryRefused, RegistryUnavailable
from apprelease.registry.nacos import NacosApi, NacosRegistry, NacosSettings

__all__ = [
    "ConfigKey",
    "ConfigRefused",
    "ConfigStore",
    "NacosConfigStore",
    "StoredConfig",
    "content_md5",
]

PUBLIC_NAMESPACE = "public"
# Config listings carry every row's content on 2.x: pages of this many rows.
LIST_PAGE_SIZE = 100
# A refusal's own words from Nacos (its parameter checks answer in plain text), at most this long.
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class ConfigKey:
    namespace: str  # "" = public
    group: str
    data_id: str

    def __str__(self) -> str:
        namespace = self.namespace or PUBLIC_NAMESPACE
        return f"dataId {self.data_id} group {self.group} (namespace {namespace})"


@dataclass(frozen=True)
class StoredConfig:
    key: ConfigKey
    content: str
    md5: str  # Nacos' md5 of the content (hex, as Nacos reports it)


class ConfigRefused(Exception):
    """Nacos refused this config (4xx): a name or content it does not accept. Does not heal by
    retrying the same thing. ``reason`` says what and why, never a credential."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigStore(Protocol):
    async def read(self, key: ConfigKey) -> StoredConfig | None: ...  # None: not there

    async def publish(self, key: ConfigKey, content: str, type: str) -> str: ...  # md5 read back

    async def delete(self, key: ConfigKey) -> None: ...  # absent is fine

    async def list_groups(self, namespace: str, data_id: str) -> list[str]: ...  # GC of .rev-* copies


def content_md5(content: str) -> str:
    """The md5 Nacos reports for a content: hex md5 of its UTF-8 bytes."""
    return hashlib.md5(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _ConfigPaths:
    config: str
    listing: str


PATHS = {
    NacosApi.V1: _ConfigPaths(config="/v1/cs/configs", listing="/v1/cs/configs"),
    NacosApi.V3: _ConfigPaths(config="/v3/admin/cs/config", listing="/v3/admin/cs/config/list"),
}


class NacosConfigStore:
    """ConfigStore on one Nacos server (or cluster). `settings` are the registry client's
    (its service/group/cluster are not used: each call names its own namespace, group and
    dataId); the keyword arguments are NacosRegistry's (the operator passes its address
    policy as `connect_check`). close() when done."""

    def __init__(self, settings: NacosSettings, **client_options: Any) -> None:
        self._client = NacosRegistry(settings, **client_options)
        self._where = ", ".join(settings.base_urls)

    # --- ConfigStore --------------------------------------------------------------------

    async def read(self, key: ConfigKey) -> StoredConfig | None:
        return await asyncio.to_thread(self._bounded, self._read, key)

    async def publish(self, key: ConfigKey, content: str, type: str) -> str:
        return await asyncio.to_thread(self._bounded, self._publish, key, content, type)

    async def delete(self, key: ConfigKey) -> None:
        await asyncio.to_thread(self._bounded, self._delete, key)

    async def list_groups(self, namespace: str, data_id: str) -> list[str]:
        return await asyncio.to_thread(self._bounded, self._list_groups, namespace, data_id)

    def close(self) -> None:
        self._client.close()

    # --- one call each, in a worker thread ------------------------------------------------

    def _bounded(self, operation: Any, *args: Any) -> Any:
        with self._client.one_call():  # the whole operation (login, write, read back) in one deadline
            return operation(*args)

    def _read(self, key: ConfigKey) -> StoredConfig | None:
        what = f"reading {key}"
        v3 = self._api() is NacosApi.V3
        params = {**self._key_params(key), **({} if v3 else {"show": "all"})}
        response = self._client.exchange("GET", self._paths().config, params=params, what=what)
        if response.status_code == 404:
            return None
        body = self._answer(response, what)
        if v3:
            body = body.get("data") if isinstance(body, dict) else None
        if body in (None, ""):  # 2.x answers an absent config with an empty 200 under show=all
            return None
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise RegistryBadResponse(f"Nacos at {self._where}: {what}: no content in the answer")
        content = body["content"]
        md5 = body.get("md5")
        return StoredConfig(key, content, md5 if isinstance(md5, str) and md5 else content_md5(content))

    def _publish(self, key: ConfigKey, content: str, type: str) -> str:
        what = f"publishing {key}"
        if not content:
            # 2.x answers 500 "content is blank", 3.x 400: a refusal either way, never retried.
            raise ConfigRefused(f"Nacos at {self._where}: {what}: Nacos does not store an empty content")
        form = {**self._key_params(key), "content": content, "type": type}
        response = self._client.exchange("POST", self._paths().config, form=form, what=what)
        body = self._answer(response, what)
        done = body.get("data") if isinstance(body, dict) else body  # 2.x: true, 3.x: {"data": true}
        if done not in (True, "true"):
            raise RegistryBadResponse(f"Nacos at {self._where}: {what}: not acknowledged")
        stored = self._read(key)
        if stored is None:
            raise RegistryUnavailable(f"Nacos at {self._where}: {what}: published, but not there when read back")
        return stored.md5

    def _delete(self, key: ConfigKey) -> None:
        what = f"deleting {key}"
        response = self._client.exchange("DELETE", self._paths().config, params=self._key_params(key), what=what)
        if response.status_code != 404:
            self._answer(response, what)

    def _list_groups(self, namespace: str, data_id: str) -> list[str]:
        what = f"listing the groups of dataId {data_id} (namespace {namespace or PUBLIC_NAMESPACE})"
        v3 = self._api() is NacosApi.V3
        key = ConfigKey(namespace, "", data_id)
        groups: set[str] = set()
        page = 1
        while True:
            params = {**self._key_params(key), "search": "accurate", "pageNo": str(page),
                      "pageSize": str(LIST_PAGE_SIZE)}
            body = self._answer(self._client.exchange("GET", self._paths().listing, params=params, what=what), what)
            data = body.get("data") if v3 and isinstance(body, dict) else body
            rows = data.get("pageItems") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise RegistryBadResponse(f"Nacos at {self._where}: {what}: not a page of configs")
            for row in rows:
                group = row.get("groupName" if v3 else "group") if isinstance(row, dict) else None
                # The exact dataId only: a name with "_" could match others where Nacos uses LIKE.
                if isinstance(group, str) and row.get("dataId") == data_id:
                    groups.add(group)
            pages = data.get("pagesAvailable") if isinstance(data, dict) else None
            if not rows or not isinstance(pages, int) or page >= pages:
                return sorted(groups)
            page += 1

    # --- HTTP ---------------------------------------------------------------------------

    def _api(self) -> NacosApi:
        return self._client.api

    def _paths(self) -> _ConfigPaths:
        return PATHS[self._api()]

    def _key_params(self, key: ConfigKey) -> dict[str, str]:
        public = key.namespace in ("", PUBLIC_NAMESPACE)
        if self._api() is NacosApi.V3:
            return {"namespaceId": PUBLIC_NAMESPACE if public else key.namespace, "groupName": key.group,
                    "dataId": key.data_id}
        return {"tenant": "" if public else key.namespace, "group": key.group, "dataId": key.data_id}

    def _answer(self, response: httpx.Response, what: str) -> Any:
        """The parsed answer of a successful exchange; the error that says why otherwise."""
        status = response.status_code
        where = f"Nacos at {self._where}: {what}"
        if status in (401, 403):
            # As for the registry: the credentials or their permissions, refused after a fresh login.
            raise RegistryRefused(f"{where}: credentials refused (HTTP {status}{self._client.detail(response)})")
        if 400 <= status < 500:
            raise ConfigRefused(f"{where}: refused (HTTP {status}{self._reason(response)})")
        if status >= 300:
            raise RegistryUnavailable(f"{where}: HTTP {status}{self._client.detail(response)}")
        if "json" not in response.headers.get("content-type", ""):
            return response.text
        try:
            body = response.json()
        except ValueError:
            if not response.content.strip():  # 2.x: an empty answer labelled JSON (absent config)
                return ""
            if response.text.strip() in ("true", "false"):
                return response.text.strip()
            raise RegistryBadResponse(f"{where}: an answer that is not JSON") from None
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and code != 0 and "data" in body:  # a v3 Result that failed
            raise ConfigRefused(f"{where}: refused (code {code}{self._client.detail(response)})")
        return body

    def _reason(self, response: httpx.Response) -> str:
        """Nacos' own words for a refusal: its JSON message, or the one line its parameter
        checks answer in plain text ("Param 'dataId' is illegal, ..."); never an HTML page."""
        detail = self._client.detail(response)
        if detail:
            return detail
        text = response.content[:MAX_REASON_CHARS * 2].decode("utf-8", "replace").strip()
        first = text.splitlines()[0] if text else ""
        if not first or "<" in first or len(first) > MAX_REASON_CHARS:
            return ""
        return f": {self._client.redact(''.join(ch if ch.isprintable() else '?' for ch in first))}"
