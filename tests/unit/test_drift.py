"""Write skipping: what we apply compared with what the apiserver returns."""

from __future__ import annotations

import pytest

from apprelease.api.spec import AppRelease
from apprelease.k8s.drift import contains, drifted_fields, needs_apply
from apprelease.render.service import render_service


@pytest.mark.parametrize(
    ("desired", "live"),
    [("1000m", "1"), (1, "1"), ("0.5", "500m"), ("1.0000000011", "1001m"), ("1.0005", "1001m"),
     ("9999999999Ei", "9223372036854775807"), ("1e3", "1k"), ("1Gi", "1Gi"), ("1e99", "1e99"),
     ("99999999999999999999999999999999e99", "99999999999999999999999999999999e99")],
)
def test_quantities_the_apiserver_canonicalised_are_no_drift(desired: object, live: object) -> None:
    want = {"resources": {"limits": {"cpu": desired}}}
    assert contains({"resources": {"limits": {"cpu": live}}}, want)


@pytest.mark.parametrize(("desired", "live"), [("1", "2"), ("1Gi", "1G"), ("1.002", "1001m")])
def test_different_quantities_are_drift(desired: str, live: str) -> None:
    assert not contains({"cpu": live}, {"cpu": desired})


def test_a_service_selector_with_a_key_left_over_is_drift() -> None:
    # A blue-green app's active Service selects one revision; changed to canary (or rolling),
    # the Service must select every pod of the app again, or the canary gets no traffic and
    # the next revision's pods none at all.
    app = AppRelease.model_validate({"metadata": {"name": "shop", "namespace": "ns", "uid": "u"},
                                     "spec": {"image": "shop:v1", "port": 8080}})
    blue_green = render_service(app, 1)
    live = {**blue_green, "spec": {**blue_green["spec"], "clusterIP": "10.96.0.7"}}
    assert needs_apply(render_service(app, None), live)
    assert not needs_apply(blue_green, live)  # what others add (clusterIP) is still no drift


def owning_image(manager: str, *, subresource: str | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"manager": manager, "operation": "Update", "time": "2026-01-01T00:05:00Z",
                                "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                                    'k:{"name":"shop"}': {".": {}, "f:image": {}}}}}}}}
    if subresource:
        entry["subresource"] = subresource
    return entry


def deployment_with(image: str, *managed: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"managedFields": list(managed)},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s"},
                                                          {"name": "shop", "image": image}]}}}}


WANT = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s"},
                                                      {"name": "shop", "image": "shop:v1"}]}}}}


def test_another_manager_owning_a_field_we_apply_with_another_value_is_the_drift() -> None:
    # Read off the live object (its managedFields), so it holds after an operator restart.
    live = deployment_with("shop:hotfix", {"manager": "apprelease", "operation": "Apply"}, owning_image("rancher"))
    assert drifted_fields(live, WANT, "apprelease") == {"rancher": [".spec.template.spec.containers[1].image"]}


@pytest.mark.parametrize("live", [
    deployment_with("shop:v1", owning_image("rancher")),  # theirs too, but the same value
    deployment_with("shop:hotfix", owning_image("apprelease")),  # ours
    deployment_with("shop:hotfix", owning_image("kube-controller-manager")),  # a controller's job
    deployment_with("shop:hotfix", owning_image("kubectl", subresource="status")),
    deployment_with("shop:hotfix", {"manager": "kubectl-annotate", "operation": "Update",
                                    "fieldsV1": {"f:metadata": {"f:annotations": {"f:x": {}}}}}),  # not ours
])
def test_no_other_manager_owning_a_differing_field_of_ours_is_no_drift(live: dict[str, object]) -> None:
    assert drifted_fields(live, WANT, "apprelease") == {}
