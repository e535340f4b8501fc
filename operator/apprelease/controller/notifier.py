"""Sends notifications in the background: a thread with its own event loop, a bounded queue
and a sender per sink, retries with back-off, a deadline per message.

A reconcile only hands its records over (``submit``: a call_soon_threadsafe, never a wait):
a slow, hanging or failing sink slows nothing but its own queue. A full queue drops the new
message (counted). Logs name the sink and its URL with the secret parts hidden, never the URL.
What to send and how to sign it is render/notification.py's; which events is
rollout/notifications.py's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
)

from .. import metrics
from ..api.notifications import SINKS_SECRET, NotificationFacts
from ..api.pipeline import ReleasePipelineSpec
from ..domain import Policy
from ..k8s.client import ApiError, Kube
from ..net import AddressRefused, CheckedAddresses, Resolver, retry_after_seconds, system_resolver
from ..render.notification import Sink, build_request, delivery_problem, parse_sinks
from ..rollout.notifications import pipeline_notification
from ..rollout.pipeline import Notification

log = logging.getLogger("apprelease.notifications")

@dataclass(frozen=True)
class NotifierOptions:
    console_url: str = ""  # the console's base URL: messages link to the app's page
    # Networks a sink may be in although refused by default (loopback, link-local, ...):
    # `apprelease run --allow-notification-network CIDR`.
    networks_allowed: tuple[str, ...] = ()
    queue_size: int = 100  # per sink
    deadline_seconds: float = 120.0  # per message, retries included
    request_timeout_seconds: float = 5.0
    backoff_seconds: float = 1.0  # the first retry's wait; doubling up to 30 s
    secret_cache_seconds: float = 10.0


class DeliveryFailed(Exception):
    """Worth another try (a transport error, HTTP 5xx or 429, a rate limit inside a 200);
    ``retry_after``: the seconds the sink asked to wait (Retry-After), if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Undeliverable(Exception):
    """Another try would fail the same way (HTTP 4xx, an error code in the answer)."""


@dataclass(frozen=True)
class _Batch:
    namespace: str
    rules: Sequence[Any] | None  # None: a pipeline's rules, read with its spec
    facts: Sequence[NotificationFacts]
    pipeline: str = ""


class Notifier:
    def __init__(self, kube: Kube, policy: Policy, options: NotifierOptions | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 resolver: Resolver | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.kube = kube
        self.options = options or NotifierOptions()
        # The same address check as Nacos servers, with the notification networks allowed.
        self.policy = dataclasses.replace(policy, registry_networks_allowed=self.options.networks_allowed,
                                          nacos_servers=())
        self.clock = clock
        # The same resolve-check-connect as Nacos and analysis servers (net.py): the request
        # goes to the address that was checked, so DNS rebinding cannot move it.
        self._addresses = CheckedAddresses(connect_check=self._refusal, resolver=resolver or system_resolver)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._intake: asyncio.Queue[_Batch] | None = None
        self._queues: dict[tuple[str, str], asyncio.Queue[tuple[Sink, NotificationFacts]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sinks: dict[str, tuple[float, dict[str, Sink]]] = {}
        self._client: httpx.AsyncClient | None = None
        self._transport = transport

    # Any thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Messages still queued are dropped (a stopping operator does not wait on sinks)."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def submit(self, namespace: str, rules: Sequence[Any], facts: Sequence[NotificationFacts]) -> None:
        """Hand an app's notifications over; returns at once."""
        if rules and facts:
            self._hand_over(_Batch(namespace, tuple(rules), tuple(facts)))

    def pipeline_note(self, pipeline: str, note: Notification) -> None:
        """controller/pipelines.py's NOTIFIERS hook: ``pipeline`` is namespace/name."""
        namespace, name = pipeline.split("/", 1)
        facts = pipeline_notification(namespace, name, note, self.clock())
        if facts is not None:
            self._hand_over(_Batch(namespace, None, (facts,), pipeline=name))

    def _hand_over(self, batch: _Batch) -> None:
        try:
            self._loop.call_soon_threadsafe(self._accept, batch)
        except RuntimeError:  # stopped (shutting down, leadership lost): never the caller's failure
            metrics.NOTIFICATIONS.labels("unknown", "dropped").inc(len(batch.facts))

    # The notification thread -----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._intake = asyncio.Queue(self.options.queue_size * 10)
        self._client = httpx.AsyncClient(timeout=self.options.request_timeout_seconds, follow_redirects=False,
                                         trust_env=False, transport=self._transport)
        self._tasks.append(self._loop.create_task(self._dispatch()))
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _accept(self, batch: _Batch) -> None:
        assert self._intake is not None
        try:
            self._intake.put_nowait(batch)
        except asyncio.QueueFull:
            metrics.NOTIFICATIONS.labels("unknown", "dropped").inc(len(batch.facts))
            log.warning("%s: notifications dropped: too many waiting to be routed", batch.namespace)

    async def _dispatch(self) -> None:
        assert self._intake is not None
        while True:
            batch = await self._intake.get()
            try:
                await self._route(batch)
            except Exception:  # one bad batch must not end routing
                log.exception("%s: routing notifications failed", batch.namespace)

    async def _route(self, batch: _Batch) -> None:
        rules = batch.rules if batch.rules is not None else await self._pipeline_rules(batch.namespace, batch.pipeline)
        if not rules:
            return
        sinks = await self._namespace_sinks(batch.namespace)
        for facts in batch.facts:
            for rule in rules:
                if not rule.hears(facts.kind):
                    continue
                sink = sinks.get(rule.sink)
                if sink is None:
                    metrics.NOTIFICATIONS.labels("unknown", "misconfigured").inc()
                    log.warning("%s/%s: %s not sent: no sink %s in Secret %s (keys %s.url, %s.type, %s.secret)",
                                facts.namespace, facts.name, facts.kind, rule.sink, SINKS_SECRET,
                                rule.sink, rule.sink, rule.sink)
                    continue
                self._enqueue(batch.namespace, sink, facts)

    def _enqueue(self, namespace: str, sink: Sink, facts: NotificationFacts) -> None:
        key = (namespace, sink.name)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue(self.options.queue_size)
            self._tasks.append(self._loop.create_task(self._send_loop(namespace, queue)))
        try:
            queue.put_nowait((sink, facts))
        except asyncio.QueueFull:
            metrics.NOTIFICATIONS.labels(sink.type, "dropped").inc()
            log.warning("%s: notification %s of %s dropped: sink %s (%s) has %d waiting",
                        namespace, facts.kind, facts.name, sink.name, sink.shown_url, queue.qsize())

    async def _send_loop(self, namespace: str, queue: asyncio.Queue[tuple[Sink, NotificationFacts]]) -> None:
        while True:
            sink, facts = await queue.get()
            try:
                await self._deliver(namespace, sink, facts)
            except Exception:  # never ends the sink's sender
                log.exception("%s: notification to sink %s failed", namespace, sink.name)

    async def _deliver(self, namespace: str, sink: Sink, facts: NotificationFacts) -> None:
        what = f"{namespace}/{facts.name}: {facts.kind} to sink {sink.name} ({sink.type} {sink.shown_url})"
        deadline = time.monotonic() + self.options.deadline_seconds
        backoff = wait_exponential(multiplier=self.options.backoff_seconds, max=30)

        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome is not None else None
            if isinstance(failed, DeliveryFailed) and failed.retry_after is not None:
                return failed.retry_after
            return backoff(state)

        retrying = AsyncRetrying(
            # A wait that would end past the deadline gives up now (a Retry-After of an hour).
            stop=stop_before_delay(self.options.deadline_seconds),
            wait=wait, retry=retry_if_exception_type(DeliveryFailed), reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._send_once(sink, facts, deadline)
        except AddressRefused as exc:
            metrics.NOTIFICATIONS.labels(sink.type, "refused").inc()
            log.warning("%s not sent: %s", what, exc)
            return
        except (DeliveryFailed, Undeliverable) as exc:
            metrics.NOTIFICATIONS.labels(sink.type, "failed").inc()
            log.warning("%s failed: %s", what, exc)
            return
        metrics.NOTIFICATIONS.labels(sink.type, "delivered").inc()
        log.info("%s delivered", what)

    async def _send_once(self, sink: Sink, facts: NotificationFacts, deadline: float) -> None:
        assert self._client is not None
        request = build_request(sink, facts, self.clock(), self._link(facts))  # signed now: fresh timestamps
        timeout = max(0.1, min(self.options.request_timeout_seconds, deadline - time.monotonic()))
        try:
            route = await self._addresses.route(request.url)
            response = await self._client.post(route.url, content=request.body,
                                               headers={**request.headers, **route.headers},
                                               extensions=route.extensions, timeout=timeout)
        except httpx.HTTPError as exc:
            self._addresses.forget()  # the server may have moved: resolve (and check) again
            metrics.NOTIFICATION_ATTEMPTS.labels(sink.type, "error").inc()
            raise DeliveryFailed(_describe(exc)) from None
        problem = delivery_problem(sink.type, response.status_code, response.text)
        metrics.NOTIFICATION_ATTEMPTS.labels(sink.type, "error" if problem else "ok").inc()
        if problem is None:
            return
        if problem.retry:
            raise DeliveryFailed(problem.message, retry_after_seconds(response.headers))
        raise Undeliverable(problem.message)

    def _link(self, facts: NotificationFacts) -> str:
        base = self.options.console_url.rstrip("/")
        if not base or facts.subject != "AppRelease":
            return base
        return f"{base}/apps/{facts.namespace}/{facts.name}"

    def _refusal(self, host: str, port: int, address: str) -> str | None:
        """Why the policy refuses this address of a sink (SSRF: no loopback, metadata endpoint
        or apiserver unless --allow-notification-network), or None."""
        kind = self.policy.registry_address_refusal(host, port, address)
        if kind is None:
            return None
        return (f"{host}:{port} resolves to {address}, {kind}; the operator does not send there unless the"
                " platform allows it (apprelease run --allow-notification-network CIDR)")

    async def _namespace_sinks(self, namespace: str) -> dict[str, Sink]:
        cached = self._sinks.get(namespace)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        try:
            secret = await asyncio.to_thread(self.kube.get, "Secret", namespace, SINKS_SECRET)
        except ApiError as exc:
            if not exc.not_found:
                hint = " (the operator needs RBAC to read it; docs/notifications.md)" if exc.status == 403 else ""
                log.warning("%s: cannot read Secret %s: %s%s", namespace, SINKS_SECRET, exc.reason, hint)
                metrics.NOTIFICATIONS.labels("unknown", "misconfigured").inc()
                return {}
            secret = {}
        data = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError, TypeError):
                data[key] = b"\xff"
        sinks, problems = parse_sinks(data)
        for problem in problems:
            log.warning("%s: Secret %s: %s", namespace, SINKS_SECRET, problem)
        self._sinks[namespace] = (time.monotonic() + self.options.secret_cache_seconds, sinks)
        return sinks

    async def _pipeline_rules(self, namespace: str, name: str) -> Sequence[Any]:
        try:
            body = await asyncio.to_thread(self.kube.get, "ReleasePipeline", namespace, name)
            return ReleasePipelineSpec.model_validate(body.get("spec") or {}).notifications
        except (ApiError, ValidationError) as exc:
            log.warning("%s/%s: pipeline notifications not sent: %s", namespace, name, exc)
            return ()


def _describe(exc: httpx.HTTPError) -> str:
    """What went wrong, without the URL (httpx puts it in some messages)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc).split(" for url ", 1)[0]
    return f"{type(exc).__name__}: {text}" if "://" not in text else type(exc).__name__
