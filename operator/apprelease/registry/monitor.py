"""The registry side of a reconcile: what the registry says now, and the actions on it.

EndpointSlices come from the watch caches (no I/O here). Nacos is polled in the background,
one short HTTP call per service every few seconds with back-off on errors; a change (or a
recovery) wakes that AppRelease's reconcile, and an unchanged read wakes nothing, so an idle
app writes no status. Credentials are read from the referenced Secret and never logged.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..api.spec import AppRelease
from ..api.status import RegistrationStatus
from ..domain import RegistryAction
from ..k8s.client import ApiError, Kube
from ..k8s.observe import AppKey
from ..rollout.observed import Observed, Registration
from ..rollout.timefmt import format_time
from .base import InstanceNotRegistered, RegistryInstance, RegistryUnavailable
from .nacos import NacosRegistry, NacosSettings
from .registration import RegistryRead, endpoint_slice_instances, summarize

log = logging.getLogger("apprelease.registry")

POLL_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0
SECRET_CACHE_SECONDS = 60.0
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


@dataclass
class _Target:
    settings_key: str
    client: NacosRegistry
    read: RegistryRead | None = None
    next_poll: float = 0.0
    failures: int = 0
    ca_file: Path | None = None


@dataclass
class _CachedSecret:
    data: dict[str, str]
    fetched: float = field(default_factory=time.monotonic)


class RegistryMonitor:
    def __init__(
        self,
        kube: Kube,
        endpoint_slices: Callable[[AppKey], list[dict[str, Any]]],
        notify: Callable[[AppKey], None],
        *,
        poll_seconds: float = POLL_SECONDS,
    ):
        self.kube = kube
        self.endpoint_slices = endpoint_slices
        self.notify = notify
        self.poll_seconds = poll_seconds
        self._targets: dict[AppKey, _Target] = {}
        self._secrets: dict[tuple[str, str], _CachedSecret] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # read back our own changes at once: a drain starts when seen
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll_loop, name="registry-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        with self._lock:
            targets = list(self._targets.values())
            self._targets.clear()
        for target in targets:
            target.client.close()

    def forget(self, key: AppKey) -> None:
        with self._lock:
            target = self._targets.pop(key, None)
        if target:
            target.client.close()

    # What the planner sees -------------------------------------------------------------------

    def state_for(
        self, app: AppRelease, observed: Observed, previous: RegistrationStatus | None = None
    ) -> Observed:
        """``observed`` completed with the registration (and the gate, with Nacos)."""
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
            target = self._target(app)
            if target.read is None:  # first sight: read now rather than show "unknown"
                self._poll(key, target, notify=False)
            read = target.read or RegistryRead(None, "not read yet")
        except RegistryUnavailable as exc:
            read = RegistryRead(None, str(exc))
        registration = summarize(
            provider="nacos", service=service, read=read, pods=observed.pods, revisions=revisions,
            previous=previous,
        )
        return _with(observed, registration, gate=True)

    # Actions ---------------------------------------------------------------------------------

    def execute(self, app: AppRelease, actions: tuple[RegistryAction, ...]) -> None:
        """Run the plan's registry actions; raises RegistryUnavailable (the caller retries)."""
        if not actions:
            return
        key = (app.namespace, app.name)
        for action in actions:
            if action.kind == "mark-leaving":
                self._mark_leaving(app, action.pod or "")
                continue
            target = self._target(app)
            assert action.ip is not None and action.port is not None
            try:
                if action.kind == "disable":
                    target.client.set_enabled(action.ip, action.port, False, ephemeral=action.ephemeral)
                elif action.kind == "clear":
                    target.client.clear_overrides(action.ip, action.port, ephemeral=action.ephemeral)
                elif action.kind == "deregister":
                    target.client.deregister(action.ip, action.port, ephemeral=action.ephemeral)
            except InstanceNotRegistered:
                continue  # gone meanwhile: nothing left to take offline or reset
            log.info("%s/%s: registry %s %s:%s (pod %s)", key[0], key[1], action.kind,
                     action.ip, action.port, action.pod or "-")
        with self._lock:
            polled = self._targets.get(key)
            if polled:
                polled.next_poll = 0.0  # read back what we changed right away
        self._wake.set()

    def _mark_leaving(self, app: AppRelease, pod: str) -> None:
        """Make the ReplicaSet remove exactly the pods we took offline."""
        patch = {"metadata": {"annotations": {DELETION_COST: "-1000"}}}
        try:
            self.kube.merge_patch("Pod", app.namespace, pod, patch)
        except ApiError as exc:
            if not exc.not_found:
                raise

    # Nacos clients ---------------------------------------------------------------------------

    def _target(self, app: AppRelease) -> _Target:
        key = (app.namespace, app.name)
        settings, ca_file = self._settings(app)
        fingerprint = hashlib.sha256(repr(settings).encode() + repr(settings.password).encode()).hexdigest()
        with self._lock:
            target = self._targets.get(key)
            if target and target.settings_key == fingerprint:
                return target
        if target:
            target.client.close()
        target = _Target(settings_key=fingerprint, client=NacosRegistry(settings), ca_file=ca_file)
        with self._lock:
            self._targets[key] = target
        return target

    def _settings(self, app: AppRelease) -> tuple[NacosSettings, Path | None]:
        nacos = app.spec.registry.nacos  # type: ignore[union-attr]
        assert nacos is not None
        username = password = None
        if nacos.credentials_secret:
            ref = nacos.credentials_secret
            data = self._secret(app.namespace, ref.name)
            username, password = data.get(ref.username_key), data.get(ref.password_key)
            if not username or not password:
                raise RegistryUnavailable(
                    f"Secret {app.namespace}/{ref.name} lacks key {ref.username_key!r} or {ref.password_key!r}"
                )
        ca_file = None
        tls = nacos.tls
        if tls and tls.ca_secret:
            ca = self._secret(app.namespace, tls.ca_secret).get("ca.crt")
            if not ca:
                raise RegistryUnavailable(f"Secret {app.namespace}/{tls.ca_secret} has no ca.crt")
            ca_file = Path(tempfile.gettempdir()) / f"apprelease-nacos-ca-{hashlib.sha256(ca.encode()).hexdigest()[:12]}.crt"
            ca_file.write_text(ca)
        settings = NacosSettings(
            server_addr=nacos.server_addr,
            service_name=nacos.service_name,
            namespace=nacos.namespace,
            group=nacos.group,
            cluster=nacos.cluster,
            username=username,
            password=password,
            tls=bool(tls and tls.enabled),
            tls_verify=not (tls and tls.insecure_skip_verify),
            tls_ca_file=str(ca_file) if ca_file else None,
        )
        return settings, ca_file

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        import base64

        cached = self._secrets.get((namespace, name))
        if cached and time.monotonic() - cached.fetched < SECRET_CACHE_SECONDS:
            return cached.data
        try:
            secret = self.kube.get("Secret", namespace, name)
        except ApiError as exc:
            raise RegistryUnavailable(f"cannot read Secret {namespace}/{name}: {exc.reason}") from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        self._secrets[(namespace, name)] = _CachedSecret(data)
        return data

    # Polling ---------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            with self._lock:
                due = [(k, t) for k, t in self._targets.items() if t.next_poll <= now]
            for key, target in due:
                try:
                    self._poll(key, target, notify=True)
                except Exception:
                    with self._lock:
                        dropped = self._targets.get(key) is not target
                    if dropped:
                        continue  # forgotten or replaced (its client closed) while we read it
                    # The one poller serves every app: a surprise in one read must not stop it.
                    log.exception("%s/%s: registry read failed", *key)
                    target.next_poll = time.monotonic() + self.poll_seconds

    def _poll(self, key: AppKey, target: _Target, *, notify: bool) -> None:
        stamp = format_time(datetime.now(UTC))
        try:
            instances = tuple(sorted(target.client.list_instances(), key=_instance_order))
            read = RegistryRead(instances, None, stamp)
            target.failures = 0
            target.next_poll = time.monotonic() + self.poll_seconds
        except RegistryUnavailable as exc:
            read = RegistryRead(None, str(exc), stamp)
            target.failures += 1
            backoff = min(MAX_BACKOFF_SECONDS, self.poll_seconds * 2 ** (target.failures - 1))
            target.next_poll = time.monotonic() + backoff
        previous = target.read
        if previous is not None and previous.instances == read.instances and previous.error == read.error:
            return  # nothing new: keep the old read (and its time), wake nobody
        target.read = read
        if notify:
            self.notify(key)


def _instance_order(instance: RegistryInstance) -> tuple[str, int, str]:
    return (instance.ip, instance.port, instance.cluster)


def _revision_of(observed: Observed, track: str) -> int | None:
    dep = observed.deployments.get(track)  # type: ignore[call-overload]
    record = next((r for r in observed.revisions if dep and r.hash == dep.revision_hash), None)
    return record.number if record else None


def _with(observed: Observed, registration: Registration, *, gate: bool) -> Observed:
    return Observed(
        deployments=observed.deployments,
        pods=observed.pods,
        revisions=observed.revisions,
        registry=registration.state if gate else None,
        registration=registration,
    )


