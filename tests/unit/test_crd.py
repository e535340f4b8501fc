"""The CRD is generated from the model, structural, and committed up to date."""

from __future__ import annotations

from typing import Any

from apprelease.api.crd import crd_yaml, custom_resource_definition
from tests.support import ROOT

CRD_FILE = ROOT / "crds" / "apprelease.io_appreleases.yaml"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def _schema() -> dict:
    return custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/ is stale: run `apprelease crd -o crds/apprelease.io_appreleases.yaml`"
    )


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_cel_rules_carry_messages() -> None:
    rules = [r for _, node in _walk(_schema()) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 15
    assert all(r.get("message") for r in rules)


def test_api_contract() -> None:
    crd = custom_resource_definition()["spec"]
    assert crd["group"] == "apprelease.io"
    assert crd["names"]["kind"] == "AppRelease"
    assert crd["names"]["plural"] == "appreleases"
    assert crd["names"]["shortNames"] == ["arl"]
    assert crd["scope"] == "Namespaced"
    version = crd["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    for name in ("Image", "Phase", "Ready", "Step", "Weight", "Registered", "Age"):
        assert name in columns


def test_pod_template_preserves_unknown_fields() -> None:
    spec = _schema()["properties"]["spec"]
    assert spec["properties"]["podTemplate"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["port"]["minimum"] == 1
    assert spec["properties"]["port"]["maximum"] == 65535


def test_helm_chart_carries_the_same_crd() -> None:
    # templates/crd.yaml renders it (Helm would never upgrade a chart's crds/).
    chart_copy = ROOT / "deploy" / "helm" / "apprelease" / "files" / CRD_FILE.name
    assert chart_copy.read_text() == crd_yaml(), "run `make crds`"


def test_constraints_next_to_validators_reach_the_schema() -> None:
    """pydantic drops a Field constraint placed after a validator in Annotated: the pattern of
    port names and Ingress paths went missing from the CRD that way."""
    spec = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["ports"]["items"]["properties"]["name"]["pattern"]
    assert spec["properties"]["ingress"]["properties"]["path"]["pattern"] == "^/"
    route = spec["properties"]["strategy"]["properties"]["canary"]["properties"]["gatewayAPI"]
    assert route["properties"]["path"]["pattern"].startswith("^/")


def test_every_duration_is_int_or_string_with_its_rules() -> None:
    """pause.duration, gateTimeout, deletionTimeout and warmup take 30 or "30s" alike; the
    CRD says so in each description, and CEL checks both forms."""
    spec = _schema()["properties"]["spec"]["properties"]
    registry = spec["registry"]["properties"]
    pause = spec["strategy"]["properties"]["canary"]["properties"]["steps"]["items"]["properties"]["pause"]
    durations = {"pause.duration": pause["properties"]["duration"], **{
        f"registry.{name}": registry[name] for name in ("gateTimeout", "deletionTimeout", "warmup")}}
    for where, node in durations.items():
        assert node.get("x-kubernetes-int-or-string") is True, where
        assert "integer seconds" in node["description"] and "30s" in node["description"], where
        rules = " ".join(r["rule"] for r in node["x-kubernetes-validations"])
        assert "type(self) == int" in rules and ".matches(" in rules and "duration(self)" in rules, where
