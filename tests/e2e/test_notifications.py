"""Notifications on the real control plane: a local HTTP receiver per format (aiohttp in the
test process) hears a canary's Started, StepReached, Paused, Promoted and Aborted, each once,
signed validly and with the rollout's facts; a sink that fails first is retried; a sink that
hangs does not slow the rollout."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess, free_port, hold_still
from tests.plugins.pipeline import Stages
from tests.plugins.pipeline import app as pipeline_app

pytestmark = pytest.mark.e2e

DING_SECRET = "SECding-test-secret"
LARK_SECRET = "lark-test-secret"
JSON_SECRET = "json-test-secret"
STEPS = [{"setWeight": 50}, {"pause": {}}]


@dataclass
class Received:
    sink: str
    body: dict[str, Any]
    valid: bool  # the signature checks out (True for unsigned formats)
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


class Receivers:
    """One aiohttp server on loopback; each path is a sink of its own format."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.flaky_calls = 0
        self.release_hang = asyncio.Event()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, sink: str) -> list[Received]:
        return [r for r in self.received if r.sink == sink]

    async def _dingtalk(self, request: web.Request) -> web.Response:
        timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        expected = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        fresh = abs(int(timestamp or 0) / 1000 - time.time()) < 3600
        valid = request.query.get("access_token") == "ding-token" and sign == expected and fresh
        self.received.append(Received("ding", await request.json(), valid))
        return web.json_response({"errcode": 0 if valid else 310000, "errmsg": "ok" if valid else "sign not match"})

    async def _wecom(self, request: web.Request) -> web.Response:
        self.received.append(Received("wecom", await request.json(), request.query.get("key") == "wecom-key"))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _lark(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = f"{body.get('timestamp')}\n{LARK_SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        valid = body.get("sign") == expected and abs(int(body.get("timestamp") or 0) - time.time()) < 3600
        self.received.append(Received("lark", body, valid))
        return web.json_response({"code": 0 if valid else 19021, "msg": "success"})

    async def _slack(self, request: web.Request) -> web.Response:
        self.received.append(Received("slack", await request.json(), True))
        return web.Response(text="ok")

    async def _json(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(JSON_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        self.received.append(Received("json", json.loads(raw), request.headers.get("X-AppRelease-Signature") == expected))
        return web.Response(status=204)

    async def _flaky(self, request: web.Request) -> web.Response:
        self.flaky_calls += 1
        if self.flaky_calls == 1:
            return web.Response(status=500)
        self.received.append(Received("flaky", await request.json(), True))
        return web.Response(status=200)

    async def _hang(self, request: web.Request) -> web.Response:
        self.received.append(Received("hang", await request.json(), True))
        await self.release_hang.wait()
        return web.Response(status=200)

    def start(self) -> None:
        app = web.Application()
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/open-apis/bot/v2/hook/lark-hook", self._lark)
        app.router.add_post("/services/T0/B0/slack", self._slack)
        app.router.add_post("/json", self._json)
        app.router.add_post("/flaky", self._flaky)
        app.router.add_post("/hang", self._hang)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        threading.Thread(target=self._loop.run_forever, name="receivers", daemon=True).start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.release_hang.set)
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    found = Receivers()
    found.start()
    yield found
    found.stop()


def sinks_secret(receivers: Receivers) -> dict[str, Any]:
    data = {
        "ding.url": receivers.url("/robot/send?access_token=ding-token"), "ding.type": "dingtalk",
        "ding.secret": DING_SECRET,
        "wecom.url": receivers.url("/cgi-bin/webhook/send?key=wecom-key"), "wecom.type": "wecom",
        "lark.url": receivers.url("/open-apis/bot/v2/hook/lark-hook"), "lark.type": "lark", "lark.secret": LARK_SECRET,
        "slack.url": receivers.url("/services/T0/B0/slack"), "slack.type": "slack",
        "json.url": receivers.url("/json"), "json.secret": JSON_SECRET,
        "flaky.url": receivers.url("/flaky"),
        "hang.url": receivers.url("/hang"),
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "apprelease-notifications"},
            "stringData": data}


def canary_app(name: str, notifications: list[dict[str, Any]], steps: list[Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": name},
        "spec": {"image": f"registry.local/{name}:v1", "replicas": 2, "port": 8080,
                 "strategy": {"canary": {"steps": steps or STEPS}}, "notifications": notifications},
    }


CANARY_KINDS = ["Started", "StepReached", "Paused", "Promoted", "Aborted"]


def kinds_in(received: list[Received], sink: str) -> list[str]:
    if sink == "json":
        return [r.body["kind"] for r in received]
    found = []
    for r in received:
        for kind in CANARY_KINDS:
            if f"[{kind}]" in r.text:
                found.append(kind)
    return found


def test_each_format_hears_the_canary_signed_and_once(
    arl: AppReleases, kube_cluster: KubeCluster, receivers: Receivers, operator: OperatorProcess,
) -> None:
    kube_cluster.apply({**sinks_secret(receivers)}, namespace=arl.namespace)
    every = {"on": CANARY_KINDS}
    app = canary_app("cart", [
        {"sink": "ding", **every}, {"sink": "wecom", **every}, {"sink": "lark", **every},
        {"sink": "slack", **every}, {"sink": "json", **every}, {"sink": "flaky", "on": ["Started"]},
    ])
    arl.apply(app)
    arl.wait_phase("cart", "Healthy", timeout=60, stableRevision=1)
    arl.patch("cart", {"spec": {"image": "registry.local/cart:v2"}})
    arl.wait_phase("cart", "Paused", timeout=60, currentStepIndex=1)

    def heard(sink: str, wanted: list[str]) -> Any:
        found = kinds_in(receivers.of(sink), sink)
        return found if all(kind in found for kind in wanted) else NotYet(found)

    for sink in ("ding", "wecom", "lark", "slack", "json"):
        wait_for(lambda sink=sink: heard(sink, ["Started", "StepReached", "Paused"]), 30,
                 message=f"{sink} to hear Started, StepReached and Paused")
    wait_for(lambda: len(receivers.of("flaky")) == 1 or NotYet(receivers.flaky_calls), 30,
             message="the flaky sink to get Started after a retry")
    # A restarted operator reads the status it wrote: nothing is told again.
    told = len(receivers.received)
    operator.restart()
    assert hold_still(lambda: len(receivers.received), 6) == told
    arl.cli("promote", "cart")
    arl.wait_phase("cart", "Healthy", timeout=60, stableRevision=2)
    for sink in ("ding", "wecom", "lark", "slack", "json"):
        wait_for(lambda sink=sink: heard(sink, ["Promoted"]), 30, message=f"{sink} to hear Promoted")

    # A second canary, aborted.
    arl.patch("cart", {"spec": {"image": "registry.local/cart:v3"}})
    arl.wait_phase("cart", "Paused", timeout=60, currentStepIndex=1)
    arl.cli("abort", "cart")
    arl.wait_phase("cart", "Degraded", timeout=60, aborted=True)
    for sink in ("ding", "wecom", "lark", "slack", "json"):
        wait_for(lambda sink=sink: heard(sink, ["Aborted"]), 30, message=f"{sink} to hear Aborted")

    for sink in ("ding", "wecom", "lark", "slack", "json"):
        received = receivers.of(sink)
        assert all(r.valid for r in received), f"{sink}: a request with a bad signature or key"
        # Once each: two canaries start, reach their first step and pause; `promote` moves the
        # first past its pause (a step reached) to Promoted; the second is aborted.
        assert kinds_in(received, sink) == ["Started", "StepReached", "Paused", "StepReached", "Promoted",
                                            "Started", "StepReached", "Paused", "Aborted"], sink
    json_started = [r.body for r in receivers.of("json") if r.body["kind"] == "Started"]
    assert json_started[0]["name"] == "cart" and json_started[0]["namespace"] == arl.namespace
    assert json_started[0]["revision"] == 2 and json_started[0]["image"] == "registry.local/cart:v2"
    assert json_started[0]["reason"] == "CanaryStarted"
    paused = next(r.body for r in receivers.of("json") if r.body["kind"] == "Paused")
    assert paused["step"] == "2/2" and paused["weight"] == 50
    ding_text = receivers.of("ding")[0].body["markdown"]["text"]
    assert "registry.local/cart:v2" in ding_text and f"{arl.namespace}/cart" in ding_text
    assert receivers.of("lark")[0].body["msg_type"] == "interactive"
    assert receivers.of("slack")[0].body["blocks"]

    # The flaky sink answered 500 first: retried and delivered, once per Started.
    wait_for(lambda: len(receivers.of("flaky")) == 2 or NotYet(receivers.flaky_calls), 30,
             message="the flaky sink to get both Started after a retry")
    assert receivers.flaky_calls == 3


def canary_seconds(arl: AppReleases, name: str) -> float:
    """From the image change to Healthy on the new revision (a step of 50 % and a 2 s pause)."""
    arl.wait_phase(name, "Healthy", timeout=60, stableRevision=1)
    started = time.monotonic()
    arl.patch(name, {"spec": {"image": f"registry.local/{name}:v2"}})
    arl.wait_phase(name, "Healthy", timeout=90, stableRevision=2)
    return time.monotonic() - started


def test_a_hanging_sink_does_not_slow_the_rollout(
    arl: AppReleases, kube_cluster: KubeCluster, receivers: Receivers,
) -> None:
    kube_cluster.apply({**sinks_secret(receivers)}, namespace=arl.namespace)
    steps = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
    arl.apply(canary_app("quiet", [], steps))
    without = canary_seconds(arl, "quiet")
    arl.apply(canary_app("told", [{"sink": "hang", "on": ["Started", "StepReached", "Promoted"]}], steps))
    with_hanging_sink = canary_seconds(arl, "told")
    assert receivers.of("hang"), "the hanging sink was never called"
    # The same steps, the same pods: a sink that never answers adds nothing measurable.
    assert with_hanging_sink < without * 1.5 + 3, (without, with_hanging_sink)


def test_pipeline_notes_reach_the_pipelines_sink(
    stages: Stages, receivers: Receivers,
) -> None:
    files = {"application.yml": "greeting: hello\n"}
    for namespace, env in ((stages.test, "test"), (stages.pre, "pre"), (stages.prod, "prod")):
        stages.apply(namespace, pipeline_app("registry.local/shop:v1", files, 1, env))
    for namespace in (stages.test, stages.pre, stages.prod):
        stages.healthy(namespace, 1)
    stages.cluster.apply(sinks_secret(receivers), namespace=stages.pipelines)
    stages.cluster.apply({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "ReleasePipeline",
        "metadata": {"name": "shop", "namespace": stages.pipelines},
        "spec": {"apps": {"names": ["shop"]}, "notifications": [{"sink": "json"}], "stages": [
            {"name": "test", "namespace": stages.test},
            {"name": "pre", "namespace": stages.pre, "gate": {"auto": {}}},
            {"name": "prod", "namespace": stages.prod, "gate": {"manual": {}}},
        ]},
    }, namespace=stages.pipelines)
    stages.wait_status(lambda s: len({st.get("digest") for st in s.get("stages") or []} - {""}) == 1,
                       "every stage on the same artifact")
    stages.apply(stages.test, pipeline_app("registry.local/shop:v2", files, 1, "test"))

    def told(kind: str) -> Any:
        found = [r.body for r in receivers.of("json") if r.body["kind"] == kind]
        return found[0] if found else NotYet([r.body["kind"] for r in receivers.of("json")])

    promoted = wait_for(lambda: told("StagePromoted"), 120, 0.5, "StagePromoted at the json sink")
    assert promoted["subject"] == "ReleasePipeline" and promoted["stage"] == "pre"
    assert promoted["namespace"] == stages.pipelines and promoted["name"] == "shop"
    waiting = wait_for(lambda: told("WaitingForApproval"), 120, 0.5, "WaitingForApproval at the json sink")
    assert waiting["stage"] == "prod" and "apprelease approve" in waiting["message"]
    assert all(r.valid for r in receivers.of("json"))
    assert [r.body["kind"] for r in receivers.of("json")].count("WaitingForApproval") == 1


def test_unknown_events_and_a_sink_listed_twice_are_refused_at_admission(arl: AppReleases,
                                                                         kube_cluster: KubeCluster) -> None:
    for notifications, expected in (
        ([{"sink": "team", "on": ["Promoted", "Deployed"]}], "spec.notifications[0].on[1]"),
        ([{"sink": "team"}, {"sink": "team", "on": ["Aborted"]}], "Duplicate value"),
        ([{"sink": "team", "on": ["WaitingForApproval"]}], "spec.notifications[0].on[0]"),
    ):
        body = {**canary_app("refused", notifications), "metadata": {"name": "refused", "namespace": arl.namespace}}
        result = kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
