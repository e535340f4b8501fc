"""Nacos config released with the pods: each revision's content, its copy group, the pod env. Pure.

A revision's dataIds are published to ``<group>.rev-<confighash>`` (same dataId, same
namespace) before any of its pods exists, and its pods are pointed at that group by env: a pod
can only ever read its own revision's content, from its first read on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

import yaml

from ..api.workload import ConfigFiles
from .hashing import content_hash

# Read by the app (extension-configs: group: ${APPRELEASE_NACOS_CONFIG_GROUP}); the second is
# Spring Cloud Alibaba's relaxed binding of spring.cloud.nacos.config.group.
GROUP_ENV = "APPRELEASE_NACOS_CONFIG_GROUP"
SPRING_GROUP_ENV = "SPRING_CLOUD_NACOS_CONFIG_GROUP"
COPY_MARK = ".rev-"
DRIFT_MARK = ".drift-"


@dataclass(frozen=True)
class ConfigItem:
    """One dataId of a revision with its content resolved (inline or from spec.config.files)."""

    index: int  # in spec.config.nacos.items, for messages
    group: str
    data_id: str
    type: str
    content: str

    @property
    def md5(self) -> str:
        return content_md5(self.content)


def content_md5(content: str) -> str:
    """What Nacos reports as a config's md5: of the UTF-8 content, in hex."""
    return hashlib.md5(content.encode(), usedforsecurity=False).hexdigest()


def resolved_items(config: ConfigFiles | None) -> tuple[ConfigItem, ...]:
    if config is None or config.nacos is None:
        return ()
    return tuple(
        ConfigItem(index=i, group=item.group, data_id=item.data_id, type=item.type,
                   content=item.content if item.content is not None else config.files.get(item.from_file or "", ""))
        for i, item in enumerate(config.nacos.items)
    )


def nacos_config_hash(items: tuple[ConfigItem, ...]) -> str | None:
    """Names a revision's copies: the same content (say, an image-only change) shares them."""
    if not items:
        return None
    return content_hash([[i.group, i.data_id, i.type, i.content] for i in items])


def copy_group(group: str, config_hash: str) -> str:
    return f"{group}{COPY_MARK}{config_hash}"


def drift_group(group: str, md5: str) -> str:
    return f"{group}{DRIFT_MARK}{md5[:8]}"


def group_env_name(group: str) -> str:
    return f"{GROUP_ENV}_{re.sub(r'[^A-Z0-9]', '_', group.upper())}"


def pod_env(config: ConfigFiles | None) -> list[dict[str, str]]:
    """The env that points a revision's pods at its copies."""
    items = resolved_items(config)
    digest = nacos_config_hash(items)
    if digest is None:
        return []
    groups = sorted({i.group for i in items})
    if len(groups) == 1:
        copy = copy_group(groups[0], digest)
        return [{"name": GROUP_ENV, "value": copy}, {"name": SPRING_GROUP_ENV, "value": copy}]
    return [{"name": group_env_name(g), "value": copy_group(g, digest)} for g in groups]


@functools.lru_cache(maxsize=512)
def parse_error(item: ConfigItem) -> str | None:
    """Why the content is not what its type says, or None. Never published when it is not.
    (Cached: each pass checks the revisions it rolls out, and a content does not change.)"""
    if not item.content:  # a file of spec.config.files may be empty; Nacos stores no empty config
        return f"spec.config.nacos.items[{item.index}] ({item.data_id}): empty: Nacos does not store an empty config"
    try:
        if item.type == "yaml":
            list(yaml.safe_load_all(item.content))
        elif item.type == "json":
            json.loads(item.content)
        elif item.type == "properties":
            _check_properties(item.content)
    except (yaml.YAMLError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"spec.config.nacos.items[{item.index}] ({item.data_id}): not {item.type}: {first_line}"
    return None


_UNICODE_ESCAPE = re.compile(r"\\u(?![0-9a-fA-F]{4})")


def _check_properties(content: str) -> None:
    """java.util.Properties accepts nearly anything; it throws on a malformed \\uXXXX escape."""
    for number, line in enumerate(content.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith(("#", "!")):
            continue
        if _UNICODE_ESCAPE.search(line.replace("\\\\", "")):
            raise ValueError(f"line {number}: malformed \\uxxxx escape")
