"""The admission emulation and the strategies behind the CRD fuzzing, checked themselves:
what the real apiserver rejects (tests/data/invalid_appreleases.yaml, asserted against the
apiserver in tests/e2e/test_admission.py) the emulation rejects too, and what it admits
(the example, the valid base) it admits."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz import admission, cel_rules, quantity, rule_shapes, strategies
from tests.support import DATA, EXAMPLE, invalid_cases, load_yaml

CASES = invalid_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_emulation_rejects_what_the_apiserver_rejects(case: dict) -> None:
    assert not admission.admit(case["body"]).admitted


@pytest.mark.parametrize("path", [EXAMPLE, DATA / "valid_base.yaml"], ids=["example", "valid-base"])
def test_emulation_admits_valid_appreleases(path) -> None:
    result = admission.admit(load_yaml(path))
    assert result.admitted, result.errors


def test_defaults_are_applied_before_rules() -> None:
    body = load_yaml(DATA / "valid_base.yaml")
    body["spec"]["service"] = {"nodePort": 30080}  # type defaults to ClusterIP: the rule fails
    result = admission.admit(body)
    assert result.body["spec"]["service"]["type"] == "ClusterIP"
    assert any("nodePort needs type" in e for e in result.errors), result.errors


def test_every_rule_of_the_crd_compiles_with_the_kubernetes_functions() -> None:
    rules = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            rules.extend(v["rule"] for v in node.get("x-kubernetes-validations") or [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(admission.crd_schema())
    assert len(rules) > 10
    for rule in rules:
        cel_rules.compile_rule(rule)


@pytest.mark.parametrize(("text", "valid"), [
    ("250m", True), ("512Mi", True), ("1e3", True), ("1E", True), ("+", True), ("-", True),
    (".", True), ("1.", True), ("e3", True), ("", False), ("1e", False), ("1Ki5", False),
    ("1.5.5", False), (" 1", False), ("1e-3k", False), ("0x10", False),
])
def test_quantity_parsing_follows_apimachinery(text: str, valid: bool) -> None:
    assert quantity.is_quantity(text) is valid


def test_go_patterns_are_read_with_go_meanings() -> None:
    assert rule_shapes.go_regex_for_python(r"^\S+$") == "^[^\\t\\n\\f\\r ]+$"
    assert rule_shapes.go_regex_for_python(r"^[^@\s]+$") == "^[^@\\t\\n\\f\\r ]+$"
    # RE2: a no-break space is not \s, so the apiserver admits it where \S+ is required.
    assert admission._regex(r"^\S+$").search("a\u00a0b")


def test_generated_specs_are_mostly_admitted() -> None:
    # The strategies aim at admitted specs (rule shapes, local filters): what admission then
    # refuses is what no local filter sees (list-map duplicates, object size). Below 90 % the
    # generator no longer follows the CRD.
    verdicts: list[bool] = []

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(spec=strategies.appreleases().map(strategies.Generated))
    def draw(spec: strategies.Generated) -> None:
        verdicts.append(admission.admit(spec.body).admitted)

    draw()
    rate = sum(verdicts) / len(verdicts)
    assert rate >= 0.9, f"only {rate:.0%} of {len(verdicts)} generated specs were admitted"


def test_rules_and_field_paths_name_declared_fields() -> None:
    # The apiserver refuses a CRD whose rule or fieldPath names a field it does not declare;
    # the emulation evaluates rules without types, so it would not notice by itself.
    problems = admission.unresolved_references(admission.crd_schema())
    assert not problems, "\n".join(problems)


def test_object_size_is_counted_as_the_apiserver_stores_it() -> None:
    # Go's encoding/json writes <, > and & as \u003c: 75,000 of them added 375 kB and etcd
    # refused an object the emulation had admitted ("request is too large").
    body = load_yaml(DATA / "valid_base.yaml")
    body["spec"]["livenessProbe"] = {"exec": {"command": ["<" * 200_000, "&" * 50_000]}}
    assert len(str(body)) < admission.MAX_OBJECT_BYTES  # under the limit as Python counts it
    result = admission.admit(body)
    assert not result.admitted and any("etcd's request size limit" in e for e in result.errors), result.errors
