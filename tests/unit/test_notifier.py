"""The background sender: retries with back-off until delivered, gives up on answers that
will not change, refuses addresses the policy refuses, drops (counted) when a sink's queue is
full, and never makes the caller wait."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import REGISTRY

from apprelease.api.notifications import SINKS_SECRET, NotificationFacts, NotificationRule
from apprelease.controller.notifier import Notifier, NotifierOptions
from apprelease.domain import Policy
from tests.plugins.cluster import NotYet, wait_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FAST = NotifierOptions(backoff_seconds=0.01, deadline_seconds=5, request_timeout_seconds=1, queue_size=2,
                       networks_allowed=("127.0.0.0/8",))


class FakeKube:
    def __init__(self, data: dict[str, str]):
        self.data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        assert (kind, name) == ("Secret", SINKS_SECRET)
        return {"data": self.data}


def facts(kind: str = "Promoted") -> NotificationFacts:
    return NotificationFacts(kind=kind, namespace="shop", name="cart", reason="PromotionCompleted",
                             message="revision 2 is stable", at=NOW, revision=2)


def count(sink_type: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("apprelease_notifications_total",
                                     {"sink_type": sink_type, "outcome": outcome}) or 0.0


def started(notifier: Notifier) -> Notifier:
    notifier.start()
    return notifier


def test_retried_until_delivered() -> None:
    answers = [500, 503, 200]
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(answers.pop(0))

    before = count("json", "delivered")
    notifier = started(Notifier(FakeKube({"ops.url": "http://127.0.0.1:9/hook"}), Policy(), FAST,
                                transport=httpx.MockTransport(handler), resolver=lambda h, p: ["127.0.0.1"]))
    try:
        notifier.submit("shop", [NotificationRule(sink="ops")], [facts()])
        wait_for(lambda: count("json", "delivered") > before or NotYet(answers), 10, message="delivery")
        assert len(seen) == 3 and seen[0] == seen[2]
    finally:
        notifier.stop()


def test_a_client_error_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"errcode": 310000, "errmsg": "sign not match"})

    before = count("dingtalk", "failed")
    notifier = started(Notifier(FakeKube({"t.url": "http://127.0.0.1:9/robot/send?access_token=x", "t.type": "dingtalk"}),
                                Policy(), FAST, transport=httpx.MockTransport(handler),
                                resolver=lambda h, p: ["127.0.0.1"]))
    try:
        notifier.submit("shop", [NotificationRule(sink="t")], [facts()])
        wait_for(lambda: count("dingtalk", "failed") > before, 10, message="failure counted")
        assert calls == [1]
    finally:
        notifier.stop()


def test_loopback_refused_unless_allowed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent to a refused address")

    before = count("slack", "refused")
    options = NotifierOptions(backoff_seconds=0.01)
    notifier = started(Notifier(FakeKube({"s.url": "http://metadata.example/services/x", "s.type": "slack"}),
                                Policy(), options, transport=httpx.MockTransport(handler),
                                resolver=lambda h, p: ["169.254.169.254"]))
    try:
        notifier.submit("shop", [NotificationRule(sink="s")], [facts()])
        wait_for(lambda: count("slack", "refused") > before, 10, message="refusal counted")
    finally:
        notifier.stop()


def test_a_hanging_sink_neither_blocks_the_caller_nor_grows_without_bound() -> None:
    release = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        while not release.is_set():
            await __import__("asyncio").sleep(0.01)
        return httpx.Response(200)

    before = count("json", "dropped")
    notifier = started(Notifier(FakeKube({"ops.url": "http://127.0.0.1:9/hook"}), Policy(),
                                NotifierOptions(queue_size=2, request_timeout_seconds=30, networks_allowed=("127.0.0.0/8",)),
                                transport=httpx.MockTransport(handler), resolver=lambda h, p: ["127.0.0.1"]))
    try:
        started_at = time.monotonic()
        for _ in range(10):
            notifier.submit("shop", [NotificationRule(sink="ops", on=["StepReached"])], [facts("StepReached")])
        assert time.monotonic() - started_at < 0.1
        # One in flight, two queued: the other seven are dropped and counted.
        wait_for(lambda: count("json", "dropped") - before >= 7 or NotYet(count("json", "dropped") - before), 10,
                 message="drops counted")
    finally:
        release.set()
        notifier.stop()


def test_the_allow_flag_takes_networks_only() -> None:
    import click
    import pytest

    from apprelease.cli import common
    from apprelease.cli.main import cli

    run = cli.commands["run"]
    parent = click.Context(cli, obj=common.Context())
    context = run.make_context("run", ["--allow-notification-network", "10.0.0.0/8", "--console-url", "https://c"],
                               parent=parent)
    assert context.params["notification_networks"] == ("10.0.0.0/8",)
    with pytest.raises(click.BadParameter, match="not appear to be an IPv4 or IPv6 network") as refused:
        run.make_context("run", ["--allow-notification-network", "hooks.local"], parent=parent)
    assert refused.value.param_hint == "--allow-notification-network"


def test_a_stopped_notifier_drops_without_raising_into_the_reconcile() -> None:
    notifier = started(Notifier(FakeKube({}), Policy(), FAST))
    notifier.stop()
    before = count("unknown", "dropped")
    notifier.submit("shop", [NotificationRule(sink="ops")], [facts()])
    assert count("unknown", "dropped") == before + 1


def test_the_request_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: a name that answers a public address to the check and the metadata
    endpoint to the connect must not reach the latter; the request connects to the checked
    address and keeps the name in its Host header."""
    answers = iter([["8.8.8.8"], ["169.254.169.254"], ["169.254.169.254"]])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    before = count("json", "delivered")
    notifier = started(Notifier(FakeKube({"ops.url": "http://hooks.example.com:8080/hook"}), Policy(), FAST,
                                transport=httpx.MockTransport(handler), resolver=lambda h, p: next(answers)))
    try:
        notifier.submit("shop", [NotificationRule(sink="ops")], [facts()])
        wait_for(lambda: count("json", "delivered") > before, 10, message="delivery")
        assert [(r.url.host, r.url.port, r.headers["host"]) for r in seen] == [
            ("8.8.8.8", 8080, "hooks.example.com:8080")]
    finally:
        notifier.stop()
