"""Registry reads → the Nacos-console style registration status. Pure.

Instances are matched to pods by IP. An instance whose IP belongs to no live pod of the app
is *stale* (typically: a redeploy changed the pod IPs and the old registrations linger).
Pod IPs are reused, so a read that may have begun before a pod existed says nothing about
that pod: the instance at its address may be its predecessor's (the pod is *unconfirmed*
until a later read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..api.status import RegisteredInstance, RegistrationStatus, RevisionRegistration
from ..domain import Track
from ..rollout import conditions as C
from ..rollout.observed import PodState, Registration, RegistryState, TrackRegistration
from .base import RegistryInstance

# Status keeps at most this many instance rows (counts stay exact).
MAX_LISTED_INSTANCES = 50


# RegistryRead.reason of a registry not read yet (not a failure: the first read is on its way).
PENDING = "Pending"
# The failure class of a write that failed for another reason than refusal or configuration.
WRITE_FAILED = "RegistryWriteFailed"


@dataclass(frozen=True)
class RegistryRead:
    """The latest read of the registry: instances, or why there are none."""

    instances: tuple[RegistryInstance, ...] | None
    error: str | None = None
    changed_at: str | None = None  # when the instance set last changed (or the read recovered)
    # When the latest read began, changed or not (not in the status: it moves every poll).
    # None: unknown, every pod trusts the read.
    taken_at: str | None = None
    # Why there are no instances: a failure class (rollout/failures.py) or PENDING.
    reason: str | None = None
    # The last write that failed (cleared by the next one that works).
    write_error: str | None = None
    write_error_reason: str | None = None


def endpoint_slice_instances(
    slices: Iterable[Mapping], port_name: str | None
) -> list[RegistryInstance]:
    """EndpointSlices as registry instances: ready → healthy, not terminating → enabled."""
    instances = []
    for slc in slices:
        ports = slc.get("ports") or []
        port = next((p for p in ports if port_name is None or p.get("name") == port_name), None)
        if port is None or port.get("port") is None:
            continue
        for endpoint in slc.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            for address in endpoint.get("addresses") or []:
                instances.append(
                    RegistryInstance(
                        ip=address,
                        port=int(port["port"]),
                        healthy=bool(conditions.get("ready", False)),
                        enabled=not conditions.get("terminating", False),
                        weight=1.0,
                        ephemeral=True,
                        cluster=endpoint.get("zone") or "kubernetes",
                        metadata={"pod": (endpoint.get("targetRef") or {}).get("name", "")},
                    )
                )
    return instances


def _row(instance: RegistryInstance, pod: PodState | None) -> RegisteredInstance:
    return RegisteredInstance(
        ip=instance.ip,
        port=instance.port,
        pod=pod.name if pod else None,
        revision=pod.revision if pod else None,
        track=pod.track if pod else None,
        healthy=instance.healthy,
        enabled=instance.enabled,
        weight=instance.weight,
        ephemeral=instance.ephemeral,
        cluster=instance.cluster,
    )


def summarize(
    *,
    provider: str,
    service: str,
    read: RegistryRead,
    pods: Iterable[PodState],
    revisions: Mapping[Track, int | None],
    previous: RegistrationStatus | None = None,
) -> Registration:
    """``previous`` keeps lastSyncTime (the last change seen) when nothing changed, so a
    re-read, or an operator restart, never rewrites an identical status."""
    pods = list(pods)
    live = [p for p in pods if not p.deleting and p.ip]
    last_change = previous.last_sync_time if previous else None
    # Terminating pods' instances are still ours (they go offline), not stale.
    pod_by_ip: dict[str, PodState] = {p.ip: p for p in pods if p.ip and p.deleting}
    pod_by_ip.update({p.ip: p for p in live if p.ip})
    if read.instances is None:
        status = RegistrationStatus(
            provider=provider,
            service=service,
            summary="?",
            last_error=read.error,
            last_sync_time=last_change,  # the last successful read, not this failure
        )
        reason = read.reason or "RegistryUnavailable"
        condition = C.condition(C.REGISTERED, "Unknown", reason, read.error or "")
        state = RegistryState(reachable=False, error=read.error, failure_reason=reason)
        return Registration(status, condition, state)

    instances = sorted(read.instances, key=lambda i: (i.ip, i.port))
    by_pod: dict[str, RegistryInstance] = {}
    stale: list[RegistryInstance] = []
    unconfirmed: set[str] = set()
    for instance in instances:
        pod = pod_by_ip.get(instance.ip)
        if pod is None:
            stale.append(instance)
        elif _read_before(read, pod):
            # Pod IPs are reused: this may be the instance of the pod that had the address
            # before, its deregistration on the way. Neither the new pod's nor stale.
            unconfirmed.add(pod.name)
        else:
            by_pod.setdefault(pod.name, instance)

    per_track: dict[Track, TrackRegistration] = {}
    rows: list[RevisionRegistration] = []
    missing = 0
    for track, revision in revisions.items():
        ready = [p for p in live if p.track == track and p.ready]
        found = [by_pod[p.name] for p in ready if p.name in by_pod]
        counts = TrackRegistration(
            expected=len(ready),
            registered=len(found),
            healthy=sum(i.healthy for i in found),
            enabled=sum(i.enabled for i in found),
        )
        per_track[track] = counts
        missing += counts.expected - min(counts.healthy, counts.expected)
        rows.append(RevisionRegistration(track=track, revision=revision, **counts.__dict__))

    expected = sum(t.expected for t in per_track.values())
    healthy = sum(min(t.healthy, t.expected) for t in per_track.values())
    pods_by_name = {p.name: p for p in pods}
    listed = [_row(i, pods_by_name.get(name)) for name, i in sorted(by_pod.items())]
    status = RegistrationStatus(
        provider=provider,
        service=service,
        summary=f"{healthy}/{expected}",
        revisions=rows,
        instances=listed[:MAX_LISTED_INSTANCES],
        instance_count=len(by_pod),
        stale=[_row(i, None) for i in stale[:MAX_LISTED_INSTANCES]],
        stale_count=len(stale),
        last_sync_time=read.changed_at,
        last_error=read.write_error,
    )
    if previous is not None and status.model_copy(update={"last_sync_time": last_change}) == previous:
        status = previous
    if missing:
        condition = C.condition(
            C.REGISTERED,
            False,
            "NotRegistered",
            f"{healthy}/{expected} ready pods registered and healthy in {service}",
        )
    else:
        condition = C.condition(
            C.REGISTERED,
            True,
            "AllRegistered",
            f"{healthy}/{expected} ready pods registered and healthy in {service}",
        )
    state = RegistryState(
        reachable=True, tracks=per_track,
        write_error=read.write_error, write_error_reason=read.write_error_reason,
    )
    return Registration(status, condition, state, by_pod, tuple(stale), tuple(sorted(unconfirmed)))


def _read_before(read: RegistryRead, pod: PodState) -> bool:
    """The read may have begun before the pod existed (both stamps are whole seconds, so the
    same second counts as before)."""
    return read.taken_at is not None and pod.created is not None and read.taken_at <= pod.created
