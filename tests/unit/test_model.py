"""The API model: the example is accepted as written, every invalid case is rejected."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apprelease.api.base import parse_duration
from apprelease.api.spec import AppRelease
from tests.support import DATA, EXAMPLE, invalid_cases, load_yaml

CASES = invalid_cases()


def test_example_is_accepted_as_written() -> None:
    app = AppRelease.model_validate(load_yaml(EXAMPLE))
    assert app.name == "order-service"
    assert app.namespace == "order-proj"
    assert app.spec.replicas == 3
    assert app.spec.strategy.kind == "canary"
    assert [s.set_weight for s in app.spec.strategy.canary.steps] == [20, None, 50, None]
    assert app.spec.strategy.canary.steps[3].pause.seconds == 30
    assert app.spec.registry.nacos.service_name == "order-service"
    assert app.spec.container_ports()[0].container_port == 5000


def test_base_of_invalid_corpus_is_valid() -> None:
    AppRelease.model_validate(load_yaml(DATA / "valid_base.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_invalid_case_rejected_naming_the_field(case: dict) -> None:
    with pytest.raises(ValidationError) as info:
        AppRelease.model_validate(case["body"])
    locations = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(case["field"]) for loc in locations), locations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("2h", 7200)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "5x", "1.5h", "m5", "30 s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_port_shorthand_expands_to_named_http_port() -> None:
    body = load_yaml(EXAMPLE)
    ports = AppRelease.model_validate(body).spec.container_ports()
    assert [(p.name, p.container_port) for p in ports] == [("http", 5000)]


def test_strategy_defaults_to_rolling() -> None:
    body = load_yaml(EXAMPLE)
    del body["spec"]["strategy"]
    assert AppRelease.model_validate(body).spec.strategy.kind == "rolling"
