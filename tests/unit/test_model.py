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


# Durations: integer seconds or a duration string, everywhere (pause: {duration: 30} as in
# Argo Rollouts). ------------------------------------------------------------------------


def _with(patch: dict) -> AppRelease:
    from tests.support import merge_patch

    return AppRelease.model_validate(merge_patch(load_yaml(DATA / "valid_base.yaml"), patch))


@pytest.mark.parametrize(("written", "seconds"), [(30, 30), ("30s", 30), ("5m", 300), (0, 0), ("1h", 3600)])
def test_pause_duration_takes_seconds_or_a_duration_string(written: int | str, seconds: float) -> None:
    app = _with({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": written}}]}}}})
    assert app.spec.strategy.canary.steps[1].pause.seconds == seconds


def test_registry_durations_take_seconds_or_a_duration_string() -> None:
    registry = _with({"spec": {"registry": {"gateTimeout": 90, "deletionTimeout": "3m", "warmup": 45}}}).spec.registry
    assert (registry.gate_timeout_seconds, registry.deletion_timeout_seconds, registry.warmup_seconds) == (90, 180, 45)


def test_a_boolean_is_not_a_duration() -> None:
    with pytest.raises(ValidationError):
        _with({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": True}}]}}}})


@pytest.mark.parametrize(("written", "shown"), [(30, "30s"), ("1h30m", "1h30m"), (0, "0s")])
def test_durations_are_shown_with_their_unit(written: int | str, shown: str) -> None:
    from apprelease.api.base import duration_text

    assert duration_text(written) == shown
