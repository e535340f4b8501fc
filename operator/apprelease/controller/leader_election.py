"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it, with fencing.

Every replica runs the informers and kopf's index (warm caches); only the lease holder runs the
workers and writes. The holder renews every retryPeriod, with optimistic concurrency on the
Lease's resourceVersion. The others read the Lease every retryPeriod and take it only once it
has not changed for leaseDuration *as seen by their own monotonic clock* (never by comparing
the renewTime written with another machine's clock), and again only by an update naming the
resourceVersion they saw: if the holder renewed meanwhile, the update fails.

Fencing: the holder's writes pass through a WriteFence (k8s/fence.py) open until "the last
successful renewal was sent + renewDeadline". A successful renewal was committed after it was
sent and before any other replica could read it, and another replica acquires only
leaseDuration after reading it, so the holder stops writing at least leaseDuration -
renewDeadline before anybody else can start. A holder that misses its deadline steps down for
good: the process exits and its restart is a fresh standby (as client-go's controllers do).

The decision itself is a pure function of (lease, what this replica last saw, now, identity).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from .. import metrics
from ..k8s.client import RESOURCES, ApiError, Kube
from ..k8s.fence import WriteFence

log = logging.getLogger("apprelease.leader")

# leaseDuration - renewDeadline is the time between the holder's last possible write and the
# first possible write of its successor: for a write sent just before the deadline to reach the
# apiserver, and for clock rates that differ a little. Less than this is refused.
MIN_FENCING_MARGIN_SECONDS = 2.0
# As client-go: the renew deadline must leave room for more than one retry.
JITTER_FACTOR = 1.2
LEASE_API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class ElectionTimings:
    """client-go's defaults (kube-controller-manager uses the same)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        found = []
        if self.lease_duration < self.renew_deadline + MIN_FENCING_MARGIN_SECONDS:
            found.append(
                f"leaseDuration ({self.lease_duration:g} s) must exceed renewDeadline"
                f" ({self.renew_deadline:g} s) by at least {MIN_FENCING_MARGIN_SECONDS:g} s: a replica"
                " that lost the lease must have stopped writing before another may acquire it"
            )
        if self.retry_period <= 0 or self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            found.append(
                f"retryPeriod ({self.retry_period:g} s) must be positive and renewDeadline"
                f" ({self.renew_deadline:g} s) more than {JITTER_FACTOR:g} times retryPeriod"
            )
        return found


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec, and the resourceVersion it was read (or written) at."""

    holder: str  # "" once released
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str = ""


@dataclass(frozen=True)
class Sighting:
    """A version of the lease, and when (monotonic) this replica first read it."""

    version: str
    at: float


class Action(enum.Enum):
    CREATE = "create"  # there is no lease: create it naming us
    ACQUIRE = "acquire"  # free, expired, or ours without our knowing: update it naming us
    RENEW = "renew"  # ours: update its renewTime
    STAND_BY = "stand by"  # another's, and not expired as seen from here
    STEP_DOWN = "step down"  # we were leading, and are not any more


@dataclass(frozen=True)
class Decision:
    action: Action
    sighting: Sighting | None
    reason: str


def decide(
    lease: LeaseRecord | None, sighting: Sighting | None, now: float, identity: str,
    *, leading_until: float | None,
) -> Decision:
    """What to do with the lease just read. ``sighting``: the version this replica saw last and
    when it first saw it; ``now`` and ``leading_until`` (our renew deadline, None when not
    leading) on this replica's monotonic clock."""
    leading = leading_until is not None
    if leading and leading_until is not None and now >= leading_until:
        return Decision(Action.STEP_DOWN, sighting, "past the renew deadline without a renewal")
    if lease is None:
        if leading:
            return Decision(Action.STEP_DOWN, None, "the lease was deleted")
        return Decision(Action.CREATE, None, "no lease yet")
    if sighting is None or sighting.version != lease.resource_version:
        sighting = Sighting(lease.resource_version, now)
    if lease.holder == identity:
        return Decision(Action.RENEW if leading else Action.ACQUIRE, sighting, "held by this replica")
    if leading:
        return Decision(Action.STEP_DOWN, sighting, f"the lease is held by {lease.holder or 'nobody'}")
    if not lease.holder:
        return Decision(Action.ACQUIRE, sighting, "the lease was released")
    expires = sighting.at + lease.duration_seconds
    if now >= expires:
        return Decision(Action.ACQUIRE, sighting, f"{lease.holder} did not renew for {lease.duration_seconds} s")
    return Decision(Action.STAND_BY, sighting, f"held by {lease.holder} (expires in {expires - now:.1f} s unless renewed)")


class LeaseConflict(Exception):
    """The lease changed since it was read (optimistic concurrency), or exists already."""


class LeaseStore(Protocol):
    def get(self) -> LeaseRecord | None: ...
    def create(self, record: LeaseRecord) -> LeaseRecord: ...
    def update(self, record: LeaseRecord) -> LeaseRecord: ...


def new_identity() -> str:
    """The pod's name (or host name) and a random suffix: a restarted process is a new holder."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{secrets.token_hex(4)}"


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One replica's side of the election. ``tick()`` does one round and says when to call it
    again (None once stepped down); ``run()`` calls it on a thread of its own, so a busy event
    loop cannot delay a renewal (and the fence holds even if this thread is starved)."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        timings: ElectionTimings,
        fence: WriteFence,
        *,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _micro_time,
        jitter: Callable[[], float] | None = None,
        lease_name: str = "lease",
    ):
        self.store = store
        self.identity = identity
        self.timings = timings
        self.fence = fence
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall = wall
        self._jitter = jitter or (lambda: random.uniform(0, 0.2 * timings.retry_period))
        self.lease_name = lease_name
        self._lock = threading.Lock()
        self._leading = False
        self._leading_until = -math.inf
        self._record: LeaseRecord | None = None  # what we last wrote, while leading
        self._sighting: Sighting | None = None
        self._expires: float | None = None  # another's lease, as seen from here
        self._holder_seen: str | None = None
        self._done = False
        self._started_at: float | None = None
        self._last_ok: float | None = None
        self._last_error: str | None = None

    @property
    def leading(self) -> bool:
        return self._leading

    # One round ---------------------------------------------------------------------------------

    def tick(self) -> float | None:
        with self._lock:
            if self._done:
                return None
            if self._started_at is None:
                self._started_at = self._clock()
            try:
                self._round()
            except LeaseConflict as exc:
                self._record = None  # read it back next round
                self._failed(f"the lease changed meanwhile ({exc})")
            except Exception as exc:  # the apiserver unreachable, 5xx, 403...: retried
                self._failed(f"{type(exc).__name__}: {exc}")
            if self._leading and self._clock() >= self._leading_until:
                self._step_down(
                    f"could not renew the lease before its renew deadline ({self.timings.renew_deadline:g} s):"
                    f" {self._last_error or 'no answer'}"
                )
            return None if self._done else self._next_wait()

    def _round(self) -> None:
        now = self._clock()
        if self._leading and self._record is not None and now < self._leading_until:
            self._write(Action.RENEW, self._record)
            return
        lease = self.store.get()
        self._succeeded()
        decision = decide(lease, self._sighting, self._clock(), self.identity,
                          leading_until=self._leading_until if self._leading else None)
        self._sighting = decision.sighting
        self._expires = None
        if decision.action is Action.STEP_DOWN:
            self._step_down(decision.reason)
        elif decision.action is Action.STAND_BY:
            assert lease is not None and decision.sighting is not None
            self._expires = decision.sighting.at + lease.duration_seconds
            if lease.holder != self._holder_seen:
                log.info("standing by: lease %s %s", self.lease_name, decision.reason)
                self._holder_seen = lease.holder
        else:
            self._write(decision.action, lease)

    def _write(self, action: Action, lease: LeaseRecord | None) -> None:
        sent = self._clock()  # before the request: the commit, and any reader's sighting, are later
        record = self._next_record(action, lease)
        stored = self.store.create(record) if action is Action.CREATE else self.store.update(record)
        self._succeeded()
        self._record = stored
        self._leading_until = sent + self.timings.renew_deadline
        self.fence.extend(self._leading_until)
        if not self._leading:
            self._leading = True
            self._holder_seen = self.identity
            metrics.LEADER.set(1)
            metrics.LEADER_TRANSITIONS.labels("acquired").inc()
            log.info("leading: acquired lease %s as %s (%s)", self.lease_name, self.identity,
                     "created" if action is Action.CREATE else f"previous holder: {(lease.holder if lease else None) or 'none, released'}")
            self._on_started()

    def _next_record(self, action: Action, lease: LeaseRecord | None) -> LeaseRecord:
        now = self._wall()
        duration = math.ceil(self.timings.lease_duration)
        if action is Action.CREATE or lease is None:
            return LeaseRecord(self.identity, duration, now, now, 0)
        if lease.holder != self.identity:
            return replace(lease, holder=self.identity, duration_seconds=duration, acquire_time=now,
                           renew_time=now, transitions=lease.transitions + 1)
        return replace(lease, duration_seconds=duration, renew_time=now)

    def _step_down(self, reason: str) -> None:
        self.fence.close()  # first: from here on, every write of this process is refused
        was_leading, self._leading, self._done = self._leading, False, True
        if was_leading:
            metrics.LEADER.set(0)
            metrics.LEADER_TRANSITIONS.labels("lost").inc()
            log.error("stopped leading (lease %s): %s", self.lease_name, reason)
            self._on_stopped(reason)

    def _next_wait(self) -> float:
        now = self._clock()
        if self._leading:
            # Renew every retryPeriod; after failures, wake at the deadline to step down on time.
            return max(0.01, min(self.timings.retry_period, self._leading_until - now))
        wait = self.timings.retry_period
        if self._expires is not None:
            wait = min(wait, max(0.0, self._expires - now))
        return wait + self._jitter()

    def _succeeded(self) -> None:
        if self._last_error is not None:
            log.info("lease %s reachable again", self.lease_name)
        self._last_ok, self._last_error = self._clock(), None

    def _failed(self, error: str) -> None:
        if error != self._last_error:
            log.warning("lease %s: %s", self.lease_name, error)
        self._last_error = error

    # Lifecycle ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event, candidate: threading.Event) -> None:
        """Until ``stop``; becomes a candidate only once ``candidate`` is set (the caches are
        listed: a replica that cannot work yet leaves the lease to one that can)."""
        while not stop.is_set() and not candidate.wait(0.5):
            pass
        while not stop.is_set():
            wait = self.tick()
            if wait is None:
                return
            stop.wait(wait)

    def release(self, drain_timeout: float) -> bool:
        """On shutdown, once the fence is closed: wait for writes in flight to land, then hand
        the lease back so a standby takes over at its next look instead of after leaseDuration.
        False (the lease then simply expires) when not leading, when writes are still in flight
        after ``drain_timeout``, or past the renew deadline."""
        with self._lock:
            self._done = True
            if not self._leading or self._record is None:
                return False
            self.fence.close()
            if not self.fence.wait_idle(min(drain_timeout, self.fence.remaining())):
                log.warning("lease %s not released: writes still in flight; it expires in %g s",
                            self.lease_name, self.timings.lease_duration)
                return False
            if self._clock() >= self._leading_until:
                return False
            now = self._wall()
            released = replace(self._record, holder="", duration_seconds=1, acquire_time=now, renew_time=now)
            try:
                self.store.update(released)
            except Exception as exc:
                log.warning("lease %s not released (%s); it expires in %g s", self.lease_name, exc,
                            self.timings.lease_duration)
                return False
            self._leading = False
            metrics.LEADER.set(0)
            metrics.LEADER_TRANSITIONS.labels("released").inc()
            log.info("released lease %s", self.lease_name)
            return True

    def health(self, unreachable_after: float) -> list[str]:
        """A replica that has not been able to read or write its lease for a long while (RBAC,
        a missing namespace) can never take over: liveness says so."""
        if self._done or self._started_at is None:
            return []
        since = self._last_ok if self._last_ok is not None else self._started_at
        if self._clock() - since > unreachable_after:
            return [f"lease {self.lease_name} unusable for {self._clock() - since:.0f} s: {self._last_error}"]
        return []


class KubeLeaseStore:
    """The Lease in the apiserver: create, and updates (PUT) with its resourceVersion."""

    def __init__(self, kube: Kube, namespace: str, name: str):
        self.kube = kube
        self.namespace = namespace
        self.name = name

    def get(self) -> LeaseRecord | None:
        try:
            body = self.kube.get("Lease", self.namespace, self.name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return _from_lease(body)

    def create(self, record: LeaseRecord) -> LeaseRecord:
        try:
            body = self.kube.request("POST", RESOURCES["Lease"].path(self.namespace),
                                     body=self._lease(record), resource="Lease")
        except ApiError as exc:
            if exc.conflict:
                raise LeaseConflict(exc.message) from None
            raise
        return _from_lease(body)

    def update(self, record: LeaseRecord) -> LeaseRecord:
        try:
            body = self.kube.request("PUT", RESOURCES["Lease"].path(self.namespace, self.name),
                                     body=self._lease(record), resource="Lease")
        except ApiError as exc:
            if exc.conflict or exc.not_found:
                raise LeaseConflict(exc.message) from None
            raise
        return _from_lease(body)

    def _lease(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.duration_seconds,
                "acquireTime": record.acquire_time,
                "renewTime": record.renew_time,
                "leaseTransitions": record.transitions,
            },
        }


def _from_lease(body: dict[str, Any]) -> LeaseRecord:
    spec = body.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
    )
