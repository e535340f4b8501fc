"""Write skipping: what we apply compared with what the apiserver returns."""

from __future__ import annotations

import pytest

from apprelease.api.spec import AppRelease
from apprelease.k8s.drift import contains, needs_apply
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
