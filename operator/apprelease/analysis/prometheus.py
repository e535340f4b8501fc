"""Prometheus as an analysis provider: one instant query over its HTTP API.

`query(address, promql, timeout=...)` POSTs to `<address>/api/v1/query` and returns a
QueryResult: a scalar is one value, an instant vector one value per series (with its labels, in
Prometheus' order), an empty vector no value. What the answer means:

| Prometheus says                                  | here                                   |
| ------------------------------------------------ | -------------------------------------- |
| 200 success, scalar or vector                    | QueryResult                            |
| 200 success, a range vector (matrix) or a string | MeasurementError (not a measurement)   |
| 400 bad_data (does not parse), 422 execution     | MeasurementError with its own message  |
| 503, 5xx, timeout, connection refused, no answer | MeasurementInconclusive                |
| another status, a redirect                       | MeasurementError (not a query API)     |

`address` is `host:port` or an http(s) URL (with a path prefix for a Prometheus behind one:
`http://gateway/prometheus`). The operator's policy is checked before each connection
(AddressNotAllowed, a MeasurementError); see transport.py for deadlines and retries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from apprelease.domain import Policy
from apprelease.net import Resolver

from .errors import MeasurementError, MeasurementInconclusive
from .transport import checked_url, exchange, server_of

PROVIDER = "prometheus"
QUERY_PATH = "/api/v1/query"
DEFAULT_TIMEOUT_SECONDS = 10.0
# Prometheus' own messages are short; a proxy's HTML page is cut to this.
MAX_MESSAGE_CHARS = 300
WHAT = "the analysis address"


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (a scalar has no labels)."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class QueryResult:
    result_type: Literal["scalar", "vector"]
    samples: tuple[Sample, ...]
    # Prometheus' warnings (e.g. a query over a counter without rate()): shown, not fatal.
    warnings: tuple[str, ...] = ()

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(sample.value for sample in self.samples)

    @property
    def empty(self) -> bool:
        return not self.samples


def base_url(address: str) -> str:
    """The query API's base URL for an analysis address (`host:port` or an http(s) URL);
    MeasurementError when it is neither."""
    text = address.strip()
    if not text:
        raise MeasurementError(f"{WHAT} is empty")
    if "://" not in text:
        text = f"http://{text}"
    return checked_url(text.rstrip("/"), what=WHAT)


async def query(
    address: str,
    promql: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    policy: Policy | None = None,
    http: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    at: float | None = None,
) -> QueryResult:
    """Run ``promql`` as an instant query (at ``at``, Unix seconds; default: now) on the
    Prometheus at ``address``, all of it within ``timeout`` seconds.

    ``policy``: the operator's (default: the strict default policy, which refuses loopback,
    link-local and metadata addresses). ``http``: a client to reuse (default: one per call).
    Raises MeasurementInconclusive or MeasurementError (see the module's doc)."""
    if not promql.strip():
        raise MeasurementError("the query is empty")
    url = base_url(address) + QUERY_PATH
    # Prometheus' own evaluation timeout, so it stops work nobody waits for (a Go duration:
    # whole milliseconds; "5.000s" does not parse).
    form = {"query": promql, "timeout": f"{max(1, int(timeout * 1000))}ms"}
    if at is not None:
        form["time"] = f"{at:.3f}"
    answer = await exchange(
        "POST", url, provider=PROVIDER, what=WHAT, timeout=timeout, policy=policy or Policy(),
        http=http, resolver=resolver, data=form, headers={"Accept": "application/json"},
    )
    return parse_answer(answer.status, answer.body, server=server_of(url))


def parse_answer(status: int, body: bytes, *, server: str) -> QueryResult:
    """Prometheus' answer to an instant query → QueryResult, or the exception it stands for."""
    payload = _json(body)
    if status == 200:
        if payload is None or payload.get("status") != "success" or not isinstance(payload.get("data"), dict):
            raise MeasurementInconclusive(
                f"Prometheus at {server} answered 200 without a query result: {_excerpt(body)}", "bad_answer"
            )
        return _result(payload["data"], tuple(str(w) for w in payload.get("warnings") or ()), server)
    message = _prometheus_message(payload) or _excerpt(body)
    if status in (400, 422):
        # bad_data (400): it does not parse; execution (422): it cannot run as written.
        raise MeasurementError(f"Prometheus refuses the query: {message}")
    if status >= 500:
        raise MeasurementInconclusive(f"Prometheus at {server} answered HTTP {status}: {message}", "http_5xx")
    raise MeasurementError(
        f"{server} answered HTTP {status} on {QUERY_PATH} ({message}): is the analysis address a Prometheus query API?"
    )


def _result(data: dict[str, Any], warnings: tuple[str, ...], server: str) -> QueryResult:
    kind = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "scalar":
            return QueryResult("scalar", (Sample(_number(result[1])),), warnings)
        if kind == "vector":
            samples = tuple(
                Sample(_number(series["value"][1]), tuple(sorted((series.get("metric") or {}).items())))
                for series in result
            )
            return QueryResult("vector", samples, warnings)
    except (TypeError, KeyError, IndexError, ValueError) as error:
        raise MeasurementInconclusive(
            f"Prometheus at {server} answered a {kind} result that does not read ({error})", "bad_answer"
        ) from None
    if kind == "matrix":
        raise MeasurementError(
            "the query returns a range vector (one list of values per series, e.g. `metric[5m]`);"
            " an analysis needs one value per series: wrap it in rate(), avg_over_time(), ..."
        )
    raise MeasurementError(f"the query returns a {kind}, not a number (a scalar or an instant vector)")


def _number(text: Any) -> float:
    """Prometheus sends sample values as strings: "1.5", "NaN", "+Inf", "-Inf"."""
    value = float(text)
    return math.nan if math.isnan(value) else value


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _prometheus_message(payload: dict[str, Any] | None) -> str | None:
    if payload is None or not payload.get("error"):
        return None
    kind = payload.get("errorType")
    text = str(payload["error"])[:MAX_MESSAGE_CHARS]
    return f"{kind}: {text}" if kind else text


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    return text[:MAX_MESSAGE_CHARS] + ("..." if len(text) > MAX_MESSAGE_CHARS else "")
