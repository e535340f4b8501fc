"""The background sender: retries with back-off until delivered, gives up on answers that
will not change, refuses addresses the policy refuses, drops (counted) when a sink's queue is
full, and never makes the caller wait."""

from __future__ import annotations

import base64
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from apprelease.api.notifications import SINKS_SECRET, NotificationFacts, NotificationRule
from apprelease.controller.notifier import Notifier, NotifierOptions
from apprelease.domain import Policy
from tests.plugins.cluster import NotYet, wait_for

from .scripted_server import Reply, Script, scripted_server

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


# --- chat services that answer "too fast" (or another error) inside an HTTP 200 ----------------------
# Against a real local HTTP server: each attempt is counted on the wire.

PATHS = {"dingtalk": "/robot/send?access_token=d1ng", "wecom": "/cgi-bin/webhook/send?key=w3c0m",
         "lark": "/open-apis/bot/v2/hook/l4rk", "slack": "/services/T0/B0/sl4ck"}
OK = {"dingtalk": {"errcode": 0, "errmsg": "ok"}, "wecom": {"errcode": 0, "errmsg": "ok"},
      "lark": {"StatusCode": 0, "StatusMessage": "success", "code": 0, "msg": "success"}, "slack": b"ok"}


def deliver(sink_type: str, *replies: Reply, options: NotifierOptions = FAST,
            outcome: str = "delivered") -> tuple[Script, float]:
    """Send one notification to a ``sink_type`` sink answering ``replies``; the script and
    how long until ``outcome`` was counted."""
    with scripted_server(*replies) as (url, script):
        before = count(sink_type, outcome)
        sinks = FakeKube({"t.url": url + PATHS[sink_type], "t.type": sink_type})
        notifier = started(Notifier(sinks, Policy(), options))
        try:
            began = time.monotonic()
            notifier.submit("shop", [NotificationRule(sink="t")], [facts()])
            wait_for(lambda: count(sink_type, outcome) > before or NotYet(script.calls), 15, interval=0.02,
                     message=f"{outcome} counted")
            return script, time.monotonic() - began
        finally:
            notifier.stop()


@pytest.mark.parametrize(("sink_type", "too_fast"), [
    ("dingtalk", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}),
    ("lark", {"code": 11232, "msg": "frequency limited", "data": {}}),
    ("lark", {"code": 9499, "msg": "too many request", "data": {}}),
])
def test_a_rate_limit_inside_a_200_is_retried_until_delivered(sink_type: str, too_fast: dict[str, Any]) -> None:
    script, _ = deliver(sink_type, Reply(200, too_fast), Reply(200, too_fast), Reply(200, OK[sink_type]))
    assert len(script.calls) == 3 and script.bodies[0] == script.bodies[2]


@pytest.mark.parametrize(("sink_type", "answer", "named"), [
    ("dingtalk", {"errcode": 310000, "errmsg": "sign not match"}, "error 310000: sign not match"),
    ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, "error 93000: invalid webhook url"),
    ("lark", {"code": 19021, "msg": "sign match fail"}, "error 19021: sign match fail"),
    ("dingtalk", {}, "no errcode 0 in the answer"),
    ("lark", b"<html>gateway</html>", "no code 0 in the answer"),
])
def test_another_error_inside_a_200_fails_once_logged_with_the_code(
        sink_type: str, answer: Any, named: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "apprelease.notifications")
    script, _ = deliver(sink_type, Reply(200, answer), Reply(200, OK[sink_type]), outcome="failed")
    assert len(script.calls) == 1
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "apprelease.notifications"]
    assert named in logged
    assert not any(secret in logged for secret in ("d1ng", "w3c0m", "l4rk")) and "***" in logged


def test_slack_429_waits_its_retry_after() -> None:
    script, _ = deliver("slack", Reply(429, b"rate_limited", {"Retry-After": "1"}), Reply(200, b"ok"))
    assert len(script.calls) == 2 and script.calls[1] - script.calls[0] >= 0.9  # the back-off alone: 0.01 s


def test_a_retry_after_past_the_deadline_fails_at_once() -> None:
    script, took = deliver("slack", Reply(429, b"rate_limited", {"Retry-After": "600"}), Reply(200, b"ok"),
                           outcome="failed")
    assert len(script.calls) == 1 and took < FAST.deadline_seconds
