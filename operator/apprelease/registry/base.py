"""What the operator needs from a service registry, independent of Nacos (pure, no I/O)."""

from __future__ import annotations

from typing import Protocol

from ..domain import RegistryInstance

__all__ = [
    "InstanceNotRegistered",
    "RegistryBadResponse",
    "RegistryInstance",
    "RegistryMisconfigured",
    "RegistryProvider",
    "RegistryRefused",
    "RegistryUnavailable",
]


class RegistryUnavailable(Exception):
    """The registry cannot be used now: unreachable, timed out, 5xx. Messages never contain
    credentials, tokens or the server's own pages. ``reason`` names the failure class
    (rollout/failures.py); subclasses narrow it down."""

    reason = "RegistryUnavailable"


class RegistryBadResponse(RegistryUnavailable):
    """It answered, but not as Nacos does: HTML, a login page, a row without ip or port."""

    reason = "RegistryBadResponse"


class RegistryRefused(RegistryUnavailable):
    """401/403: wrong credentials or missing permissions. Does not heal by itself."""

    reason = "RegistryRefused"


class RegistryMisconfigured(RegistryUnavailable):
    """The settings cannot work (a bad address, an unreadable Secret or CA, a server the
    operator's policy does not allow). Raised before any connection is made."""

    reason = "RegistryMisconfigured"


class InstanceNotRegistered(LookupError):
    """The registry has no instance at that ip:port (in the configured service and cluster).

    Raised instead of writing: an override written for an absent instance would be stored and
    applied to whichever instance registers at that ip:port later.
    """


class RegistryProvider(Protocol):
    def list_instances(self) -> list[RegistryInstance]: ...

    def set_enabled(self, ip: str, port: int, enabled: bool, *, ephemeral: bool = True) -> None: ...

    # reset server-side enabled/weight overrides
    def clear_overrides(self, ip: str, port: int, *, ephemeral: bool = True) -> None: ...

    def deregister(self, ip: str, port: int, *, ephemeral: bool) -> None: ...

    def close(self) -> None: ...
