"""trafficRouting gatewayAPI on the real apiserver with the Gateway API CRDs installed from the
sigs.k8s.io/gateway-api Go module: the HTTPRoute's backendRefs carry the weight of every
step, a header rule sends chosen requests to the canary while one runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.cluster import wait_for
from tests.plugins.operator import AppReleases
from tests.plugins.routing import Routed, wait_until_routed_only_once_ready

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
ROUTE = {"httpRoute": "shop-route", "parentRefs": [{"name": "gateway", "namespace": "infra"}],
         "hostnames": ["shop.example.com"], "canaryHeader": {"name": "X-Canary", "value": "always"}}


def route(arl: AppReleases) -> dict[str, Any]:
    return arl.kubectl_json("httproutes.gateway.networking.k8s.io", "shop-route")


def weights(arl: AppReleases) -> dict[str, int]:
    return {b["name"]: b.get("weight", 1) for b in route(arl)["spec"]["rules"][-1]["backendRefs"]}


def routed_to_canary(arl: AppReleases) -> Routed:
    rules = route(arl)["spec"]["rules"]
    canary = {b["name"]: b.get("weight", 1) for b in rules[-1]["backendRefs"]}.get("shop-canary")
    header = any("shop-canary" in {b["name"] for b in r["backendRefs"]} for r in rules[:-1])
    return Routed(canary, header)


def test_gateway_api_weights_at_every_step(arl: AppReleases) -> None:
    arl.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "shop"},
        "spec": {"image": "registry.local/shop:v1", "replicas": 4, "port": 8080,
                 "strategy": {"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": ROUTE, "steps": STEPS}}},
    })
    arl.wait_phase("shop", "Healthy", timeout=60)
    assert weights(arl) == {"shop-stable": 100}
    owner = route(arl)["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "AppRelease" and owner["name"] == "shop"

    arl.patch("shop", {"spec": {"image": "registry.local/shop:v2"}})
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=1)
    assert weights(arl) == {"shop-stable": 80, "shop-canary": 20}
    header_rule = route(arl)["spec"]["rules"][0]
    assert header_rule["matches"][0]["headers"][0]["name"] == "X-Canary"
    assert [b["name"] for b in header_rule["backendRefs"]] == ["shop-canary"]

    arl.cli("promote", "shop")
    arl.wait_phase("shop", "Paused", timeout=60, currentStepIndex=3)
    assert weights(arl) == {"shop-stable": 40, "shop-canary": 60}

    arl.cli("promote", "shop")
    arl.wait_phase("shop", "Healthy", timeout=90, stableRevision=2)
    wait_for(lambda: weights(arl) == {"shop-stable": 100} and len(route(arl)["spec"]["rules"]) == 1,
             30, 0.3, "the route back to stable only")
    services = {s["metadata"]["name"] for s in arl.kubectl_json("services")["items"]}
    assert {"shop", "shop-stable", "shop-canary"} <= services


def test_no_weight_and_no_header_match_before_a_canary_pod_is_ready(arl: AppReleases) -> None:
    """Weight follows readiness: while the canary's pods start (here 12 s), the route sends
    them nothing, by weight or by header; the step's share appears once one is Ready."""
    arl.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "shop"},
        "spec": {"image": "registry.local/shop:v1", "replicas": 4, "port": 8080,
                 "strategy": {"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": ROUTE, "steps": STEPS}}},
    })
    arl.wait_phase("shop", "Healthy", timeout=60)
    arl.patch("shop", {"spec": {
        "image": "registry.local/shop:v2",
        "podTemplate": {"metadata": {"labels": {"e2e.apprelease.io/behavior": "slow-ready"},
                                     "annotations": {"e2e.apprelease.io/ready-after": "12s"}}},
    }})
    wait_until_routed_only_once_ready(arl, "shop", lambda: routed_to_canary(arl), Routed(20, header=True))
    status = arl.wait_phase("shop", "Paused", timeout=30, currentStepIndex=1)
    assert status["setWeight"] == 20 and status["actualWeight"] == 20
    assert weights(arl) == {"shop-stable": 80, "shop-canary": 20}
