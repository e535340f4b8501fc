"""Bad input is rejected by the real apiserver at admission (schema + CEL), naming the field."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.plugins.cluster import KubeCluster
from tests.support import DATA, EXAMPLE, invalid_cases, load_yaml

pytestmark = pytest.mark.e2e
CASES = invalid_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_invalid_appreleases_are_rejected(
    case: dict, kube_cluster: KubeCluster, crd: None, namespace: str
) -> None:
    body = case["body"]
    body["metadata"]["namespace"] = namespace
    result = kube_cluster.kubectl(
        "apply",
        "--server-side",
        "--validate=strict",
        "--dry-run=server",
        "-f",
        "-",
        input=yaml.safe_dump(body),
        check=False,
    )
    assert result.returncode != 0, f"{case['name']} was accepted"
    assert case["apiserver"] in result.stderr, result.stderr


def test_example_is_accepted_exactly_as_written(kube_cluster: KubeCluster, crd: None) -> None:
    body = load_yaml(EXAMPLE)
    kube_cluster.kubectl("create", "namespace", "order-proj", check=False)
    result = kube_cluster.kubectl(
        "apply", "--validate=strict", "--dry-run=server", "-f", str(EXAMPLE), check=False
    )
    assert result.returncode == 0, result.stderr
    assert body["metadata"]["name"] in result.stdout


def test_client_side_apply_also_rejects_unknown_fields(
    kube_cluster: KubeCluster, crd: None, namespace: str
) -> None:
    body = load_yaml(EXAMPLE)
    body["metadata"]["namespace"] = namespace
    body["spec"]["replica"] = 3
    result = kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.replica"' in result.stderr


def test_durations_are_accepted_in_seconds_and_with_units(
    kube_cluster: KubeCluster, crd: None, namespace: str
) -> None:
    body = load_yaml(DATA / "valid_base.yaml")
    body["metadata"]["namespace"] = namespace
    body["spec"]["strategy"]["canary"]["steps"] = [
        {"setWeight": 20}, {"pause": {"duration": 30}}, {"setWeight": 50}, {"pause": {"duration": "1h30m"}},
        {"pause": {"duration": 2592000}}]
    body["spec"]["registry"].update({"gateTimeout": 90, "deletionTimeout": "3m", "warmup": 59})
    body["spec"]["progressDeadlineSeconds"] = 60
    result = kube_cluster.kubectl("apply", "--server-side", "--validate=strict", "--dry-run=server",
                                  "-o", "json", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["spec"]
    assert stored["strategy"]["canary"]["steps"][1] == {"pause": {"duration": 30}}
    assert stored["registry"]["gateTimeout"] == 90
