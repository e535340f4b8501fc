"""trafficRouting gatewayAPI: the HTTPRoute the operator owns carries the canary's weight in
its backendRefs, and an optional header match sends chosen requests to the canary."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from apprelease.render import render_children

from .sim import Sim, make_app

ROUTE = {"httpRoute": "shop-route", "parentRefs": [{"name": "gw", "namespace": "infra"}],
         "hostnames": ["shop.example.com"], "canaryHeader": {"name": "X-Canary", "value": "yes"}}
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]


def route_of(sim: Sim) -> dict[str, Any]:
    assert sim.last is not None
    return next(o for o in render_children(sim.app, sim.last.desired) if o["kind"] == "HTTPRoute")


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}


def test_weights_follow_every_step_and_the_header_rule_exists_only_during_a_canary() -> None:
    from apprelease.rollout import requests

    sim = Sim(make_app({"strategy": {"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": ROUTE,
                                                "steps": STEPS}}}))
    sim.settle()
    route = route_of(sim)
    assert weights(route) == {"shop-stable": 100} and len(route["spec"]["rules"]) == 1
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["shop.example.com"]
    sim.edit(image="registry/shop:v2")
    sim.settle()
    route = route_of(sim)
    assert weights(route) == {"shop-stable": 80, "shop-canary": 20}
    header_rule = route["spec"]["rules"][0]
    assert header_rule["matches"][0]["headers"] == [{"type": "Exact", "name": "X-Canary", "value": "yes"}]
    assert [b["name"] for b in header_rule["backendRefs"]] == ["shop-canary"]
    sim.annotate(requests.PROMOTE, "step:1")
    sim.settle()
    assert weights(route_of(sim)) == {"shop-stable": 40, "shop-canary": 60}
    sim.annotate(requests.PROMOTE, "full:1")
    sim.settle()
    assert weights(route_of(sim)) == {"shop-stable": 100}
    services = {o["metadata"]["name"] for o in render_children(sim.app, sim.last.desired) if o["kind"] == "Service"}
    assert {"shop", "shop-stable", "shop-canary"} <= services


@pytest.mark.parametrize("strategy, message", [
    ({"canary": {"trafficRouting": "gatewayAPI"}}, "needs gatewayAPI"),
    ({"canary": {}, "blueGreen": {}}, "only one of"),
    ({"blueGreen": {"autoPromotionSeconds": -1}}, "greater than or equal to 0"),
    ({"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": {**ROUTE, "httpRoute": "Not_A_Name"}}}, "httpRoute"),
])
def test_bad_input_is_refused_naming_the_field(strategy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_app({"strategy": strategy})


def test_no_weight_and_no_header_rule_until_a_canary_pod_is_ready() -> None:
    """Weight follows readiness: a share sent to a canary Service without ready endpoints
    fails requests, for as long as the pods take (or the whole progress deadline)."""
    sim = Sim(make_app({"strategy": {"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": ROUTE,
                                                "steps": STEPS}}}))
    sim.settle()
    sim.pods_ready["canary"] = False
    sim.edit(image="registry/shop:v2")
    sim.settle()
    route = route_of(sim)
    assert weights(route) == {"shop-stable": 100, "shop-canary": 0}
    assert len(route["spec"]["rules"]) == 1  # no header rule to pods that cannot answer
    assert sim.status.set_weight == 20 and sim.status.actual_weight == 0
    sim.pods_ready["canary"] = True
    sim.settle()
    route = route_of(sim)
    assert weights(route) == {"shop-stable": 80, "shop-canary": 20}
    assert len(route["spec"]["rules"]) == 2 and sim.status.actual_weight == 20


def test_an_aborted_canary_keeps_no_header_rule() -> None:
    from apprelease.rollout import requests

    sim = Sim(make_app({"strategy": {"canary": {"trafficRouting": "gatewayAPI", "gatewayAPI": ROUTE,
                                                "steps": STEPS}}}))
    sim.settle()
    sim.edit(image="registry/shop:v2")
    sim.settle()
    sim.annotate(requests.ABORT, "a")
    sim.settle()
    route = route_of(sim)
    assert sim.status.aborted and len(route["spec"]["rules"]) == 1
    assert weights(route).get("shop-canary", 0) == 0
