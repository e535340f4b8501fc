"""Web hook gates, as Flagger's: POST the rollout's context as JSON; the answer's status is
the verdict.

| the hook                                                 | here                                 |
| -------------------------------------------------------- | ------------------------------------ |
| answers 2xx                                              | WebhookResult(passed=True)           |
| answers another status (4xx but 429, 3xx): its verdict   | WebhookResult(passed=False)          |
| answers 5xx or 429 through the retries                   | MeasurementInconclusive              |
| cannot be reached, or does not answer in time            | MeasurementInconclusive              |
| its URL is not http(s), or the policy refuses it         | MeasurementError / AddressNotAllowed |

One measurement is one logical call: only a call that got no answer (a transport failure, 5xx,
429) is tried again, within the deadline; an answer is never asked for twice (a hook may act on
each call: start a load test, open a gate).

The URL may carry a token in its path or query: messages and metrics name its host:port only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from apprelease.domain import Policy
from apprelease.net import Resolver

from .errors import MeasurementInconclusive
from .transport import checked_url, exchange, server_of

PROVIDER = "webhook"
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_EXCERPT_CHARS = 200
WHAT = "the web hook address"
# No answer from the hook yet (its gateway, its pods coming back, a rate limit): tried again.
NO_ANSWER_STATUSES = frozenset({429, *range(500, 600)})


@dataclass(frozen=True)
class WebhookResult:
    passed: bool
    status: int
    # The start of the hook's answer (printable, one line): why it failed, for the status.
    body_excerpt: str


def context_payload(
    *,
    name: str,
    namespace: str,
    phase: str,
    revision: str | int | None = None,
    canary_hash: str | None = None,
    stable_hash: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The rollout's context in Flagger's web hook shape (name, namespace, phase, checksum,
    metadata), with the revision and both pod-template hashes as well."""
    return {
        "name": name,
        "namespace": namespace,
        "phase": phase,
        "checksum": canary_hash or "",
        "revision": "" if revision is None else str(revision),
        "canaryHash": canary_hash or "",
        "stableHash": stable_hash or "",
        "metadata": dict(metadata or {}),
    }


async def call(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    policy: Policy | None = None,
    http: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    headers: Mapping[str, str] | None = None,
) -> WebhookResult:
    """POST ``payload`` as JSON to ``url`` and read the verdict, all within ``timeout`` seconds.

    Raises MeasurementInconclusive (unreachable, too slow, 5xx or 429 to the last try) or
    MeasurementError (a bad URL, a refused address); any other answer is the hook's verdict,
    passed only for 2xx."""
    checked_url(url, what=WHAT)
    body = json.dumps(dict(payload), sort_keys=True).encode()
    answer = await exchange(
        "POST", url, provider=PROVIDER, what=WHAT, timeout=timeout, policy=policy or Policy(),
        http=http, resolver=resolver, content=body, headers={**(headers or {}), "Content-Type": "application/json"},
        retry_statuses=NO_ANSWER_STATUSES,
    )
    if answer.status in NO_ANSWER_STATUSES:
        raise MeasurementInconclusive(
            f"{server_of(url)} answered HTTP {answer.status}: {excerpt(answer.body)}",
            "http_5xx" if answer.status >= 500 else "rate_limited",
        )
    return WebhookResult(200 <= answer.status < 300, answer.status, excerpt(answer.body))


def excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:MAX_EXCERPT_CHARS] + ("..." if len(text) > MAX_EXCERPT_CHARS else "")
