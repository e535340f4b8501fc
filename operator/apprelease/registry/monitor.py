"""The registry side of a reconcile: what the registry says now, and the actions on it.

EndpointSlices come from the watch caches (no I/O here). Nacos I/O never runs on a reconcile
worker: each Nacos server (address list) has a lane of its own, one thread that reads and
writes for the apps using that server, so a slow or hostile server delays only its own apps.
Every call has a total deadline (registry/nacos.py), and a read older than its bound (a lane
held up, whatever the cause) counts as an outage, not as what the registry says now: the app
is woken to see so, and a lane held by one call for minutes fails liveness. Reads are polled
every few seconds with back-off on errors; a change wakes that AppRelease, an unchanged read
wakes nothing (an idle app writes no status). Writes are the planner's latest wishes: re-asking for one already
done (or queued) is free, and one the planner stopped asking for is dropped before it runs.
Credentials are read from the referenced Secret and never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..api.registry import NacosRegistry as NacosRegistrySpec
from ..api.spec import AppRelease
from ..api.status import RegistrationStatus
from ..backoff import exponential_backoff
from ..domain import APISERVER, Policy, RegistryAction
from ..k8s.client import ApiError, Kube
from ..k8s.fence import NotLeading, WriteFence
from ..k8s.observe import AppKey
from ..net import literal_address
from ..rollout.observed import Observed, Registration
from ..rollout.timefmt import format_time
from .base import (
    InstanceNotRegistered,
    RegistryInstance,
    RegistryMisconfigured,
    RegistryUnavailable,
)
from .nacos import CALL_DEADLINE_SECONDS, NacosRegistry, NacosSettings
from .registration import PENDING, WRITE_FAILED, RegistryRead, endpoint_slice_instances, summarize

log = logging.getLogger("apprelease.registry")

POLL_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0
SECRET_CACHE_SECONDS = 60.0
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
IDLE_WAIT_SECONDS = 0.5

# An action is identified by everything it writes: a new wish for the same instance replaces
# the queued one (queued is rebuilt from each plan), the same wish again is not rewritten.
ActionKey = RegistryAction
# While pods join or leave, their registration is read this often (a new pod turns Ready only
# once a read shows it registered).
BUSY_POLL_SECONDS = 1.0
# Nacos lists a write a moment after it answered: only a read that begins this long after a
# write shows whether it worked (until one, the write is not repeated, nor shown as undone).
WRITE_SETTLE_SECONDS = 2.0
# A good read is due every poll and takes one call at most; older than a few of those, it no
# longer says what the registry holds now (never less than this).
MIN_STALE_SECONDS = 30.0
# One lane job (one call) this long means the deadlines failed: liveness restarts the operator.
STUCK_LANE_SECONDS = 10 * CALL_DEADLINE_SECONDS
# How often the watchdog looks for stale reads.
WATCHDOG_SECONDS = 1.0
# Undoing a write ahead is housekeeping: tried this often, then given up (logged).
UNDO_AHEAD_ATTEMPTS = 5


def _action_key(action: RegistryAction) -> ActionKey:
    return action


def _settling(target: _Target, action: RegistryAction) -> bool:
    """This very write worked, and no read since shows whether Nacos lists it yet."""
    last = target.done.get((action.ip, action.port))
    return last is not None and last[0] == _action_key(action)


@dataclass
class _Target:
    """One AppRelease's Nacos service: its client, last read and pending writes."""

    key: AppKey
    fingerprint: str
    client: NacosRegistry
    read: RegistryRead | None = None
    next_poll: float = 0.0
    failures: int = 0
    queued: dict[ActionKey, RegistryAction] = field(default_factory=dict)
    # The write the lane is sending now: a plan asking for it again does not queue it twice.
    in_flight: ActionKey | None = None
    # Per ip:port, the last write that worked and when, until a read that began once it
    # settled (WRITE_SETTLE_SECONDS) shows whether Nacos applied it. Meanwhile it is not
    # written twice, and the planner sees it laid over the reads (_with_written): a read from
    # before must neither show an instance we enabled as disabled (a deletion or drain would
    # take that for "already offline") nor one we disabled as enabled (`online` right after
    # `offline` would then find nothing of ours to enable again).
    done: dict[tuple[str | None, int | None], tuple[ActionKey, float]] = field(default_factory=dict)
    next_write: float = 0.0
    write_failures: int = 0
    write_error: str | None = None
    write_error_reason: str | None = None
    # Writes ahead of an instance (a joining pod): kept past reads, which cannot show them,
    # until a read lists the instance (its record is then Nacos' to expire) or the planner no
    # longer asks for them (the pod left without registering: the write is undone).
    written_ahead: set[ActionKey] = field(default_factory=set)
    # Those being undone, with the attempts so far.
    undoing: dict[ActionKey, int] = field(default_factory=dict)
    # Forgotten (app deleted, settings changed) with writes ahead still to undo: the lane
    # undoes them with this client, then closes it.
    retiring: bool = False
    busy: bool = False
    # When the last read ended (monotonic), whatever it found; and whether the app was shown
    # (or woken to see) its read as stale since: the next read wakes it even if unchanged.
    read_at: float = field(default_factory=time.monotonic)
    stale_shown: bool = False
    # Whether the planner's last view had instances: only then does a write ahead it no
    # longer asks for mean its pod is gone (without a read it asks for nothing at all).
    planned_on_a_read: bool = False
    # When the latest good read began (wall clock, whole seconds), changed or not.
    taken_at: str | None = None
    # A pod is newer than the read (its address may show a predecessor's instance): the next
    # read wakes the app even if nothing changed, so the pod is judged on a read of its time.
    confirm_pods: bool = False


class _Lane:
    """The thread serving one Nacos server: reads and writes of its apps, one at a time."""

    def __init__(self, name: str, monitor: RegistryMonitor):
        self.name = name
        self.monitor = monitor
        self.targets: dict[AppKey, _Target] = {}
        self.retiring: list[_Target] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.job_started: float | None = None  # monotonic start of the job running now
        self.thread = threading.Thread(target=self._run, name=f"registry-{name}"[:60], daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def poke(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                if self.stopping:
                    return
                job = self._next_job()
                if job is None:
                    self.cond.wait(self._idle_wait())
                    continue
                self.job_started = time.monotonic()
            try:
                job()
            except Exception:  # the lane serves every app of this server: it goes on
                log.exception("registry lane %s: unexpected error", self.name)
            finally:
                self.job_started = None

    def _idle_wait(self) -> float:
        now = time.monotonic()
        due = [t.next_poll for t in self.targets.values()]
        due += [t.next_write for t in (*self.targets.values(), *self.retiring) if t.queued]
        return max(0.01, min([IDLE_WAIT_SECONDS, *(d - now for d in due)]))

    def _next_job(self) -> Callable[[], None] | None:
        """Writes first (a drain waits on them), then the most overdue read. Lock held."""
        now = time.monotonic()
        for target in [t for t in self.retiring if not t.queued]:
            self.retiring.remove(target)  # its writes ahead undone (or given up)
            target.client.close()
        for target in (*self.targets.values(), *self.retiring):
            if target.queued and target.next_write <= now:
                key, action = next(iter(target.queued.items()))
                del target.queued[key]
                target.in_flight = key
                return functools.partial(self.monitor._write, self, target, key, action)
        due = [t for t in self.targets.values() if t.next_poll <= now]
        if due:
            target = min(due, key=lambda t: t.next_poll)
            target.next_poll = now + self.monitor.poll_seconds  # not picked twice meanwhile
            return functools.partial(self.monitor._poll, self, target)
        return None


@dataclass
class _CachedSecret:
    data: dict[str, bytes]
    fetched: float = field(default_factory=time.monotonic)


class RegistryMonitor:
    def __init__(
        self,
        kube: Kube,
        endpoint_slices: Callable[[AppKey], list[dict[str, Any]]],
        notify: Callable[[AppKey], None],
        *,
        poll_seconds: float = POLL_SECONDS,
        policy: Policy | None = None,
        fence: WriteFence | None = None,
        stale_after: float | None = None,
    ):
        """``fence``: under leader election, registry writes are made only while this replica
        holds the lease (reads, for the status, always)."""
        self.kube = kube
        self.fence = fence
        self.endpoint_slices = endpoint_slices
        self.notify = notify
        self.poll_seconds = poll_seconds
        self.stale_after = stale_after or max(MIN_STALE_SECONDS, 3 * poll_seconds + 2 * CALL_DEADLINE_SECONDS)
        self._watchdog = threading.Thread(target=self._watch, name="registry-watchdog", daemon=True)
        self._stopping = threading.Event()
        self.policy = policy or Policy()
        self._lanes: dict[str, _Lane] = {}
        self._where: dict[AppKey, _Lane] = {}
        self._secrets: dict[tuple[str, str], _CachedSecret] = {}
        self._lock = threading.Lock()
        self._started = False

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._started = True
            for lane in self._lanes.values():
                if not lane.thread.is_alive():
                    lane.start()
            if not self._watchdog.is_alive():
                self._watchdog.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
            self._where.clear()
        for lane in lanes:
            lane.stop()
        for lane in lanes:
            if lane.thread.ident is not None:  # started
                lane.thread.join(timeout=15)
            for target in (*lane.targets.values(), *lane.retiring):
                target.client.close()

    def forget(self, key: AppKey) -> None:
        with self._lock:
            lane = self._where.pop(key, None)
        if lane is None:
            return
        with lane.cond:
            target = lane.targets.pop(key, None)
            if target is not None and (target.written_ahead or target.undoing):
                target.retiring = True
                target.undoing.update({_undo_ahead(a): 0 for a in target.written_ahead})
                target.written_ahead.clear()
                target.queued = {k: k for k in target.undoing}
                target.next_write = 0.0
                lane.retiring.append(target)
                lane.cond.notify_all()
                return
        if target is not None:
            target.client.close()

    def health(self) -> list[str]:
        with self._lock:
            if not self._started:
                return []
            lanes = list(self._lanes.items())
        now = time.monotonic()
        problems = [f"registry lane {n} not running" for n, lane in lanes if not lane.thread.is_alive()]
        for name, lane in lanes:
            started = lane.job_started
            if started is not None and now - started > STUCK_LANE_SECONDS:
                problems.append(f"registry lane {name} stuck in one call for {now - started:.0f} s")
        if not self._watchdog.is_alive() and not self._stopping.is_set():
            problems.append("registry watchdog not running")
        return problems

    def _watch(self) -> None:
        """Wake the apps whose last good read went stale (their lane is held up): nothing
        else would, since a lane that does not read does not notify."""
        while not self._stopping.wait(min(WATCHDOG_SECONDS, self.stale_after / 2)):
            with self._lock:
                lanes = list(self._lanes.values())
            stale = []
            for lane in lanes:
                with lane.cond:
                    for target in lane.targets.values():
                        if not target.stale_shown and self._stale_age(target) is not None:
                            target.stale_shown = True
                            stale.append(target.key)
            for key in stale:
                self.notify(key)

    def _stale_age(self, target: _Target) -> float | None:
        """How old the target's good read is, if older than its bound; else None."""
        if target.read is None or target.read.instances is None:
            return None  # no read yet, or a failure: shown as such already
        age = time.monotonic() - target.read_at
        return age if age > self.stale_after else None

    # What the planner sees -------------------------------------------------------------------

    def state_for(
        self, app: AppRelease, observed: Observed, previous: RegistrationStatus | None = None
    ) -> Observed:
        """``observed`` completed with the registration (and the gate, with Nacos). No I/O
        but the Kubernetes API (the credentials Secret, cached)."""
        key = (app.namespace, app.name)
        revisions = {track: _revision_of(observed, track) for track in observed.deployments}
        registry = app.spec.registry
        if registry is None or registry.nacos is None:
            self.forget(key)
            ports = app.spec.container_ports()
            instances = endpoint_slice_instances(self.endpoint_slices(key), ports[0].name if ports else None)
            read = RegistryRead(tuple(instances))
            registration = summarize(
                provider="kubernetes", service=f"{app.namespace}/{app.name}", read=read,
                pods=observed.pods, revisions=revisions, previous=previous,
            )
            return _with(observed, registration, gate=False)
        nacos = registry.nacos
        service = f"{nacos.group}@@{nacos.service_name}"
        try:
            read = self._current_read(self._target(app))
        except RegistryUnavailable as exc:
            self.forget(key)
            read = RegistryRead(None, str(exc), reason=exc.reason)
        registration = summarize(
            provider="nacos", service=service, read=read, pods=observed.pods, revisions=revisions,
            previous=previous,
        )
        if registration.unconfirmed:
            self._confirm_pods(key)
        return _with(observed, registration, gate=True)

    def _confirm_pods(self, key: AppKey) -> None:
        with self._lock:
            lane = self._where.get(key)
        if lane is None:
            return
        with lane.cond:
            target = lane.targets.get(key)
            if target is not None:
                target.confirm_pods = True
                target.next_poll = min(target.next_poll, time.monotonic() + BUSY_POLL_SECONDS)

    def _current_read(self, target: _Target) -> RegistryRead:
        read = target.read or RegistryRead(None, "waiting for the first read", reason=PENDING)
        age = self._stale_age(target)
        if age is not None:
            target.stale_shown = True
            read = RegistryRead(
                None, f"no answer from the registry for {age:.0f} s (a read is due every"
                f" {self.poll_seconds:g} s; the last one is older than {self.stale_after:.0f} s)",
                read.changed_at, reason="RegistryUnavailable",
            )
        if read.instances is not None and target.done:
            read = dataclasses.replace(read, instances=_with_written(read.instances, target.done))
        if read.instances is not None:
            read = dataclasses.replace(read, taken_at=target.taken_at)
        target.planned_on_a_read = read.instances is not None
        if target.write_error is not None:
            return dataclasses.replace(read, write_error=target.write_error,
                                       write_error_reason=target.write_error_reason)
        return read

    # Actions ---------------------------------------------------------------------------------

    def execute(self, app: AppRelease, actions: tuple[RegistryAction, ...], *, busy: bool = False) -> None:
        """Hand the plan's registry actions to the server's lane (no registry I/O here).
        Pod annotations (which pods a scale-down removes) are Kubernetes writes: done now.
        ``busy``: pods are joining or leaving, so the lane reads this service more often."""
        key = (app.namespace, app.name)
        for action in actions:
            if action.kind == "mark-leaving":
                self._mark_leaving(app, action.pod or "")
        wanted = [a for a in actions if a.kind != "mark-leaving"]
        with self._lock:
            lane = self._where.get(key)
        if lane is None:
            return  # no client (misconfigured, or no Nacos): state_for says why
        with lane.cond:
            target = lane.targets.get(key)
            if target is None:
                return
            target.busy = busy
            asked = {_action_key(a) for a in wanted}
            left = target.written_ahead - asked if target.planned_on_a_read else set()
            for gone in left:  # the pod left (or moved) without registering
                target.written_ahead.discard(gone)
                target.undoing.setdefault(_undo_ahead(gone), 0)
            for undo in [k for k in target.undoing if _ahead_of(k) in asked]:
                del target.undoing[undo]  # asked for again: it stays
            target.queued = {
                _action_key(a): a for a in wanted
                if not _settling(target, a) and _action_key(a) not in target.written_ahead
                and _action_key(a) != target.in_flight
            }
            target.queued.update({k: k for k in target.undoing})
            if target.queued:
                lane.cond.notify_all()

    def _mark_leaving(self, app: AppRelease, pod: str) -> None:
        """Make the ReplicaSet remove exactly the pods we took offline."""
        patch = {"metadata": {"annotations": {DELETION_COST: "-1000"}}}
        try:
            self.kube.merge_patch("Pod", app.namespace, pod, patch)
        except ApiError as exc:
            if not exc.not_found:
                raise

    # Lane work (on the lane's thread) --------------------------------------------------------

    def _poll(self, lane: _Lane, target: _Target) -> None:
        stamp = format_time(datetime.now(UTC))
        started = time.monotonic()
        try:
            instances = tuple(sorted(target.client.list_instances(), key=_instance_order))
            read = RegistryRead(instances, None, stamp)
            failures = 0
            next_poll = time.monotonic() + (min(BUSY_POLL_SECONDS, self.poll_seconds) if target.busy else self.poll_seconds)
        except RegistryUnavailable as exc:
            read = RegistryRead(None, str(exc), stamp, reason=exc.reason)
            failures = target.failures + 1
            next_poll = time.monotonic() + exponential_backoff(failures, self.poll_seconds, MAX_BACKOFF_SECONDS)
        with lane.cond:
            if lane.targets.get(target.key) is not target:
                return  # forgotten or replaced (its client closed) while we read it
            target.failures, target.next_poll = failures, next_poll
            wake_anyway, target.read_at, target.stale_shown = target.stale_shown, time.monotonic(), False
            if read.instances is not None:
                target.taken_at = stamp
                wake_anyway, target.confirm_pods = wake_anyway or target.confirm_pods, False
                listed = {(i.ip, i.port) for i in read.instances}
                target.written_ahead = {k for k in target.written_ahead if (k.ip, k.port) not in listed}
                shown = len(target.done)
                # Only a read that began once a write had settled shows whether it worked, and
                # only on the instance it was made on: one that left since (and may register
                # again, without it) never saw it.
                target.done = {where: (key, at) for where, (key, at) in target.done.items()
                               if started < at + WRITE_SETTLE_SECONDS and where in listed}
                wake_anyway = wake_anyway or len(target.done) < shown  # the view may change
            previous = target.read
            unchanged = previous is not None and previous.instances == read.instances and previous.error == read.error
            if unchanged and not wake_anyway:
                return  # nothing new: keep the old read (and its time), wake nobody
            if not unchanged:
                target.read = read
        self.notify(target.key)

    def _write(self, lane: _Lane, target: _Target, key: ActionKey, action: RegistryAction) -> None:
        try:
            self._send(lane, target, key, action)
        finally:  # after its outcome is recorded (done, or queued again): no window to re-queue it
            with lane.cond:
                if target.in_flight == key:
                    target.in_flight = None

    def _send(self, lane: _Lane, target: _Target, key: ActionKey, action: RegistryAction) -> None:
        error: RegistryUnavailable | None = None
        fenced = (self.fence.writing(f"registry {action.kind} {action.ip}:{action.port}")
                  if self.fence is not None else contextlib.nullcontext())
        try:
            with fenced:
                self._run_action(target.client, action)
        except NotLeading as exc:
            log.info("%s/%s: %s", target.key[0], target.key[1], exc)
            return  # dropped: the replica that holds the lease plans its own writes
        except InstanceNotRegistered:
            pass  # gone meanwhile: nothing left to take offline or reset
        except RegistryUnavailable as exc:
            error = exc
        if action.kind == "undo-ahead":
            self._undone(lane, target, key, action, error)
            return
        woke = False
        with lane.cond:
            if lane.targets.get(target.key) is not target:
                return
            if error is None:
                if action.must_exist:
                    target.done[(action.ip, action.port)] = (key, time.monotonic())
                else:
                    target.written_ahead.add(key)
                target.write_failures = 0
                target.next_write = 0.0
                target.next_poll = 0.0  # read back what we changed right away
                woke = target.write_error is not None
                target.write_error = target.write_error_reason = None
                log.info("%s/%s: registry %s %s:%s %s (pod %s, %s)", target.key[0], target.key[1],
                         action.kind, action.ip, action.port, _describe(action), action.pod or "-",
                         action.reason or "-")
            else:
                target.queued.setdefault(key, action)
                target.write_failures += 1
                target.next_write = time.monotonic() + exponential_backoff(
                    target.write_failures, 1.0, MAX_BACKOFF_SECONDS)
                message = f"{action.kind} {action.ip}:{action.port} failed: {error}"
                reason = error.reason if error.reason in ("RegistryRefused", "RegistryMisconfigured") else WRITE_FAILED
                woke = message != target.write_error
                target.write_error, target.write_error_reason = message, reason
                log.warning("%s/%s: registry %s", target.key[0], target.key[1], message)
        if woke:
            self.notify(target.key)

    def _undone(
        self, lane: _Lane, target: _Target, key: ActionKey, action: RegistryAction, error: RegistryUnavailable | None
    ) -> None:
        """After undoing a write ahead: done, or retried with back-off a few times. Never an
        error on the app: it is housekeeping for an address the app no longer uses."""
        with lane.cond:
            if target.undoing.get(key) is None:
                return  # asked for again meanwhile, or the target was replaced
            attempts = target.undoing[key] + 1
            if error is None or attempts >= UNDO_AHEAD_ATTEMPTS:
                del target.undoing[key]
                target.queued.pop(key, None)
            else:
                target.undoing[key] = attempts
                target.queued.setdefault(key, action)
                target.next_write = time.monotonic() + exponential_backoff(attempts, 1.0, MAX_BACKOFF_SECONDS)
        if error is None:
            log.info("%s/%s: registry write ahead for %s:%s undone (pod %s left without registering)",
                     target.key[0], target.key[1], action.ip, action.port, action.pod or "-")
        else:
            log.warning("%s/%s: undoing the write ahead for %s:%s failed (attempt %d of %d): %s", target.key[0],
                        target.key[1], action.ip, action.port, attempts, UNDO_AHEAD_ATTEMPTS, error)

    @staticmethod
    def _run_action(client: NacosRegistry, action: RegistryAction) -> None:
        assert action.ip is not None and action.port is not None
        if action.kind == "write":
            client.update_instance(
                action.ip, action.port, enabled=action.enabled, weight=action.weight,
                metadata=dict(action.metadata), cluster=action.cluster, ephemeral=action.ephemeral,
                must_exist=action.must_exist,
            )
        elif action.kind == "deregister":
            client.deregister(action.ip, action.port, ephemeral=action.ephemeral)
        elif action.kind == "undo-ahead":
            client.undo_write_ahead(action.ip, action.port, cluster=action.cluster, ephemeral=action.ephemeral)

    # Nacos clients ---------------------------------------------------------------------------

    def _target(self, app: AppRelease) -> _Target:
        """This app's target in its server's lane, (re)created when the settings change.
        RegistryMisconfigured/Unavailable when the settings cannot work."""
        key = (app.namespace, app.name)
        settings = self._settings(app)
        # Everything the client is built from (the password and CA are not in repr()).
        fingerprint = hashlib.sha256(
            repr((settings, settings.password, settings.tls_ca_data)).encode()
        ).hexdigest()
        lane_name = ",".join(settings.base_urls)
        with self._lock:
            lane = self._where.get(key)
        if lane is not None:
            with lane.cond:
                target = lane.targets.get(key)
            if target is not None and target.fingerprint == fingerprint and lane.name == lane_name:
                return target
            self.forget(key)
        target = _Target(key=key, fingerprint=fingerprint,
                         client=NacosRegistry(settings, connect_check=self._address_refusal))
        self._attach(lane_name, target)
        return target

    def _attach(self, lane_name: str, target: _Target) -> None:
        with self._lock:
            lane = self._lanes.get(lane_name)
            if lane is None:
                lane = self._lanes[lane_name] = _Lane(lane_name, self)
                if self._started:
                    lane.start()
            self._where[target.key] = lane
        with lane.cond:
            lane.targets[target.key] = target
            lane.cond.notify_all()

    def _settings(self, app: AppRelease) -> NacosSettings:
        nacos = app.spec.registry.nacos  # type: ignore[union-attr]
        assert nacos is not None
        return self.settings_for(app, nacos)

    def settings_for(self, app: AppRelease, nacos: NacosRegistrySpec) -> NacosSettings:
        """Client settings for a Nacos server of this app (its registry, or its config's):
        the policy checked before any Secret is read. RegistryMisconfigured if they cannot work."""
        tls = nacos.tls
        settings = NacosSettings(
            server_addr=nacos.server_addr,
            service_name=nacos.service_name,
            namespace=nacos.namespace,
            group=nacos.group,
            cluster=nacos.cluster,
            tls=bool(tls and tls.enabled),
            tls_verify=not (tls and tls.insecure_skip_verify),
        )
        # Before any Secret is read: credentials go only to servers the platform allows.
        refused = [hp for hp in settings.host_ports if not self.policy.nacos_server_allowed(hp)]
        if refused:
            raise RegistryMisconfigured(
                f"serverAddr {', '.join(refused)} is not allowed by the operator's policy"
                " (apprelease run --allow-nacos-server)"
            )
        for host, port in _hosts(settings):
            literal = literal_address(host)
            refusal = self._address_refusal(host, port, literal) if literal else None
            if refusal:
                raise RegistryMisconfigured(refusal)
        username = password = None
        if nacos.credentials_secret:
            ref = nacos.credentials_secret
            data = self._secret(app.namespace, ref.name)
            username = _text(data, ref.username_key, app.namespace, ref.name)
            password = _text(data, ref.password_key, app.namespace, ref.name)
        ca = None
        if tls and tls.ca_secret:
            # Handed to the TLS context in memory: no file to write, rewrite or remove.
            ca = _text(self._secret(app.namespace, tls.ca_secret), "ca.crt", app.namespace, tls.ca_secret)
        return dataclasses.replace(settings, username=username, password=password, tls_ca_data=ca)

    def address_refusal(self, host: str, port: int, address: str) -> str | None:
        return self._address_refusal(host, port, address)

    def _address_refusal(self, host: str, port: int, address: str) -> str | None:
        """The verdict's message when the policy refuses this address of a server, else None."""
        kind = self.policy.registry_address_refusal(host, port, address)
        if kind is None:
            return None
        server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        literal = literal_address(host)
        where = f"{server} is {kind}" if literal is not None else f"{server} resolves to {address}, {kind}"
        if kind == APISERVER:
            return f"spec.registry.nacos.serverAddr: {where}; it is never used as a registry"
        return (f"spec.registry.nacos.serverAddr: {where}; the operator does not connect there unless the"
                " platform allows it (apprelease run --allow-registry-network CIDR, or --allow-nacos-server"
                f" {server})")

    def _secret(self, namespace: str, name: str) -> dict[str, bytes]:
        cached = self._secrets.get((namespace, name))
        if cached and time.monotonic() - cached.fetched < SECRET_CACHE_SECONDS:
            return cached.data
        try:
            secret = self.kube.get("Secret", namespace, name)
        except ApiError as exc:
            hint = " (the operator needs RBAC to read it; see docs/security.md)" if exc.status == 403 else ""
            raise RegistryMisconfigured(f"cannot read Secret {namespace}/{name}: {exc.reason}{hint}") from None
        data: dict[str, bytes] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError, TypeError):
                data[key] = b"\xff"  # unreadable: reported by _text, value never shown
        self._secrets[(namespace, name)] = _CachedSecret(data)
        return data


def _hosts(settings: NacosSettings) -> list[tuple[str, int]]:
    found = []
    for url in settings.base_urls:
        parts = urlsplit(url)
        found.append((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)))
    return found



def apiserver_endpoints(server_url: str) -> tuple[str, ...]:
    """host:port of the apiserver as this operator reaches it (its kubeconfig's server, each
    address that name resolves to, and the in-cluster service): never a registry."""
    endpoints: list[str] = []
    parts = urlsplit(server_url)
    candidates = []
    if parts.hostname:
        candidates.append((parts.hostname, parts.port or (443 if parts.scheme != "http" else 80)))
    service_host, service_port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if service_host and service_port and service_port.isdigit():
        candidates.append((service_host, int(service_port)))
    for host, port in candidates:
        literal = literal_address(host)
        addresses = [literal] if literal else []
        if not addresses:
            try:
                addresses = sorted({str(a[4][0]) for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
            except OSError:
                log.warning("cannot resolve the apiserver's name %s: its addresses are not refused as registries", host)
        endpoints += [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses]
    return tuple(dict.fromkeys(endpoints))


def _text(data: dict[str, bytes], key: str, namespace: str, name: str) -> str:
    """A Secret value as text; RegistryMisconfigured (never the value) when absent or binary."""
    raw = data.get(key)
    if not raw:
        raise RegistryMisconfigured(f"Secret {namespace}/{name} has no key {key!r}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryMisconfigured(f"Secret {namespace}/{name}: key {key!r} is not UTF-8 text") from None


def _with_written(
    instances: tuple[RegistryInstance, ...], done: dict[tuple[str | None, int | None], tuple[ActionKey, float]]
) -> tuple[RegistryInstance, ...]:
    """The instances with our writes the reads cannot show yet laid over them. A disable is
    marked ``disabling``: a drain counts from when a read shows the instance offline."""
    result = []
    for instance in instances:
        written = done.get((instance.ip, instance.port))
        action = written[0] if written is not None else None
        if action is not None and action.kind == "write" and action.enabled != instance.enabled:
            instance = dataclasses.replace(instance, enabled=action.enabled, weight=action.weight,
                                           metadata={**instance.metadata, **dict(action.metadata)},
                                           disabling=not action.enabled)
        result.append(instance)
    return tuple(result)


def _undo_ahead(written: RegistryAction) -> RegistryAction:
    """The undoing of a write ahead (and back: _ahead_of), field for field."""
    return dataclasses.replace(written, kind="undo-ahead")


def _ahead_of(undo: RegistryAction) -> RegistryAction:
    return dataclasses.replace(undo, kind="write")


def _describe(action: RegistryAction) -> str:
    if action.kind != "write":
        return ""
    return f"enabled={action.enabled} weight={action.weight:g}"


def _instance_order(instance: RegistryInstance) -> tuple[str, int, str]:
    return (instance.ip, instance.port, instance.cluster)


def _revision_of(observed: Observed, track: str) -> int | None:
    dep = observed.deployments.get(track)  # type: ignore[call-overload]
    record = next((r for r in observed.revisions if dep and r.hash == dep.revision_hash), None)
    return record.number if record else None


def _with(observed: Observed, registration: Registration, *, gate: bool) -> Observed:
    return dataclasses.replace(observed, registry=registration.state if gate else None, registration=registration)
