"""The background registry poller: one thread serves every app, so nothing may stop it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from apprelease.registry.base import RegistryInstance
from apprelease.registry.monitor import RegistryMonitor, _Target
from tests.plugins.cluster import wait_for

INSTANCE = RegistryInstance("10.0.0.1", 8080, True, True, 1.0, True, "DEFAULT")


class FlakyClient:
    """Fails its first read with a surprise (as a client closed under it would), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reads = 0

    def list_instances(self) -> list[RegistryInstance]:
        self.reads += 1
        if self.reads <= self.failures:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        return [INSTANCE]

    def close(self) -> None:
        pass


def monitor_with(targets: dict[tuple[str, str], _Target]) -> tuple[RegistryMonitor, list[Any]]:
    woken: list[Any] = []
    monitor = RegistryMonitor(kube=None, endpoint_slices=lambda key: [], notify=woken.append,  # type: ignore[arg-type]
                              poll_seconds=0.05)
    monitor._targets.update(targets)
    return monitor, woken


def test_a_failing_read_is_logged_and_polling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient(failures=1)
    monitor, woken = monitor_with({("ns", "orders"): _Target("k", client)})  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="apprelease.registry"):
        monitor.start()
        try:
            wait_for(lambda: woken == [("ns", "orders")], 5, 0.01, "a read after the failed one")
        finally:
            monitor.stop()
    assert client.reads >= 2
    assert "ns/orders: registry read failed" in caplog.text


def test_a_target_forgotten_mid_read_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    key = ("ns", "gone")
    monitor, woken = monitor_with({})

    class ForgottenWhileReading(FlakyClient):
        def list_instances(self) -> list[RegistryInstance]:
            monitor.forget(key)  # the app was deleted meanwhile: its client is closed
            return super().list_instances()

    survivor = FlakyClient(failures=0)
    monitor._targets.update({key: _Target("k", ForgottenWhileReading(failures=1)),  # type: ignore[arg-type]
                             ("ns", "orders"): _Target("k", survivor)})  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="apprelease.registry"):
        monitor.start()
        try:
            wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the other app read")
        finally:
            monitor.stop()
    assert key not in woken and "registry read failed" not in caplog.text
