"""An in-memory ConfigStore for unit tests: what Nacos does with config, without Nacos.

Same semantics as apprelease.registry.config_store.NacosConfigStore: md5 is the hex md5 of the
UTF-8 content, "" and "public" are the same namespace, deleting an absent config is fine, an
empty content is refused. Tests make it fail (`fail_with`), edit a config by hand (`hand_edit`)
and look at what was written (`calls`, `contents`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apprelease.registry.config_store import ConfigKey, ConfigRefused, StoredConfig, content_md5

PUBLIC = "public"


def _normal(key: ConfigKey) -> ConfigKey:
    return ConfigKey("" if key.namespace in ("", PUBLIC) else key.namespace, key.group, key.data_id)


@dataclass
class FakeConfigStore:
    """`fail_with`: raised by every call until set back to None (e.g. RegistryUnavailable(...),
    ConfigRefused(...)); `refuse`: keys whose publish is refused."""

    configs: dict[ConfigKey, tuple[str, str]] = field(default_factory=dict)  # key -> (content, type)
    calls: list[tuple[str, ConfigKey]] = field(default_factory=list)
    fail_with: Exception | None = None
    refuse: set[ConfigKey] = field(default_factory=set)

    async def read(self, key: ConfigKey) -> StoredConfig | None:
        self._call("read", key)
        stored = self.configs.get(_normal(key))
        return None if stored is None else StoredConfig(key, stored[0], content_md5(stored[0]))

    async def publish(self, key: ConfigKey, content: str, type: str) -> str:
        self._call("publish", key)
        if not content or _normal(key) in {_normal(k) for k in self.refuse}:
            raise ConfigRefused(f"publishing {key}: refused (HTTP 400)")
        self.configs[_normal(key)] = (content, type)
        return content_md5(content)

    async def delete(self, key: ConfigKey) -> None:
        self._call("delete", key)
        self.configs.pop(_normal(key), None)

    async def list_groups(self, namespace: str, data_id: str) -> list[str]:
        self._call("list_groups", ConfigKey(namespace, "", data_id))
        space = _normal(ConfigKey(namespace, "", data_id)).namespace
        return sorted(k.group for k in self.configs if k.namespace == space and k.data_id == data_id)

    # --- for tests ---------------------------------------------------------------------------

    def hand_edit(self, key: ConfigKey, content: str) -> None:
        """Someone edits the config in the Nacos console (no call recorded)."""
        type_ = self.configs.get(_normal(key), ("", "text"))[1]
        self.configs[_normal(key)] = (content, type_)

    def contents(self) -> dict[ConfigKey, str]:
        return {key: content for key, (content, _) in self.configs.items()}

    def _call(self, operation: str, key: ConfigKey) -> None:
        self.calls.append((operation, key))
        if self.fail_with is not None:
            raise self.fail_with
