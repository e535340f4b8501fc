"""The Nacos config side of a reconcile: what the config store holds now, and the plan's writes.

As for the registry (registry/monitor.py), no Nacos I/O runs on a reconcile worker: each Nacos
server (address list) has a thread of its own that reads the keys its apps' plans need and
runs their publishes, saves and deletions, one call at a time under the store's whole-call
deadline; a slow server delays only its own apps. A read that differs from the last one, and
every batch of actions, wakes the app. The store is built from the same settings, Secret
cache and address policy as the registry client (RegistryMonitor.settings_for).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..api.registry import NacosRegistry as NacosRegistrySpec
from ..api.spec import AppRelease
from ..api.status import ConfigStatus
from ..backoff import exponential_backoff
from ..domain import ConfigAction
from ..k8s.fence import NotLeading
from ..k8s.observe import AppKey
from ..rollout.nacos_config import config_namespace, keys_to_read
from ..rollout.observed import ConfigRead, Observed
from .base import RegistryUnavailable
from .config_store import ConfigStore, NacosConfigStore
from .config_sync import read_keys, run_actions
from .monitor import MAX_BACKOFF_SECONDS, POLL_SECONDS, RegistryMonitor
from .nacos import NacosSettings

log = logging.getLogger("apprelease.config")

StoreFactory = Callable[[NacosSettings, Callable[[str, int, str], str | None]], ConfigStore]


def _nacos_store(settings: NacosSettings, connect_check: Callable[[str, int, str], str | None]) -> ConfigStore:
    return NacosConfigStore(settings, connect_check=connect_check)


def config_server(app: AppRelease) -> NacosRegistrySpec | None:
    """Where the app's config lives: config.nacos' own settings, else registry.nacos'."""
    config = app.spec.config.nacos if app.spec.config else None
    if config is None:
        return None
    registry = app.spec.registry.nacos if app.spec.registry else None
    own_server = config.server_addr is not None
    return NacosRegistrySpec(
        server_addr=config.server_addr or (registry.server_addr if registry else ""),
        namespace=config_namespace(app),
        service_name=registry.service_name if registry else app.name,
        credentials_secret=config.credentials_secret or (registry.credentials_secret if registry else None),
        tls=registry.tls if registry is not None and not own_server else None,
    )


@dataclass
class _Target:
    key: AppKey
    fingerprint: str
    store: ConfigStore
    namespace: str
    keys: list[tuple[str, str]] = field(default_factory=list)
    read: ConfigRead | None = None
    action_error: str | None = None
    queued: tuple[ConfigAction, ...] = ()
    next_poll: float = 0.0
    failures: int = 0


class _Lane:
    def __init__(self, name: str, monitor: ConfigMonitor):
        self.name = name
        self.monitor = monitor
        self.targets: dict[AppKey, _Target] = {}
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name=f"nacos-config {name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                with self.cond:
                    job = self._next_job()
                    while job is None and not self.stopped:
                        self.cond.wait(self._idle_wait())
                        job = self._next_job()
                    if self.stopped or job is None:
                        return
                try:
                    self.monitor.serve(loop, self, job[0], job[1])
                except Exception:  # one app's bad luck must not end the lane
                    log.exception("nacos config lane %s", self.name)
        finally:
            loop.close()

    def _next_job(self) -> tuple[_Target, tuple[ConfigAction, ...]] | None:
        now = time.monotonic()
        for target in self.targets.values():
            if target.queued:
                actions, target.queued = target.queued, ()
                return target, actions
        due = [t for t in self.targets.values() if t.next_poll <= now and t.keys]
        return (min(due, key=lambda t: t.next_poll), ()) if due else None

    def _idle_wait(self) -> float:
        polls = [t.next_poll for t in self.targets.values() if t.keys]
        return max(0.05, min(1.0, min(polls) - time.monotonic())) if polls else 1.0


class ConfigMonitor:
    def __init__(
        self,
        registry: RegistryMonitor,
        notify: Callable[[AppKey], None],
        *,
        poll_seconds: float = POLL_SECONDS,
        store_factory: StoreFactory = _nacos_store,
    ):
        self.registry = registry
        self.notify = notify
        self.poll_seconds = poll_seconds
        self.store_factory = store_factory
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._where: dict[AppKey, _Lane] = {}
        self._started = False

    def start(self) -> None:
        with self._lock:
            self._started = True
            for lane in self._lanes.values():
                lane.start()

    def stop(self) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()

    def forget(self, key: AppKey) -> None:
        with self._lock:
            lane = self._where.pop(key, None)
        if lane is None:
            return
        with lane.cond:
            target = lane.targets.pop(key, None)
        if target is not None and hasattr(target.store, "close"):
            target.store.close()

    # Reconcile side (no Nacos I/O) ------------------------------------------------------------

    def state_for(self, app: AppRelease, observed: Observed, status: ConfigStatus | None) -> Observed:
        """``observed`` with the last read of the keys this app's plan needs (asked for here)."""
        spec = config_server(app)
        if spec is None:
            self.forget((app.namespace, app.name))
            return observed
        try:
            target, lane = self._target(app, spec)
        except RegistryUnavailable as exc:  # misconfigured: no store, the plan says why
            self.forget((app.namespace, app.name))
            return dataclasses.replace(observed, config=ConfigRead(error=str(exc), error_reason=exc.reason))
        keys = keys_to_read(app, status, observed.revisions)
        with lane.cond:
            if keys != target.keys:
                target.keys = keys
                target.next_poll = 0.0  # new keys: read them now
                lane.cond.notify_all()
            read = target.read
            error = target.action_error
        if read is None:
            return observed  # the first read is on its way: the plan waits for it
        if error is not None:
            read = dataclasses.replace(read, action_error=error)
        return dataclasses.replace(observed, config=read)

    def execute(self, app: AppRelease, actions: tuple[ConfigAction, ...]) -> None:
        key = (app.namespace, app.name)
        with self._lock:
            lane = self._where.get(key)
        if lane is None or not actions:
            return
        with lane.cond:
            target = lane.targets.get(key)
            if target is not None:
                target.queued = actions  # the plan's latest wishes replace any not yet run
                lane.cond.notify_all()

    # Lane side ---------------------------------------------------------------------------------

    def serve(self, loop: asyncio.AbstractEventLoop, lane: _Lane, target: _Target,
              actions: tuple[ConfigAction, ...]) -> None:
        """Run the actions (if any), then read the keys; wake the app when something changed."""
        woke = False
        if actions:
            fence = self.registry.fence
            try:
                with fence.writing(f"nacos config of {target.key[0]}/{target.key[1]}") if fence else contextlib.nullcontext():
                    error = loop.run_until_complete(run_actions(target.store, target.namespace, actions))
            except NotLeading as exc:
                log.info("%s/%s: %s", target.key[0], target.key[1], exc)
                return  # the replica holding the lease plans its own writes
            for action in actions:
                log.info("%s/%s: nacos config %s %s/%s (%s)%s", target.key[0], target.key[1], action.kind,
                         action.group, action.data_id, action.reason or "-", f": {error}" if error else "")
            woke = True
            with lane.cond:
                target.action_error = error
        with lane.cond:
            keys = list(target.keys)
        read = loop.run_until_complete(read_keys(target.store, target.namespace, keys))
        with lane.cond:
            if lane.targets.get(target.key) is not target:
                return
            if read.error is None:
                target.failures = 0
                target.next_poll = time.monotonic() + self.poll_seconds
            else:
                target.failures += 1
                target.next_poll = time.monotonic() + exponential_backoff(
                    target.failures, self.poll_seconds, MAX_BACKOFF_SECONDS)
                log.warning("%s/%s: nacos config read: %s", target.key[0], target.key[1], read.error)
            if read != target.read:
                target.read = read
                woke = True
        if woke:
            self.notify(target.key)

    def _target(self, app: AppRelease, spec: NacosRegistrySpec) -> tuple[_Target, _Lane]:
        key = (app.namespace, app.name)
        settings = self.registry.settings_for(app, spec)
        fingerprint = hashlib.sha256(repr((settings, settings.password, settings.tls_ca_data)).encode()).hexdigest()
        lane_name = ",".join(settings.base_urls)
        with self._lock:
            lane = self._where.get(key)
        if lane is not None:
            with lane.cond:
                target = lane.targets.get(key)
            if target is not None and target.fingerprint == fingerprint and lane.name == lane_name:
                return target, lane
            self.forget(key)
        store = self.store_factory(settings, self.registry.address_refusal)
        target = _Target(key=key, fingerprint=fingerprint, store=store, namespace=spec.namespace)
        with self._lock:
            lane = self._lanes.get(lane_name)
            if lane is None:
                lane = self._lanes[lane_name] = _Lane(lane_name, self)
                if self._started:
                    lane.start()
            self._where[key] = lane
        with lane.cond:
            lane.targets[key] = target
            lane.cond.notify_all()
        return target, lane
