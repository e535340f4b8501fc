"""Notification messages: each sink type's own format and signature, and URLs with their
secret parts hidden. Pure: the clock is passed in, nothing is sent here
(controller/notifier.py sends).

- DingTalk custom robot: msgtype markdown; with a signing secret, ``timestamp`` (ms) and
  ``sign`` = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))) in the
  query string.
- WeCom group robot: msgtype markdown; no signature (the URL's key is the secret).
- Lark/Feishu custom bot: msg_type interactive (a card); with a signing secret, ``timestamp``
  (seconds) and ``sign`` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")) in the
  body.
- Slack incoming webhook: text (the fallback) and blocks (mrkdwn sections).
- json: the record itself; with a secret, ``X-AppRelease-Signature: sha256=<hex>`` =
  HMAC-SHA256(key=secret, msg=body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from ..api.notifications import NotificationFacts

SinkType = Literal["dingtalk", "wecom", "lark", "slack", "json"]
SINK_TYPES: tuple[str, ...] = get_args(SinkType)
SIGNATURE_HEADER = "X-AppRelease-Signature"
# The chat services cut long messages (WeCom: 4096 bytes of markdown); ours stay well below.
MAX_MESSAGE = 1500
# WeCom refuses markdown content over 4096 bytes (Chinese text is 3 bytes a character).
WECOM_MAX_BYTES = 4096
# Hosts whose webhooks have a format of their own: a sink without `<sink>.type` takes it from here.
KNOWN_HOSTS: dict[str, SinkType] = {
    "oapi.dingtalk.com": "dingtalk",
    "qyapi.weixin.qq.com": "wecom",
    "open.feishu.cn": "lark",
    "open.larksuite.com": "lark",
    "hooks.slack.com": "slack",
}


@dataclass(frozen=True)
class Sink:
    name: str
    type: SinkType
    url: str = field(repr=False)
    secret: str = field(default="", repr=False)

    @property
    def shown_url(self) -> str:
        return redact_url(self.url, self.type)


@dataclass(frozen=True)
class WebhookRequest:
    url: str = field(repr=False)
    body: bytes
    headers: dict[str, str]


# Signatures --------------------------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` before URL-encoding."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def lark_sign(secret: str, timestamp_s: int) -> str:
    """Lark/Feishu's ``sign``: the timestamp and secret are the HMAC key, the message is empty."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def json_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# Messages ----------------------------------------------------------------------------------


def title(facts: NotificationFacts) -> str:
    revision = f" revision {facts.revision}" if facts.revision is not None else ""
    stage = f" stage {facts.stage}" if facts.stage else ""
    return f"[{facts.kind}] {facts.namespace}/{facts.name}{revision}{stage}"


def _lines(facts: NotificationFacts) -> list[tuple[str, str]]:
    """(label, value) pairs a message shows, in order."""
    subject = "app" if facts.subject == "AppRelease" else "pipeline"
    lines = [(subject, f"{facts.namespace}/{facts.name}")]
    if facts.revision is not None:
        lines.append(("revision", f"{facts.revision} ({facts.image})" if facts.image else str(facts.revision)))
    elif facts.image:
        lines.append(("image", facts.image))
    if facts.step:
        weight = f", weight {facts.weight}%" if facts.weight is not None else ""
        lines.append(("step", f"{facts.step}{weight}"))
    if facts.stage:
        lines.append(("stage", facts.stage))
    if facts.actor:
        lines.append(("by", facts.actor))
    lines.append(("what", f"{facts.reason}: {_cut(facts.message)}"))
    if facts.phase:
        lines.append(("phase", facts.phase))
    return lines


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _markdown(facts: NotificationFacts, console_url: str, heading: str) -> str:
    """Markdown as DingTalk and WeCom render it (blank lines between lines: both need them)."""
    parts = [f"{heading}{title(facts)}"]
    parts += [f"**{label}**: {value}" for label, value in _lines(facts)]
    if console_url:
        parts.append(f"[open in the console]({console_url})")
    return "\n\n".join(parts)


def _dingtalk(facts: NotificationFacts, sink: Sink, console_url: str, now: datetime) -> WebhookRequest:
    body = {"msgtype": "markdown", "markdown": {"title": title(facts), "text": _markdown(facts, console_url, "#### ")}}
    url = sink.url
    if sink.secret:
        timestamp = int(now.timestamp() * 1000)
        sign = quote_plus(dingtalk_sign(sink.secret, timestamp))
        url += ("&" if urlsplit(url).query else "?") + f"timestamp={timestamp}&sign={sign}"
    return WebhookRequest(url, _encode(body), _JSON)


def _wecom(facts: NotificationFacts, sink: Sink, console_url: str, now: datetime) -> WebhookRequest:
    color = "warning" if facts.warning else "info"
    heading = f'<font color="{color}">{title(facts)}</font>'
    lines = [heading] + [f"> **{label}**: {value}" for label, value in _lines(facts)]
    if console_url:
        lines.append(f"[open in the console]({console_url})")
    content = _fit_bytes("\n".join(lines), WECOM_MAX_BYTES)
    return WebhookRequest(sink.url, _encode({"msgtype": "markdown", "markdown": {"content": content}}), _JSON)


def _fit_bytes(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, cut at a character boundary."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "…"


def _lark(facts: NotificationFacts, sink: Sink, console_url: str, now: datetime) -> WebhookRequest:
    text = "\n".join(f"**{label}**: {value}" for label, value in _lines(facts))
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": text}}]
    if console_url:
        elements.append({"tag": "action", "actions": [{
            "tag": "button", "text": {"tag": "plain_text", "content": "Open in the console"},
            "type": "default", "url": console_url,
        }]})
    body: dict[str, Any] = {}
    if sink.secret:
        timestamp = int(now.timestamp())
        body |= {"timestamp": str(timestamp), "sign": lark_sign(sink.secret, timestamp)}
    body |= {"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": title(facts)},
                   "template": "red" if facts.warning else "green"},
        "elements": elements,
    }}
    return WebhookRequest(sink.url, _encode(body), _JSON)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(facts: NotificationFacts, sink: Sink, console_url: str, now: datetime) -> WebhookRequest:
    fields = "\n".join(f"*{label}*: {_slack_escape(value)}" for label, value in _lines(facts))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(facts)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fields}},
    ]
    if console_url:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{console_url}|Open in the console>"}})
    text = f"{title(facts)}: {facts.message}"
    return WebhookRequest(sink.url, _encode({"text": _slack_escape(text), "blocks": blocks}), _JSON)


def _json(facts: NotificationFacts, sink: Sink, console_url: str, now: datetime) -> WebhookRequest:
    body = _encode(facts.to_wire(console_url))
    headers = dict(_JSON)
    if sink.secret:
        headers[SIGNATURE_HEADER] = json_signature(sink.secret, body)
    return WebhookRequest(sink.url, body, headers)


_JSON = {"Content-Type": "application/json; charset=utf-8"}
_FORMATS: dict[str, Callable[[NotificationFacts, Sink, str, datetime], WebhookRequest]] = {
    "dingtalk": _dingtalk, "wecom": _wecom, "lark": _lark, "slack": _slack, "json": _json,
}


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def build_request(sink: Sink, facts: NotificationFacts, now: datetime, console_url: str = "") -> WebhookRequest:
    """The request that tells ``sink`` about ``facts``, signed at ``now``."""
    return _FORMATS[sink.type](facts, sink, console_url, now)


# The codes DingTalk, WeCom and Lark answer inside an HTTP 200 when a robot sends too often
# (DingTalk: 20 a minute; WeCom: 20 a minute; Lark: 100 a minute, 5 a second).
RATE_LIMIT_CODES: dict[str, frozenset[int]] = {
    "dingtalk": frozenset({130101}),  # send too fast
    "wecom": frozenset({45009}),  # api freq out of limit
    "lark": frozenset({11232, 9499}),  # frequency limited, too many request
}


@dataclass(frozen=True)
class DeliveryProblem:
    """Why an answer means "not delivered"; ``retry``: another try later may pass (a rate
    limit, a server error), else it would fail the same way (a bad signature, a 4xx)."""

    message: str
    retry: bool


def delivery_problem(sink_type: str, status: int, text: str) -> DeliveryProblem | None:
    """Why an answer means "not delivered", or None. DingTalk, WeCom and Lark answer HTTP 200
    with an error code in the body (a bad signature, a keyword filter, a rate limit): for them
    only code 0 is delivered."""
    if status == 429 or status >= 500:
        return DeliveryProblem(f"HTTP {status}", retry=True)
    if not 200 <= status < 300:
        return DeliveryProblem(f"HTTP {status}", retry=False)
    if sink_type not in RATE_LIMIT_CODES:
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    names = ("errcode", "code", "StatusCode")  # Lark's older answers say StatusCode
    code = next((answer[name] for name in names if name in answer), None) if isinstance(answer, dict) else None
    if code is None:
        field_name = "code" if sink_type == "lark" else "errcode"
        shown = "".join(ch for ch in " ".join(text.split()) if ch.isprintable())[:100]
        return DeliveryProblem(f"no {field_name} 0 in the answer: {shown!r}", retry=False)
    if str(code) == "0":
        return None
    assert isinstance(answer, dict)
    message = str(answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or "")[:200]
    if str(code) in {str(c) for c in RATE_LIMIT_CODES[sink_type]}:
        return DeliveryProblem(f"error {code}: {message} (rate limited)", retry=True)
    return DeliveryProblem(f"error {code}: {message}", retry=False)


# Redaction -----------------------------------------------------------------------------------

# Query parameters that are the secret of a webhook URL (DingTalk, WeCom) or its signature.
_SECRET_PARAMS = {"access_token", "key", "token", "sign", "secret"}


def redact_url(url: str, sink_type: str) -> str:
    """The URL as logs may show it: DingTalk's access_token, WeCom's key, Lark's hook id and
    Slack's path are the credentials themselves. A json sink shows only its scheme, host and
    port (its path or query may hold a token of any name)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "<unparseable URL>"
    path = parts.path
    if sink_type == "lark":
        head, _, _ = path.rpartition("/")
        path = f"{head}/***" if head else "/***"
    elif sink_type == "slack":
        path = "/services/***" if path.startswith("/services/") else "/***"
    elif sink_type == "json":
        return urlunsplit((parts.scheme, netloc, "/***" if path.strip("/") else "", "", ""))
    query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, ""))


# Sinks from the namespace's Secret ---------------------------------------------------------------


def parse_sinks(data: Mapping[str, bytes]) -> tuple[dict[str, Sink], list[str]]:
    """The sinks of a Secret (keys <sink>.url, <sink>.type, <sink>.secret), and what is wrong
    with the others (naming keys, never values)."""
    names = sorted({key.rsplit(".", 1)[0] for key in data if "." in key})
    sinks: dict[str, Sink] = {}
    problems: list[str] = []
    for name in names:
        url = _text(data.get(f"{name}.url"))
        if url is None:
            problems.append(f"{name}: no {name}.url key (or not UTF-8)")
            continue
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{name}.url: not an http(s) URL")
            continue
        declared = (_text(data.get(f"{name}.type")) or "").strip().lower()
        if declared and declared not in SINK_TYPES:
            problems.append(f"{name}.type: {declared!r} is not one of {', '.join(SINK_TYPES)}")
            continue
        kind: SinkType = declared or KNOWN_HOSTS.get(parts.hostname.lower(), "json")  # type: ignore[assignment]
        secret = (_text(data.get(f"{name}.secret")) or "").strip()
        sinks[name] = Sink(name=name, type=kind, url=url.strip(), secret=secret)
    return sinks, problems


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None
