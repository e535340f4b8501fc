"""Domain types shared by the layers (pure: no I/O, no kopf, no client).

The rollout planner decides in these terms and the registry layer speaks them, so neither has
to import the other: registry instances as the planner sees them, and the actions it asks the
registry to carry out. api/status.py keeps its own wire-level Literal of the same tracks.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# Which Deployment of an app: the app's own name (stable), or the one beside it: a canary's,
# or a blue-green preview's.
Track = Literal["stable", "canary", "preview"]
TRACKS: tuple[Track, ...] = ("stable", "canary", "preview")


@dataclass(frozen=True)
class RegistryInstance:
    """One instance as a service registry lists it (Nacos, or an EndpointSlice endpoint)."""

    ip: str
    port: int
    healthy: bool
    enabled: bool
    weight: float
    ephemeral: bool
    cluster: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Shown disabled because we just disabled it, before any read shows Nacos applied it (a
    # drain counts from then: consumers hear of it only once Nacos has).
    disabling: bool = False


RegistryActionKind = Literal["write", "deregister", "mark-leaving", "undo-ahead"]

# Metadata the operator puts on every instance of its pods: which app, track and revision
# it serves (header-based gray routing picks the canary by it; stale clean-up only touches
# instances carrying its own owner mark).
OWNER_KEY = "apprelease.io/owner"
TRACK_KEY = "apprelease.io/track"
REVISION_KEY = "apprelease.io/revision"
OUR_METADATA_KEYS = (OWNER_KEY, TRACK_KEY, REVISION_KEY)


@dataclass(frozen=True)
class RegistryAction:
    """Something the planner asks the registry layer to do to one instance (or pod).

    ``write``: the instance's whole server-side state: Nacos replaces enabled, weight and
    metadata together, so the operator is the one writer of all three for its instances.
    ``must_exist=False`` writes ahead of the instance (a pod whose app has not registered
    yet), so it joins disabled. ``deregister``: remove a stale persistent instance.
    ``mark-leaving``: make the ReplicaSet remove exactly this pod on scale-down.
    ``undo-ahead``: neutralise a write ahead whose pod left without registering (the registry
    layer asks for it itself).
    """

    kind: RegistryActionKind
    pod: str | None = None
    ip: str | None = None
    port: int | None = None
    ephemeral: bool = True
    cluster: str = "DEFAULT"
    enabled: bool = True
    weight: float = 1.0
    metadata: tuple[tuple[str, str], ...] = ()
    must_exist: bool = True
    reason: str = ""


# Ingress annotations that carry raw nginx configuration (the ingress-nginx CVE class:
# configuration-snippet, server-snippet, auth-snippet...): denied unless the platform allows.
DEFAULT_DENIED_INGRESS_ANNOTATIONS = ("*-snippet", "*snippets*")


# Cloud metadata endpoints outside link-local: Alibaba Cloud, AWS (IPv6), Azure's WireServer,
# Oracle Cloud. (169.254.169.254 and the rest of 169.254.0.0/16 are link-local.)
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "100.100.100.200", "fd00:ec2::254", "168.63.129.16", "192.0.0.192",
))
# The apiserver's refusal (no opt-in lifts it).
APISERVER = "the Kubernetes apiserver's address"
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host on this network": reaches the pod itself
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: _Address) -> _Address:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else itself: each
    reaches that IPv4 address, so it is checked as that."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _address_kind(address: _Address) -> str | None:
    """Why an address is no place for a registry by default, or None."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata endpoint"
    if address.is_loopback:
        return "a loopback address (the operator's own pod)"
    if address.is_link_local:
        return "a link-local address (where cloud metadata endpoints answer)"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return "the unspecified address (the operator's own pod)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class Policy:
    """What the platform team allows an AppRelease's author to make the operator do.

    Set on the operator's command line (`apprelease run --allow-nacos-server ...`), not in the
    AppRelease: in a shared cluster the operator acts with more rights than a namespace user.
    """

    # host:port patterns (fnmatch) the operator may send a namespace's Nacos credentials to;
    # empty: any server.
    nacos_servers: tuple[str, ...] = ()
    # Networks (CIDR) where a registry may be although their addresses are refused by default
    # (loopback, link-local, metadata endpoints, ...): `--allow-registry-network`.
    registry_networks_allowed: tuple[str, ...] = ()
    # host:port patterns (fnmatch) of the Prometheus servers and web hooks an analysis may
    # query (`--allow-metric-server`); empty: any. Addresses refused by default (as for
    # registries) are allowed by network above or by naming the server exactly here.
    metric_servers: tuple[str, ...] = ()
    # host:port of the Kubernetes apiserver as the operator reaches it: never a registry.
    apiserver_endpoints: tuple[str, ...] = ()
    ingress_annotations_allowed: tuple[str, ...] = ("*",)
    ingress_annotations_denied: tuple[str, ...] = DEFAULT_DENIED_INGRESS_ANNOTATIONS

    def ingress_annotation_allowed(self, key: str) -> bool:
        allowed = any(fnmatch.fnmatchcase(key, p) for p in self.ingress_annotations_allowed)
        return allowed and not any(fnmatch.fnmatchcase(key, p) for p in self.ingress_annotations_denied)

    def nacos_server_allowed(self, host_port: str) -> bool:
        return not self.nacos_servers or any(
            fnmatch.fnmatchcase(host_port.lower(), p.lower()) for p in self.nacos_servers
        )

    def registry_address_refusal(self, host: str, port: int, address: str) -> str | None:
        """Why the operator may not connect to ``address`` (what the server name ``host``
        resolved to, or the literal address itself) for a registry on ``port``, or None.

        Refused by default: loopback and the unspecified address (the operator's own pod),
        link-local and cloud metadata endpoints, multicast and reserved addresses, and always
        the apiserver. The platform allows the others by network (registry_networks_allowed)
        or by naming the server exactly in nacos_servers (a pattern is not enough)."""
        return self._address_refusal(host, port, address, self.nacos_servers)

    def metric_server_allowed(self, host_port: str) -> bool:
        return not self.metric_servers or any(
            fnmatch.fnmatchcase(host_port.lower(), p.lower()) for p in self.metric_servers
        )

    def metric_address_refusal(self, host: str, port: int, address: str) -> str | None:
        """As registry_address_refusal, for an analysis's Prometheus or web hook: the same
        addresses refused, the same networks allowed, a server named exactly in metric_servers
        allowed."""
        return self._address_refusal(host, port, address, self.metric_servers)

    def _address_refusal(self, host: str, port: int, address: str, named_servers: tuple[str, ...]) -> str | None:
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r}, not an IP address"
        target = _embedded_ipv4(parsed)
        endpoint = _host_port(str(target), port)
        if endpoint in self.apiserver_endpoints or _host_port(str(parsed), port) in self.apiserver_endpoints:
            return APISERVER
        kind = _address_kind(target) or _address_kind(parsed)
        if kind is None:
            return None
        named = _host_port(host.lower(), port)
        if any(entry.lower() == named for entry in named_servers if not _is_pattern(entry)):
            return None
        for cidr in self.registry_networks_allowed:
            network = ipaddress.ip_network(cidr, strict=False)
            if target in network or parsed in network:
                return None
        return kind


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_pattern(entry: str) -> bool:
    return any(ch in entry for ch in "*?[")


ConfigActionKind = Literal["publish", "save-drift", "delete"]


@dataclass(frozen=True)
class ConfigAction:
    """Something the planner asks the Nacos config store to do (rollout/nacos_config.py).

    ``publish``: ``content`` to (group, data_id), verified by reading its md5 back.
    ``save-drift``: copy what (group, data_id) holds to ``save_to``, only if it still has
    ``md5`` (a hand edit is saved before anything overwrites it). ``delete``: absent is fine.
    """

    kind: ConfigActionKind
    group: str
    data_id: str
    content: str = ""
    type: str = "text"
    md5: str = ""
    save_to: str = ""
    reason: str = ""
