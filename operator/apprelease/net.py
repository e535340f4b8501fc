"""Connecting only where the operator's policy allows: resolve a server's name, check every
address it resolves to, and connect to a checked address.

Shared by the clients that reach servers an AppRelease names (Nacos in registry/, Prometheus and
web hooks in analysis/). The check itself is the policy's (domain.Policy); this module does the
I/O around it. The connection goes to the checked IP (the Host header and the TLS server name
stay the server's name), so a name that resolves elsewhere between the check and the connect
(DNS rebinding) cannot move it.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

# Why the operator may not connect to an address (a server's name, its port, the address it
# resolved to), or None: the operator's policy, passed in by whoever owns it.
ConnectCheck = Callable[[str, int, str], "str | None"]
# A server name and port → the addresses to try, in order (blocking; run off the event loop).
Resolver = Callable[[str, int], list[str]]

# Resolved addresses are reused this long (a lookup per request would be a DNS query per app
# every few seconds); a failed connection resolves again (forget()).
RESOLVED_SECONDS = 30.0


class AddressRefused(Exception):
    """The policy refuses an address the server's name resolves to; the message is the
    policy's verdict (what to fix, where)."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def literal_address(host: str) -> str | None:
    """The address a server name stands for without asking DNS (an IP, localhost), or None."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """A 429's or 503's Retry-After (delta-seconds or an HTTP date) in seconds from now, or
    None when there is none or it does not parse."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` for a TCP connection, IPv4 first, without duplicates."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ordered = sorted(found, key=lambda entry: entry[0] != socket.AF_INET)
    return list(dict.fromkeys(str(entry[4][0]) for entry in ordered))


@dataclass(frozen=True)
class Route:
    """Where one request connects: the URL with a checked address in place of the name, the
    Host header that keeps the name, and httpx extensions (the TLS server name)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckedAddresses:
    """Resolves server names (cached for RESOLVED_SECONDS) and routes requests to addresses
    the connect check accepts."""

    connect_check: ConnectCheck | None = None
    resolver: Resolver = system_resolver
    _resolved: dict[str, tuple[float, list[str]]] = field(default_factory=dict, repr=False)

    def forget(self) -> None:
        """Resolve again next time (after a failed connection: the server may have moved)."""
        self._resolved.clear()

    async def route(self, url: str, attempt: int = 0) -> Route:
        """Where a request to ``url`` connects. Without a connect check, ``url`` itself; with
        one, a checked address of its host (the ``attempt``-th, round robin).

        AddressRefused when any address the name resolves to is refused (one bad address is
        enough: the resolver's order is not the operator's to trust); httpx.ConnectError when
        the name does not resolve."""
        if self.connect_check is None:
            return Route(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or default_port(parts.scheme)
        addresses = await self.addresses(host, port)
        for address in addresses:
            refusal = self.connect_check(host, port, address)
            if refusal:
                raise AddressRefused(refusal)
        address = addresses[attempt % len(addresses)]
        netloc = host_port(address, port)
        extensions: dict[str, Any] = {} if is_ip(host) else {"sni_hostname": host}
        rest = url[len(f"{parts.scheme}://{parts.netloc}"):]
        return Route(f"{parts.scheme}://{netloc}{rest}", {"Host": parts.netloc}, extensions)

    async def addresses(self, host: str, port: int) -> list[str]:
        if is_ip(host):
            return [str(ipaddress.ip_address(host))]
        cached = self._resolved.get(host)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, self.resolver, host, port)
        except OSError:
            raise httpx.ConnectError(f"cannot resolve {host}") from None
        if not found:
            raise httpx.ConnectError(f"{host} resolves to no address")
        self._resolved[host] = (time.monotonic() + RESOLVED_SECONDS, found)
        return found
