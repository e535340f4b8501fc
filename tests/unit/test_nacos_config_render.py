"""The pure pieces of Nacos config: resolved contents, the config hash, the pods' env, parsing."""

from __future__ import annotations

import pytest

from apprelease.api.workload import ConfigFiles
from apprelease.render.nacos_config import (
    GROUP_ENV,
    SPRING_GROUP_ENV,
    ConfigItem,
    nacos_config_hash,
    parse_error,
    pod_env,
    resolved_items,
)


def config(*items: dict, files: dict | None = None) -> ConfigFiles:
    return ConfigFiles.model_validate({"mountPath": "/c", "files": files or {}, "nacos": {
        "serverAddr": "nacos:8848", "items": list(items)}})


def test_from_file_resolves_to_the_config_file_and_changes_the_hash_with_it() -> None:
    one = config({"dataId": "a.yaml", "fromFile": "a.yml"}, files={"a.yml": "x: 1"})
    two = config({"dataId": "a.yaml", "fromFile": "a.yml"}, files={"a.yml": "x: 2"})
    assert resolved_items(one)[0].content == "x: 1"
    assert nacos_config_hash(resolved_items(one)) != nacos_config_hash(resolved_items(two))
    assert nacos_config_hash(resolved_items(None)) is None


def test_one_group_sets_the_spring_group_several_groups_one_variable_each() -> None:
    single = pod_env(config({"dataId": "a", "group": "G", "content": "x"}, {"dataId": "b", "group": "G", "content": "y"}))
    assert [e["name"] for e in single] == [GROUP_ENV, SPRING_GROUP_ENV]
    assert single[0]["value"].startswith("G.rev-")
    several = pod_env(config({"dataId": "a", "group": "order.db", "content": "x"}, {"dataId": "b", "content": "y"}))
    names = [e["name"] for e in several]
    assert names == [f"{GROUP_ENV}_DEFAULT_GROUP", f"{GROUP_ENV}_ORDER_DB"]
    assert SPRING_GROUP_ENV not in names
    assert pod_env(None) == []


@pytest.mark.parametrize(("type_", "content", "bad"), [
    ("yaml", "a: [1", True), ("yaml", "a: 1\n---\nb: 2\n", False),
    ("json", "{\"a\": 1", True), ("json", "{\"a\": 1}", False),
    ("properties", "a=\\u12G4", True), ("properties", "# \\uZZ comment\na=\\u0041\nb=c:\\\\u", False),
    ("text", "anything: [", False),
])
def test_content_must_parse_as_its_type(type_: str, content: str, bad: bool) -> None:
    error = parse_error(ConfigItem(index=2, group="G", data_id="d", type=type_, content=content))
    assert (error is not None) == bad
    if bad:
        assert error is not None and error.startswith("spec.config.nacos.items[2] (d): not " + type_)


def test_an_empty_content_is_a_verdict_nacos_stores_none() -> None:
    error = parse_error(ConfigItem(index=0, group="G", data_id="d", type="text", content=""))
    assert error is not None and "spec.config.nacos.items[0] (d): empty" in error
