"""Reading Nacos' answers: the shapes each API version returns, checked rather than trusted
(a weight Nacos never stores, a row that is not an object, a text where JSON was expected).
Pure functions of a response; the client (registry/nacos.py) does the I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import httpx

from apprelease.registry.base import RegistryBadResponse, RegistryInstance

DEFAULT_CLUSTER = "DEFAULT"
# Nacos' own "nothing there" messages ("service X is not found!", "cluster X is not found!",
# "service not found, namespace: ..."); case-sensitive so Spring's generic "Not Found" for an
# unknown path is not mistaken for an empty service.
NOT_FOUND_MESSAGE = re.compile(r"is not found|service not found")
# The instance write's own answer for a service Nacos does not know (2.x: HTTP 500 text
# "caused: service not found, namespace: ..."; 3.x: HTTP 400 JSON, the same in `data`).
SERVICE_NOT_FOUND_MESSAGE = re.compile(r"service not found")
# Creating a service that exists (2.x v2 and 3.x: HTTP 400, code 21007).
ALREADY_EXISTS_MESSAGE = re.compile(r"already exist")
MAX_DETAIL_CHARS = 160
# Nacos stores weights from 0 to 10000 and refuses the rest (docs/nacos-notes.md).
MAX_NACOS_WEIGHT = 10000.0


def says_not_found(response: httpx.Response) -> bool:
    """Nacos answers an unknown service or cluster with an error, each version its own way:
    v1 in plain text ("caused: cluster DEFAULT is not found!;"), v3 as JSON whose `message`
    is "server error" and whose `data` says "service not found". Never shown to anyone."""
    return says(response, NOT_FOUND_MESSAGE)


def says_service_not_found(response: httpx.Response) -> bool:
    """An error answer that says the service itself is unknown (not a cluster, not a path)."""
    return response.status_code in (400, 404, 500) and says(response, SERVICE_NOT_FOUND_MESSAGE)


def says_already_exists(response: httpx.Response) -> bool:
    return response.status_code in (400, 409, 500) and says(response, ALREADY_EXISTS_MESSAGE)


def says(response: httpx.Response, message: re.Pattern[str]) -> bool:
    """Whether Nacos' error answer (text, or JSON `message`/`data`/`error`) matches."""
    texts = [response.content[:MAX_DETAIL_CHARS].decode("utf-8", "replace")]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        texts.extend(str(body.get(key) or "") for key in ("message", "data", "error"))
    return any(message.search(text) for text in texts)


def printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def as_float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def list_rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def flag(value: bool) -> str:
    return "true" if value else "false"


def json_body(response: httpx.Response, base_url: str, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise RegistryBadResponse(
            f"Nacos at {base_url}: {what}: expected JSON, got HTTP {response.status_code} "
            f"{response.headers.get('content-type', 'without content type')}"
        ) from None


def envelope_data(body: Any) -> Any:
    """The payload of a v2/v3 `{"code": 0, "data": ...}` envelope."""
    return body.get("data") if isinstance(body, dict) else None


class BadWeight(ValueError):
    """A weight Nacos never stores (NaN, infinite, outside 0-10000): the answer is not Nacos'."""


def parse_weight(value: Any) -> float:
    weight = float(value)
    if not math.isfinite(weight) or not 0 <= weight <= MAX_NACOS_WEIGHT:
        raise BadWeight(printable(str(value))[:20])
    return weight


def parse_instance(raw: Mapping[str, Any]) -> RegistryInstance:
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {}
    return RegistryInstance(
        ip=str(raw["ip"]),
        port=int(raw["port"]),
        healthy=bool(raw.get("healthy", False)),
        enabled=bool(raw.get("enabled", True)),
        weight=parse_weight(raw.get("weight", 1.0)),
        ephemeral=bool(raw.get("ephemeral", True)),
        cluster=str(raw.get("clusterName") or DEFAULT_CLUSTER),
        metadata={str(key): str(value) for key, value in metadata.items()},
    )
