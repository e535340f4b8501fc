"""The real Nacos Java client (nacos-client, selectOneHealthyInstance) as a consumer sees what
Nacos lists: only healthy and enabled instances, a disabled one stops being picked after
Nacos' push latency, and instance weights set the share of picks (weighted random)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.plugins.java_consumer import JavaConsumer
from tests.plugins.nacos import AppInstanceSimulator, NacosEndpoint, wait_until

pytestmark = pytest.mark.nacos

STABLE = "stable"
CANARY = "canary"
TRACK_KEY = "apprelease.io/track"
REVISION_KEY = "apprelease.io/revision"
PORT = 8080
# Picks per measurement (the bar: >= 5,000) and the tolerance of a share.
SHARE_PICKS = 6_000
SHARE_TOLERANCE = 0.03
# How long after an enable/disable the consumer must have followed (push latency bound).
FOLLOW_SECONDS = 10.0


def write_override(
    endpoint: NacosEndpoint,
    service_name: str,
    ip: str,
    port: int,
    *,
    enabled: bool = True,
    weight: float = 1.0,
    metadata: dict[str, str] | None = None,
) -> None:
    """What an operator does to an app's instance: one instance update, which writes enabled,
    weight and metadata together (a value left out is reset, not kept)."""
    v3 = endpoint.major >= 3
    with httpx.Client(base_url=endpoint.base_url, timeout=10.0) as http:
        headers = {}
        if endpoint.username:
            login = "/v3/auth/user/login" if v3 else "/v1/auth/login"
            token = http.post(login, data={"username": endpoint.username, "password": endpoint.password})
            token.raise_for_status()
            headers["Authorization"] = f"Bearer {token.json()['accessToken']}"
        params: dict[str, Any] = {
            "serviceName": service_name,
            "groupName": "DEFAULT_GROUP",
            "namespaceId": "public",
            "clusterName": "DEFAULT",
            "ip": ip,
            "port": str(port),
            "ephemeral": "true",
            "enabled": "true" if enabled else "false",
            "weight": repr(weight),
        }
        if metadata is not None:
            params["metadata"] = json.dumps(metadata)
        path = "/v3/admin/ns/instance" if v3 else "/v1/ns/instance"
        answer = http.put(path, params=params, headers=headers)
        answer.raise_for_status()


def _register(
    start_app: Callable[..., AppInstanceSimulator],
    endpoint: NacosEndpoint,
    service_name: str,
    ips: list[str],
    track: str = STABLE,
) -> list[str]:
    for ip in ips:
        start_app(
            endpoint, service_name=service_name, ip=ip, port=PORT,
            metadata={TRACK_KEY: track, REVISION_KEY: "1"},
        )
    with endpoint.registry(service_name) as registry:
        wait_until(
            lambda: {i.ip for i in registry.list_instances()} >= set(ips),
            message=f"{ips} registered",
        )
    return [f"{ip}:{PORT}" for ip in ips]


def test_consumer_picks_only_healthy_and_enabled_instances(
    nacos_endpoint: NacosEndpoint,
    app_instances: Callable[..., AppInstanceSimulator],
    java_consumer: Callable[..., JavaConsumer],
    service_name: str,
) -> None:
    healthy = _register(app_instances, nacos_endpoint, service_name, ["10.61.0.1", "10.61.0.2"])
    disabled = _register(app_instances, nacos_endpoint, service_name, ["10.61.0.3"])
    write_override(nacos_endpoint, service_name, "10.61.0.3", PORT, enabled=False)
    # An HTTP-registered app whose heartbeats stop: Nacos marks it unhealthy.
    silent = app_instances(
        nacos_endpoint, service_name=service_name, ip="10.61.0.4", port=PORT, transport="http"
    )
    silent.pause_heartbeats()
    with nacos_endpoint.registry(service_name) as registry:
        wait_until(
            lambda: any(i.ip == "10.61.0.4" and not i.healthy for i in registry.list_instances()),
            message="the silent instance unhealthy",
        )
        assert any(i.ip == "10.61.0.3" and not i.enabled for i in registry.list_instances())

    consumer = java_consumer(nacos_endpoint, service_name=service_name)
    log = consumer.wait_for_picks(lambda log: len(log.picks) >= 2_000, 60, "2,000 picks")
    picked = log.by_instance()
    print(f"\nNacos {nacos_endpoint.version}: consumer started in {consumer.start_seconds:.1f} s;"
          f" picks {dict(picked)}")
    assert set(picked) == set(healthy), f"picked {dict(picked)}; healthy+enabled: {healthy}"
    assert not log.unavailable()
    assert {p.track for p in log.picks} == {STABLE}
    assert {p.revision for p in log.picks} == {"1"}
    assert disabled[0] not in picked


def test_a_disabled_instance_stops_being_picked_after_the_push(
    nacos_endpoint: NacosEndpoint,
    app_instances: Callable[..., AppInstanceSimulator],
    java_consumer: Callable[..., JavaConsumer],
    service_name: str,
) -> None:
    kept, leaving = _register(
        app_instances, nacos_endpoint, service_name, ["10.62.0.1", "10.62.0.2"]
    )
    consumer = java_consumer(nacos_endpoint, service_name=service_name)
    consumer.wait_for_picks(
        lambda log: {kept, leaving} <= set(log.by_instance()), 60, "both instances picked"
    )

    disable_called = time.time()
    write_override(nacos_endpoint, service_name, "10.62.0.2", PORT, enabled=False)
    disable_returned = time.time()
    # Settled: the instance has not been picked for a good while after the call.
    log = consumer.wait_for_picks(
        lambda log: log.picks[-1].at - (log.last_pick("10.62.0.2") or 0) > 3.0,
        FOLLOW_SECONDS + 30, "the disabled instance no longer picked",
    )
    last = log.last_pick("10.62.0.2")
    assert last is not None
    off_latency = last - disable_called
    assert not log.by_instance(start=last + 0.001)[leaving]
    assert off_latency < FOLLOW_SECONDS, f"still picked {off_latency:.2f} s after the disable"
    assert not log.unavailable(), "the other instance should have taken every pick"

    enable_called = time.time()
    write_override(nacos_endpoint, service_name, "10.62.0.2", PORT, enabled=True)
    log = consumer.wait_for_picks(
        lambda log: (log.first_pick_after("10.62.0.2", enable_called) or 0) > 0,
        FOLLOW_SECONDS + 30, "the re-enabled instance picked again",
    )
    on_latency = log.first_pick_after("10.62.0.2", enable_called) - enable_called  # type: ignore[operator]
    print(
        f"\nNacos {nacos_endpoint.version}: disable call {1000 * (disable_returned - disable_called):.0f} ms;"
        f" last pick of the disabled instance {1000 * off_latency:.0f} ms after the call;"
        f" first pick after re-enabling {1000 * on_latency:.0f} ms after the call"
    )


@pytest.mark.parametrize("target_share", [0.20, 0.50])
def test_weights_set_the_share_of_picks(
    nacos_endpoint: NacosEndpoint,
    app_instances: Callable[..., AppInstanceSimulator],
    java_consumer: Callable[..., JavaConsumer],
    service_name: str,
    target_share: float,
) -> None:
    """3 stable instances at weight 1 and 1 canary at w: the canary gets w / (3 + w)."""
    stable = _register(app_instances, nacos_endpoint, service_name, ["10.63.0.1", "10.63.0.2", "10.63.0.3"])
    canary = _register(app_instances, nacos_endpoint, service_name, ["10.63.0.9"], track=CANARY)
    weight = 3 * target_share / (1 - target_share)  # 0.75 for 20 %, 3.0 for 50 %
    write_override(
        nacos_endpoint, service_name, "10.63.0.9", PORT, weight=weight,
        metadata={TRACK_KEY: CANARY, REVISION_KEY: "2"},
    )
    consumer = java_consumer(nacos_endpoint, service_name=service_name, interval_ms=2)

    def weighted_push(log: Any) -> float | None:
        """When the client got a push listing the canary with its new weight."""
        return next(
            (push.at for push in log.pushes
             if any(d.startswith(f"{canary[0]}:{weight}:") for d in push.detail)),
            None,
        )

    log = consumer.wait_for_picks(
        lambda log: (since := weighted_push(log)) is not None and len(log.between(start=since)) >= SHARE_PICKS,
        120, f"{SHARE_PICKS} picks after the weights reached the client",
    )
    since = weighted_push(log)
    window = log.between(start=since)
    measured = log.share_of(set(canary), start=since)
    by_track = log.share(CANARY, start=since)
    print(
        f"\nNacos {nacos_endpoint.version}: canary weight {weight:g} beside 3 x 1.0 -> "
        f"{100 * measured:.2f} % of {len(window)} picks (target {100 * target_share:.0f} %)"
    )
    assert abs(measured - target_share) <= SHARE_TOLERANCE
    assert by_track == measured, "picks of the canary should carry its track metadata"
    assert set(log.by_instance(start=since)) == set(stable) | set(canary)
    assert {p.revision for p in window if p.instance in canary} == {"2"}


def test_no_instance_to_pick_is_logged_and_measured(
    nacos_endpoint: NacosEndpoint,
    app_instances: Callable[..., AppInstanceSimulator],
    java_consumer: Callable[..., JavaConsumer],
    service_name: str,
) -> None:
    """What "no moment without an instance" assertions rest on: when Nacos lists nothing the
    client throws, the consumer logs it, and the log measures how long it lasted."""
    (only,) = _register(app_instances, nacos_endpoint, service_name, ["10.64.0.1"])
    consumer = java_consumer(nacos_endpoint, service_name=service_name)
    consumer.wait_for_picks(lambda log: log.by_instance()[only] >= 100, 60, "100 picks")

    write_override(nacos_endpoint, service_name, "10.64.0.1", PORT, enabled=False)
    log = consumer.wait_for_picks(lambda log: len(log.unavailable()) >= 300, 30, "300 picks without an instance")
    went = log.unavailable()[0].at
    write_override(nacos_endpoint, service_name, "10.64.0.1", PORT, enabled=True)
    log = consumer.wait_for_picks(
        lambda log: (log.first_pick_after("10.64.0.1", went) or 0) > 0, 30, "picks again"
    )
    back = log.first_pick_after("10.64.0.1", went)
    assert back is not None
    gap = log.longest_unavailable()
    print(f"\nNacos {nacos_endpoint.version}: no instance to pick for {gap:.2f} s; reason logged: "
          f"{log.unavailable()[0].reason}")
    assert gap == pytest.approx(back - went, abs=0.01)
    assert gap >= 0.9  # 300 failed picks 3 ms apart
    assert log.longest_unavailable(end=went - 0.001) == 0.0
