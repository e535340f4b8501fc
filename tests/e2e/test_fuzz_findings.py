"""The findings of the CRD fuzzing that only the operator can answer (docs/fuzzing.md), on the
real apiserver with the operator running: each spec reaches its verdict.

Created as JSON (kubectl create), as the fuzzing does: YAML cannot carry every value here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzz.apiserver import as_json
from tests.plugins.cluster import KubeCluster
from tests.plugins.operator import AppReleases, OperatorProcess

pytestmark = pytest.mark.e2e


def create(cluster: KubeCluster, arl: AppReleases, name: str, **spec: Any) -> None:
    body = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": name, "namespace": arl.namespace},
            "spec": {"image": "registry.local/web:v1", "replicas": 1, "port": 8080, **spec}}
    cluster.kubectl("create", "-n", arl.namespace, "-f", "-", input=as_json(body))


def stalled(arl: AppReleases, name: str, timeout: float = 60) -> dict[str, Any]:
    status = arl.wait(
        name,
        lambda s: any(c["type"] == "Stalled" and c["status"] == "True" for c in s.get("conditions", [])),
        timeout=timeout,
        what="Stalled=True",
    )
    assert status["phase"] == "Degraded"
    return next(c for c in status["conditions"] if c["type"] == "Stalled")


def test_a_character_beyond_the_bmp_reaches_the_pods(kube_cluster: KubeCluster, arl: AppReleases) -> None:
    """Finding 22: an apply body with surrogate-pair escapes was refused by the apiserver's
    YAML reader, so the app was Stalled although its children are valid."""
    create(kube_cluster, arl, "emoji", env=[{"name": "GREETING", "value": "hi \U0001F600"}])
    arl.wait_phase("emoji", "Healthy", timeout=90)
    deployment = arl.kubectl_json("deployment", "emoji")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "GREETING", "value": "hi \U0001F600"} in container["env"]


def test_a_node_port_outside_the_range_is_stalled_naming_the_field(
    kube_cluster: KubeCluster, arl: AppReleases
) -> None:
    """Finding 18: the range is the apiserver's --service-node-port-range, so the CRD cannot
    know it; the real apply is refused (a dry run is not), and that is the verdict."""
    create(kube_cluster, arl, "lowport", service={"type": "NodePort", "nodePort": 80})
    condition = stalled(arl, "lowport")
    assert condition["reason"] == "ChildRejected"
    assert "spec.ports[0].nodePort" in condition["message"]
    assert any(e["reason"] == "ChildRejected" and e["type"] == "Warning" for e in arl.events("lowport"))


@pytest.mark.parametrize(
    ("pod_spec", "named"),
    [({"hostNetwork": "yes"}, "hostNetwork"), ({"terminationGracePeriodSeconds": 1.5}, "float64 to int64")],
    ids=["string-for-a-boolean", "fraction-for-an-integer"],
)
def test_a_wrong_type_in_the_pod_template_is_rejected_at_once(
    kube_cluster: KubeCluster, arl: AppReleases, pod_spec: dict[str, Any], named: str
) -> None:
    """Finding 23: the apiserver answers such an apply with 500 ('failed to create typed
    patch object', 'failed to convert new object'); as ApiUnavailable it was retried for 5
    minutes before the app was Stalled."""
    create(kube_cluster, arl, "typo", podTemplate={"spec": pod_spec})
    condition = stalled(arl, "typo", timeout=30)
    assert condition["reason"] == "ChildRejected"
    assert named in condition["message"]


def test_a_number_past_64_bits_in_the_pod_template_gets_a_verdict(
    kube_cluster: KubeCluster, arl: AppReleases, operator: OperatorProcess
) -> None:
    """Finding 21: the kopf index handler could not pack the stored object (orjson writes
    64-bit integers only), so the app never got a status. The apiserver itself takes such a
    Deployment, reading the number as float64 and storing int64's minimum, which never equals
    what the operator applies: so the verdict is InvalidSpec, naming the field."""
    log_offset = operator.log_path.stat().st_size
    create(kube_cluster, arl, "huge", podTemplate={"spec": {"terminationGracePeriodSeconds": 2**64}})
    condition = stalled(arl, "huge")
    assert condition["reason"] == "InvalidSpec"
    assert "spec.podTemplate.spec.terminationGracePeriodSeconds" in condition["message"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in arl.events("huge"))
    log = operator.log_path.read_text(errors="replace")[log_offset:]
    assert "Traceback" not in log and "Indexer" not in log, log[-3000:]
