"""Container resources in the model: what it accepts must be what the CRD admits (the CRD's
own rules run in tests/unit/test_fuzz_emulation.py and on the real apiserver in e2e)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from apprelease.api.resources import QUANTITY_PATTERN, Resources, quantity_value
from tests.fuzz import quantity as apimachinery


@pytest.mark.parametrize(
    ("text", "value"),
    [("250m", "0.25"), ("1", "1"), (2, "2"), ("512Mi", str(512 * 2**20)), ("1.5k", "1500"), ("1e3", "1000"),
     ("1E", str(10**18)), (".5", "0.5"), ("1.", "1"), ("1e-99", "1E-9"), ("1.0000000011", "1.000000002"),
     ("9999999999Ei", str(2**63 - 1)), ("1n", "1E-9"), ("0", "0")],
)
def test_quantities_read_as_the_apiserver_keeps_them(text: str | int, value: str) -> None:
    assert quantity_value(text) == Decimal(value)


@pytest.mark.parametrize("text", ["+", "-1", ".", "1e100", "1e2147483648", "1ki", "lots", ""])
def test_what_the_crd_refuses_is_no_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity_value(text)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(QUANTITY_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 32))
def test_every_admitted_quantity_has_the_value_apimachinery_gives_it(text: str) -> None:
    """The model compares requests with limits; a quantity the CRD admits must never fail to
    parse there (finding 24), and must compare as CEL's quantity() does."""
    assert quantity_value(text) == apimachinery.quantity_value(text)


def resources(**spec: dict) -> Resources:
    return Resources.model_validate(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"requests": {"cpu": "1.000000002"}, "limits": {"cpu": "1.0000000011"}},  # equal in nano units
        {"requests": {"example.com/gpu": 2}, "limits": {"example.com/gpu": "2"}},
        {"limits": {"nvidia.com/gpu": 1}},
        {"requests": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}, "limits": {"hugepages-2Mi": 4194304}},
        {"limits": {"hugepages-1Gi": "2Gi", "cpu": "1"}},
    ],
)
def test_resources_kubernetes_accepts(spec: dict) -> None:
    resources(**spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"requests": {"gpu": "1"}}, "keys must be cpu, memory"),
        ({"limits": {"kubernetes.io/foo": "1"}}, "keys must be cpu, memory"),
        ({"limits": {"requests.example.com/x": "1"}}, "keys must be cpu, memory"),
        ({"limits": {"cpu": "-1"}}, "values must be Kubernetes quantities"),
        ({"limits": {"example.com/gpu": "0.5"}}, "take whole numbers"),
        ({"requests": {"example.com/gpu": 1}}, "need a limit, and a request equal to it"),
        ({"requests": {"example.com/gpu": 1}, "limits": {"example.com/gpu": 2}}, "need a limit, and a request equal"),
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}, "each request must be at most its limit"),
        ({"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}}, "whole multiple of their page size"),
        ({"limits": {"hugepages-2Mi": "2.5Mi", "memory": "1Gi"}}, "whole multiple of their page size"),
        ({"limits": {"hugepages-2Mi": "2Mi"}}, "hugepages need a cpu or memory"),
    ],
)
def test_resources_kubernetes_refuses(spec: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        resources(**spec)
