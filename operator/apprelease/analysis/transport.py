"""One analysis request: the policy's address check, one deadline over everything, bounded
retries of transient failures, a bounded body, and the request metrics.

The deadline covers name resolution, connect, TLS, headers, the body and every retry: httpx's
own timeouts are per read, and a server that sends a byte a second never trips them.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from apprelease import metrics
from apprelease.domain import APISERVER, Policy
from apprelease.net import (
    AddressRefused,
    CheckedAddresses,
    Resolver,
    default_port,
    host_port,
    literal_address,
    retry_after_seconds,
    system_resolver,
)

from .errors import AddressNotAllowed, MeasurementError, MeasurementInconclusive

# A Prometheus answer or a web hook's is far below this; a server streaming without end is not.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Retries of a transient failure (connection refused or reset, a 502/503/504), all within the
# caller's timeout; a server's Retry-After is waited instead of the back-off when it fits.
MAX_ATTEMPTS = 3
RETRY_WAIT_SECONDS = 0.2
RETRY_WAIT_MAX_SECONDS = 2.0
# Gateways and overloaded servers answer these while the server behind them comes back.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
# A URL inside an exception's text (httpx quotes the request's URL in some).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]


class _Transient(Exception):
    """A try that may be retried: a transport error, or a transient status (kept as `answer`)."""

    def __init__(self, reason: str, kind: str, answer: Answer | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.answer = answer


def server_of(url: str) -> str:
    """host:port of a URL: what messages and metric labels name (never the path or query,
    which may carry a token)."""
    parts = urlsplit(url)
    return host_port(parts.hostname or "", parts.port or default_port(parts.scheme))


def checked_url(url: str, *, what: str) -> str:
    """``url`` if it is an http(s) URL with a host and no user info, else MeasurementError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise MeasurementError(f"{what} {url!r} is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MeasurementError(f"{what} {url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise MeasurementError(f"{what} must not carry credentials in the URL")
    del port
    return url


def policy_check(policy: Policy, *, what: str) -> Any:
    """The connect check for ``policy``: a refusal message naming ``what`` (the field's
    meaning, e.g. "the analysis address") and the flags that allow it, or None."""

    def check(host: str, port: int, address: str) -> str | None:
        kind = policy.metric_address_refusal(host, port, address)
        if kind is None:
            return None
        server = host_port(host, port)
        where = f"{server} is {kind}" if literal_address(host) is not None else f"{server} resolves to {address}, {kind}"
        if kind == APISERVER:
            return f"{what} {where}; the operator never sends analysis requests there"
        return (f"{what} {where}; the operator does not connect there unless the platform allows it"
                f" (apprelease run --allow-metric-server {server}, or --allow-registry-network CIDR)")

    return check


async def exchange(
    method: str,
    url: str,
    *,
    provider: str,
    what: str,
    timeout: float,
    policy: Policy,
    http: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    retry_statuses: frozenset[int] = TRANSIENT_STATUSES,
    headers: Mapping[str, str] | None = None,
    **request: Any,
) -> Answer:
    """Send one request (with bounded retries) and read its answer within ``timeout`` seconds.

    AddressNotAllowed when the policy refuses the server; MeasurementInconclusive when it cannot
    be reached in time. A status in ``retry_statuses`` that lasts through the retries is
    returned as the answer: the caller says what it means."""
    server = server_of(url)
    started = time.monotonic()
    try:
        if not policy.metric_server_allowed(server):
            raise AddressNotAllowed(
                f"{what} {server} is not allowed by the operator's policy (apprelease run --allow-metric-server)"
            )
        addresses = CheckedAddresses(policy_check(policy, what=what), resolver or system_resolver)
        answer = await _with_retries(
            http if http is not None else shared_client(), addresses, method, url, timeout, retry_statuses,
            dict(headers or {}), request,
        )
    except AddressNotAllowed:
        _measured(provider, server, started, "refused_address")
        raise
    except MeasurementInconclusive as error:
        _measured(provider, server, started, error.kind)
        raise
    if answer.status >= 500:
        _measured(provider, server, started, "http_5xx")
    else:
        _measured(provider, server, started, "rate_limited" if answer.status in retry_statuses else None)
    return answer


async def _with_retries(
    client: httpx.AsyncClient, addresses: CheckedAddresses, method: str, url: str, timeout: float,
    retry_statuses: frozenset[int], headers: dict[str, str], request: dict[str, Any],
) -> Answer:
    deadline = time.monotonic() + timeout
    attempts = 0

    async def one_try() -> Answer:
        nonlocal attempts
        attempt, attempts = attempts, attempts + 1
        try:
            route = await addresses.route(url, attempt)
        except AddressRefused as refused:
            raise AddressNotAllowed(str(refused)) from None
        except httpx.ConnectError as error:  # the name does not resolve
            raise _Transient(str(error), "connection") from None
        remaining = max(0.001, deadline - time.monotonic())
        try:
            async with client.stream(method, route.url, headers={**headers, **route.headers},
                                     timeout=httpx.Timeout(remaining), extensions=route.extensions,
                                     **request) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise MeasurementInconclusive(f"an answer over {MAX_BODY_BYTES} bytes", "too_large")
                answer = Answer(response.status_code, bytes(body), dict(response.headers))
        except httpx.TimeoutException:
            raise _Transient("no answer in time", "timeout") from None
        except httpx.ConnectError as error:
            addresses.forget()  # the server may have moved: resolve again
            raise _Transient(f"cannot connect ({_reason(error, server_of(url))})", "connection") from None
        except httpx.TransportError as error:
            addresses.forget()
            raise _Transient(f"the connection failed ({_reason(error, server_of(url))})", "transport") from None
        if answer.status in retry_statuses:
            raise _Transient(f"HTTP {answer.status}", "http_5xx", answer)
        return answer

    backoff = tenacity.wait_exponential(multiplier=RETRY_WAIT_SECONDS, max=RETRY_WAIT_MAX_SECONDS)

    def wait(state: tenacity.RetryCallState) -> float:
        transient = state.outcome.exception() if state.outcome is not None else None
        if isinstance(transient, _Transient) and transient.answer is not None:
            asked = retry_after_seconds(transient.answer.headers)
            if asked is not None:
                return asked
        return backoff(state)

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(_Transient),
        # Never sleep past the deadline: a wait that would end after it gives up now.
        stop=tenacity.stop_after_attempt(MAX_ATTEMPTS) | tenacity.stop_before_delay(timeout),
        wait=wait,
        reraise=True,
    )
    try:
        async with asyncio.timeout(timeout):
            return await retrying(one_try)
    except TimeoutError:
        raise MeasurementInconclusive(
            f"no complete answer from {server_of(url)} within {timeout:g} s", "timeout"
        ) from None
    except _Transient as transient:
        if transient.answer is not None:
            return transient.answer
        raise MeasurementInconclusive(f"{server_of(url)}: {transient.reason}", transient.kind) from None


# One client per event loop, made on first use: making an httpx client costs tens of
# milliseconds (its TLS context), far more than a query, and a shared one keeps connections
# alive between measurements. Weak keys: a loop that is gone takes its client with it.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def shared_client() -> httpx.AsyncClient:
    """This event loop's client for analysis requests. Redirects are never followed: their
    target would escape the address check."""
    loop = asyncio.get_running_loop()
    client = _SHARED.get(loop)
    if client is None or client.is_closed:
        client = _SHARED[loop] = httpx.AsyncClient(follow_redirects=False)
    return client


def _reason(error: Exception, server: str) -> str:
    """A transport error's kind and first words, any URL in them (its path or query may carry
    a token) replaced by the server's host:port."""
    text = str(error).splitlines()[0] if str(error) else ""
    text = _URL_IN_TEXT.sub(server, text)
    return f"{type(error).__name__}: {text[:120]}" if text else type(error).__name__


def _measured(provider: str, server: str, started: float, error: str | None) -> None:
    metrics.ANALYSIS_REQUEST_SECONDS.labels(provider, server).observe(time.monotonic() - started)
    if error is not None:
        metrics.ANALYSIS_REQUEST_ERRORS.labels(provider, server, error).inc()
