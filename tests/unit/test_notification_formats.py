"""Each sink type's message format and signature, the sinks read from a Secret, and URLs as logs show them.

The signature vectors were computed with openssl from the services' documented algorithms:
  DingTalk: printf '1577808000000\\nSECabc123' | openssl dgst -sha256 -hmac SECabc123 -binary | base64
  Lark:     key=$(printf '1577808000\\nSECabc123' | xxd -p); printf '' | openssl dgst -sha256 -mac HMAC \\
            -macopt hexkey:$key -binary | base64
  json:     printf '{"a":1}' | openssl dgst -sha256 -hmac s3cr3t
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from apprelease.api.notifications import NotificationFacts
from apprelease.render.notification import (
    SIGNATURE_HEADER,
    DeliveryProblem,
    Sink,
    build_request,
    delivery_problem,
    dingtalk_sign,
    json_signature,
    lark_sign,
    parse_sinks,
    redact_url,
)

NOW = datetime(2020, 1, 1, 0, 0, tzinfo=UTC)  # 1577836800
DINGTALK_VECTOR = "XE4R7IL0vopgq8cbuTGw6A2PvUgYymHWfIDiKqcpEXA="
LARK_VECTOR = "po9kDiDmTebGHsQr+iVJ9D5snkuo1nCF3bIUh2LGcb0="
JSON_VECTOR = "sha256=d42927434049e0b8c73ce887062238cc1c6bb6644bfe66e66d8dd0f30b85679e"

FACTS = NotificationFacts(
    kind="Aborted", namespace="shop", name="order-service", reason="Aborted",
    message="canary revision 3: canary pods not ready within progressDeadlineSeconds (600s) at step 1/3",
    at=NOW, revision=3, image="harbor.example.com/shop/order:v3", step="1/3", weight=20, phase="Degraded",
)
CONSOLE = "https://console.example.com/apps/shop/order-service"


def test_signatures_match_the_documented_algorithms() -> None:
    assert dingtalk_sign("SECabc123", 1577808000000) == DINGTALK_VECTOR
    assert lark_sign("SECabc123", 1577808000) == LARK_VECTOR
    assert json_signature("s3cr3t", b'{"a":1}') == JSON_VECTOR


def test_dingtalk_markdown_signed_in_the_query() -> None:
    sink = Sink("team", "dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=TOKEN", "SECabc123")
    request = build_request(sink, FACTS, NOW, CONSOLE)
    query = parse_qs(urlsplit(request.url).query)
    assert query["access_token"] == ["TOKEN"]
    assert query["timestamp"] == ["1577836800000"]
    assert query["sign"] == [dingtalk_sign("SECabc123", 1577836800000)]  # parse_qs undid the URL encoding
    assert "%2B" in request.url or "+" not in dingtalk_sign("SECabc123", 1577836800000)
    body = json.loads(request.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "[Aborted] shop/order-service revision 3"
    text = body["markdown"]["text"]
    for fact in ("shop/order-service", "harbor.example.com/shop/order:v3", "1/3", "progressDeadlineSeconds", CONSOLE):
        assert fact in text


def test_dingtalk_without_a_secret_is_not_signed() -> None:
    sink = Sink("team", "dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=TOKEN")
    assert "sign=" not in build_request(sink, FACTS, NOW).url


def test_wecom_markdown_content() -> None:
    sink = Sink("team", "wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY")
    request = build_request(sink, FACTS, NOW, CONSOLE)
    assert request.url == sink.url
    body = json.loads(request.body)
    assert body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert '<font color="warning">[Aborted] shop/order-service revision 3</font>' in content
    assert "harbor.example.com/shop/order:v3" in content and CONSOLE in content
    assert len(content.encode()) <= 4096


def test_lark_card_signed_in_the_body() -> None:
    sink = Sink("team", "lark", "https://open.feishu.cn/open-apis/bot/v2/hook/HOOK", "SECabc123")
    body = json.loads(build_request(sink, FACTS, NOW, CONSOLE).body)
    assert body["timestamp"] == "1577836800"
    assert body["sign"] == lark_sign("SECabc123", 1577836800)
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["title"]["content"] == "[Aborted] shop/order-service revision 3"
    assert card["header"]["template"] == "red"
    assert "harbor.example.com/shop/order:v3" in card["elements"][0]["text"]["content"]
    assert card["elements"][1]["actions"][0]["url"] == CONSOLE


def test_slack_text_and_blocks_escaped() -> None:
    facts = NotificationFacts(kind="Promoted", namespace="shop", name="cart", reason="PromotionCompleted",
                              message="revision 4 is stable <now> & done", at=NOW, revision=4)
    body = json.loads(build_request(Sink("s", "slack", "https://hooks.slack.com/services/T/B/X"), facts, NOW).body)
    assert body["text"].startswith("[Promoted] shop/cart revision 4")
    assert "&lt;now&gt; &amp; done" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert "*what*: PromotionCompleted: revision 4 is stable &lt;now&gt;" in body["blocks"][1]["text"]["text"]


def test_json_is_the_record_with_an_optional_signature() -> None:
    plain = build_request(Sink("j", "json", "http://hooks.example.com/x"), FACTS, NOW)
    assert SIGNATURE_HEADER not in plain.headers
    record = json.loads(plain.body)
    assert record == {
        "kind": "Aborted", "subject": "AppRelease", "namespace": "shop", "name": "order-service",
        "reason": "Aborted", "message": FACTS.message, "at": "2020-01-01T00:00:00Z", "revision": 3,
        "image": "harbor.example.com/shop/order:v3", "step": "1/3", "weight": 20, "phase": "Degraded",
    }
    signed = build_request(Sink("j", "json", "http://hooks.example.com/x", "s3cr3t"), FACTS, NOW)
    assert signed.headers[SIGNATURE_HEADER] == json_signature("s3cr3t", signed.body)


@pytest.mark.parametrize(("sink_type", "url", "shown"), [
    ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=abcdef123",
     "https://oapi.dingtalk.com/robot/send?access_token=***"),
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6",
     "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    ("lark", "https://open.feishu.cn/open-apis/bot/v2/hook/0b9c2f3e-1234", "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
    ("slack", "https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/services/***"),
    ("json", "https://user:pw@hooks.example.com:8443/t/0123456789?token=x", "https://hooks.example.com:8443/***"),
])
def test_redacted_urls_keep_no_secret_part(sink_type: str, url: str, shown: str) -> None:
    assert redact_url(url, sink_type) == shown


def test_sinks_from_a_secret() -> None:
    sinks, problems = parse_sinks({
        "team-dingtalk.url": b"https://oapi.dingtalk.com/robot/send?access_token=T",
        "team-dingtalk.secret": b"SEC1\n",
        "ops.url": b"http://receiver.ops.svc:8080/hook",
        "feishu.url": b"https://proxy.example.com/lark",
        "feishu.type": b"Lark",
        "broken.type": b"teams",
        "broken.url": b"https://x.example.com",
        "nourl.secret": b"s",
        "ftp.url": b"ftp://x.example.com/",
    })
    assert {name: s.type for name, s in sinks.items()} == {"team-dingtalk": "dingtalk", "ops": "json", "feishu": "lark"}
    assert sinks["team-dingtalk"].secret == "SEC1"
    assert problems == [
        "broken.type: 'teams' is not one of dingtalk, wecom, lark, slack, json",
        "ftp.url: not an http(s) URL",
        "nourl: no nourl.url key (or not UTF-8)",
    ]
    assert "SEC1" not in repr(sinks) and "access_token" not in repr(sinks)


@pytest.mark.parametrize(("sink_type", "status", "text", "problem"), [
    ("dingtalk", 200, '{"errcode":0,"errmsg":"ok"}', None),
    ("dingtalk", 200, '{"errcode":310000,"errmsg":"sign not match"}', ("error 310000: sign not match", False)),
    ("dingtalk", 200, '{"errcode":130101,"errmsg":"send too fast"}', ("error 130101: send too fast (rate limited)", True)),
    ("dingtalk", 200, "", ("no errcode 0 in the answer: ''", False)),
    ("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}', ("error 93000: invalid webhook url", False)),
    ("wecom", 200, '{"errcode":45009,"errmsg":"api freq out of limit"}',
     ("error 45009: api freq out of limit (rate limited)", True)),
    ("lark", 200, '{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}',
     ("error 19021: sign match fail or timestamp is not within one hour from current time", False)),
    ("lark", 200, '{"code":9499,"msg":"too many request"}', ("error 9499: too many request (rate limited)", True)),
    ("lark", 200, '{"code":11232,"msg":"frequency limited"}', ("error 11232: frequency limited (rate limited)", True)),
    ("lark", 200, '{"StatusCode":0,"StatusMessage":"success"}', None),
    ("lark", 200, '["not", "an object"]', ("no code 0 in the answer: \'[\"not\", \"an object\"]\'", False)),
    ("slack", 200, "ok", None),
    ("slack", 429, "rate_limited", ("HTTP 429", True)),
    ("slack", 404, "no_service", ("HTTP 404", False)),
    ("json", 503, "", ("HTTP 503", True)),
])
def test_answers_that_mean_not_delivered(sink_type: str, status: int, text: str,
                                         problem: tuple[str, bool] | None) -> None:
    expected = DeliveryProblem(*problem) if problem is not None else None
    assert delivery_problem(sink_type, status, text) == expected


def test_wecom_content_fits_its_byte_limit_in_chinese_too() -> None:
    long = NotificationFacts(kind="Degraded", namespace="shop", name="cart", reason="Stalled",
                             message="金丝雀发布失败" * 400, at=NOW)
    body = json.loads(build_request(Sink("w", "wecom", "https://qyapi.weixin.qq.com/x?key=k"), long, NOW).body)
    content = body["markdown"]["content"]
    assert len(content.encode()) <= 4096 and content.endswith("…")
