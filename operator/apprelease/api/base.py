"""Shared pieces of the API model: camelCase base class, CEL rule helper, validators.

The same rules are enforced twice on purpose: as CEL in the CRD (the apiserver rejects bad
input at admission, with the field named) and as pydantic validators (the operator never
trusts that admission ran, e.g. objects stored before a CRD upgrade).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Kubernetes DNS-1123 subdomain, optionally a leading wildcard label (Ingress hosts allow it).
DNS_HOST_PATTERN = (
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# DNS-1123 label (object names such as Secrets, ConfigMaps, ports are stricter: IANA_SVC_NAME).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# IANA service name: what Kubernetes accepts as a named container port (<= 15 characters,
# at least one letter, no "--": the last two are CEL rules, RE2 has no lookahead).
PORT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Go-style durations we accept for pauses and timeouts: 30s, 5m, 1h30m, 500ms. At most six
# digits a part keeps every value inside what CEL's duration() and datetime arithmetic hold.
DURATION_PATTERN = r"^([0-9]{1,6}(ms|s|m|h))+$"
# What Kubernetes accepts for its int32 fields (replicas, seconds, thresholds).
INT32_MAX = 2_147_483_647
# A label value, and a label or annotation key (a qualified name, optionally prefixed).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME = rf"({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"
QUALIFIED_NAME_PATTERN = f"^{QUALIFIED_NAME}$"
# An absolute HTTP path as Kubernetes accepts it for Prefix/Exact Ingress paths (and Gateway
# API for PathPrefix): no "//", "/./", "/../", "%2f", "%2F", and no trailing "/." or "/..".
_INVALID_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")
HTTP_PATH_RULE = (
    " && ".join(f"!self.contains('{part}')" for part in _INVALID_PATH_PARTS)
    + " && !self.endsWith('/..') && !self.endsWith('/.')"
)
HTTP_PATH_MESSAGE = "must be an absolute path without //, /./, /../, %2f or a trailing /. or /.."


def check_http_path(path: str) -> str:
    if any(s in path for s in _INVALID_PATH_PARTS) or path.endswith(("/..", "/.")):
        raise ValueError(HTTP_PATH_MESSAGE)
    return path


# What Kubernetes accepts as a ConfigMap (or Secret) key: [-._a-zA-Z0-9]+, but not ".", ".."
# or anything starting with ".." (RE2 has no lookahead: a leading "." must be followed by
# something else). At most 253 characters, said where it is used.
CONFIGMAP_KEY_PATTERN = r"^(\.[-_a-zA-Z0-9]|[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
# An env var name (also an envFrom prefix) as Kubernetes validates it without the relaxed
# rules of 1.30+: [-._a-zA-Z][-._a-zA-Z0-9]*, not ".", ".." or starting with "..".
ENV_NAME = r"(\.[-_a-zA-Z0-9]|[-_a-zA-Z])[-._a-zA-Z0-9]*"
ENV_NAME_PATTERN = f"^{ENV_NAME}$"
# Printable ASCII without the space (what image references and Nacos names are made of):
# explicit ranges, because Go's RE2 reads \S as ASCII and pydantic's regex as Unicode.
PRINTABLE_ASCII_PATTERN = r"^[\x21-\x7e]+$"

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``1h30m`` (validated by DURATION_PATTERN beforehand)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    return sum(int(n) * _DURATION_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def duration_seconds(value: int | str) -> float:
    """Seconds in a duration field: an integer is seconds, a string has units (``1h30m``)."""
    return float(value) if isinstance(value, int) else parse_duration(value)


def duration_text(value: int | str) -> str:
    """A duration field as people read it: ``30`` is shown as ``30s``."""
    return f"{value}s" if isinstance(value, int) else value


def cel_regex(pattern: str) -> str:
    """A regex as a single-quoted CEL string literal."""
    return "'" + pattern.replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_name_rule(what: str) -> dict[str, Any]:
    """CEL: every key of a map is a valid label/annotation key (a qualified name)."""
    return cel(
        f"self.all(k, k.size() <= 317 && k.indexOf('/') <= 253 && k.matches({cel_regex(QUALIFIED_NAME_PATTERN)}))",
        f"{what} keys must be qualified names such as example.com/key or key",
    )


def check_qualified_names(keys: Any, what: str) -> None:
    for key in keys:
        if len(key) > 317 or key.find("/") > 253 or not re.fullmatch(QUALIFIED_NAME_PATTERN, key):
            raise ValueError(f"{what} keys must be qualified names such as example.com/key or key")


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def exactly_one(wire_fields: tuple[str, ...], message: str) -> dict[str, Any]:
    """CEL: exactly one of these (camelCase) fields is set."""
    present = ", ".join(f"has(self.{name})" for name in wire_fields)
    return cel(f"[{present}].filter(x, x).size() == 1", message)


def check_exactly_one(obj: BaseModel, fields: tuple[str, ...], message: str) -> None:
    """The same rule for the operator's own parsing (snake_case attribute names)."""
    if only_one_set(obj, fields) != 1:
        raise ValueError(message)


def validations(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules (and any other schema keys)."""
    return {"x-kubernetes-validations": list(rules), **extra}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def only_one_set(obj: BaseModel, fields: tuple[str, ...]) -> int:
    return sum(getattr(obj, f) is not None for f in fields)
