"""What the operator needs from a service registry, independent of Nacos (pure, no I/O)."""

from __future__ import annotations

from typing import Protocol

from ..domain import RegistryInstance

__all__ = ["InstanceNotRegistered", "RegistryInstance", "RegistryProvider", "RegistryUnavailable"]


class RegistryUnavailable(Exception):
    """registry unreachable / 5xx / auth failure; message must never contain credentials or tokens"""


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
