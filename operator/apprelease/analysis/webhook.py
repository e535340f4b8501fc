"""Web hook gates, as Flagger's: POST the rollout's context as JSON; the answer's status is
the verdict.

| the hook                                          | here                                  |
| ------------------------------------------------- | ------------------------------------- |
| answers 2xx                                       | WebhookResult(passed=True)            |
| answers any other status (after retrying 502/503/504) | WebhookResult(passed=False)       |
| cannot be reached, or does not answer in time     | MeasurementInconclusive               |
| its URL is not http(s), or the policy refuses it  | MeasurementError / AddressNotAllowed  |

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

from .transport import checked_url, exchange

PROVIDER = "webhook"
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_EXCERPT_CHARS = 200
WHAT = "the web hook address"


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
) -> WebhookResult:
    """POST ``payload`` as JSON to ``url`` and read the verdict, all within ``timeout`` seconds.

    Raises MeasurementInconclusive (unreachable, too slow) or MeasurementError (a bad URL, a
    refused address); any answer is a result, passed only for 2xx."""
    checked_url(url, what=WHAT)
    body = json.dumps(dict(payload), sort_keys=True).encode()
    answer = await exchange(
        "POST", url, provider=PROVIDER, what=WHAT, timeout=timeout, policy=policy or Policy(),
        http=http, resolver=resolver, content=body, headers={"Content-Type": "application/json"},
    )
    return WebhookResult(200 <= answer.status < 300, answer.status, excerpt(answer.body))


def excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:MAX_EXCERPT_CHARS] + ("..." if len(text) > MAX_EXCERPT_CHARS else "")
