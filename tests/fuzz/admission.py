"""What the apiserver does to an AppRelease before it is stored, emulated offline.

In the apiserver's order: nulls of non-nullable fields are dropped, defaults are applied
(recursively, into defaulted objects too), then the structural schema and every
``x-kubernetes-validations`` rule are checked against the defaulted object. Unknown fields
are an error, as with kubectl's default strict field validation. Patterns are RE2 searches,
as in Go, not Python ``re`` matches (``\\s`` is ASCII-only there, ``$`` is end of text).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import re2
import yaml

from tests.support import ROOT

from . import cel_rules

CRD_PATH = ROOT / "crds" / "apprelease.io_appreleases.yaml"
# etcd refuses requests over its --max-request-bytes (1.5 MiB by default); the stored object
# adds metadata and managedFields to the body, so stay clear of the exact edge.
MAX_OBJECT_BYTES = 1_400_000
Schema = dict[str, Any]


def stored_size(obj: Any) -> int:
    """Bytes of the object as the apiserver writes it to etcd: Go's encoding/json escapes <, >
    and & as \\u003c (6 bytes instead of 1) and U+2028/U+2029 as \\u2028 (6 instead of 3)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    escaped = 5 * sum(text.count(c) for c in "<>&") + 3 * (text.count("\u2028") + text.count("\u2029"))
    return len(text.encode()) + escaped


@cache
def _load_schema(path: Path, mtime_ns: int) -> Schema:
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


def crd_schema(path: Path = CRD_PATH) -> Schema:
    """The storage version's openAPIV3Schema, re-read whenever `make crds` rewrote the file."""
    return _load_schema(path, path.stat().st_mtime_ns)


@dataclass
class Admission:
    body: Any
    errors: list[str] = field(default_factory=list)

    @property
    def admitted(self) -> bool:
        return not self.errors


def as_decoded(value: Any) -> Any:
    """JSON as the apiserver decodes it (what CEL sees): integers beyond int64 are float64."""
    if isinstance(value, dict):
        return {k: as_decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_decoded(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def as_read_back(value: Any) -> Any:
    """Decoded JSON as a client reads it back: Go writes an integral float64 below 1e21
    without exponent, so Python's json reads it as an int again (2**64 stays 2**64)."""
    if isinstance(value, dict):
        return {k: as_read_back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_read_back(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def admit(body: dict[str, Any], schema: Schema | None = None) -> Admission:
    schema = schema or crd_schema()
    obj = as_decoded(body)
    drop_nulls(obj, schema)
    apply_defaults(obj, schema)
    result = Admission(as_read_back(obj))
    size = stored_size(obj)
    if size > MAX_OBJECT_BYTES:
        result.errors.append(f"<root>: {size} bytes: etcd's request size limit")
        return result
    validate(obj, schema, "", result.errors)
    return result


def preserves_unknown(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) and not schema.get("properties")


def _children(value: Any, schema: Schema) -> list[tuple[Any, Schema]]:
    """(child value, child schema) pairs the schema describes."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return [
            (v, props.get(k, extra))
            for k, v in value.items()
            if k in props or isinstance(extra, dict)
        ]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [(v, schema["items"]) for v in value]
    return []


def drop_nulls(value: Any, schema: Schema) -> None:
    if isinstance(value, dict) and not preserves_unknown(schema):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in [k for k, v in value.items() if v is None]:
            if key in props or isinstance(extra, dict):
                del value[key]
    for child, child_schema in _children(value, schema):
        drop_nulls(child, child_schema)


def apply_defaults(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        for key, prop in (schema.get("properties") or {}).items():
            if "default" in prop and key not in value:
                value[key] = copy.deepcopy(prop["default"])
    for child, child_schema in _children(value, schema):
        apply_defaults(child, child_schema)


def list_keys(schema: Schema) -> list[str] | None:
    """What must be unique in a list: the map keys of a list-type map, [] for a set (whole
    items), None when anything goes (atomic, or no list type)."""
    kind = schema.get("x-kubernetes-list-type")
    if kind == "map":
        return list(schema.get("x-kubernetes-list-map-keys") or [])
    return [] if kind == "set" else None


def _frozen(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    kind = schema.get("type")
    if kind is None:
        return True
    return {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }[kind](value)


@cache
def _regex(pattern: str) -> Any:
    return re2.compile(pattern)


def _bounds(value: Any, schema: Schema, path: str, errors: list[str]) -> None:
    def bad(what: str) -> None:
        errors.append(f"{path or '<root>'}: {what}: {value!r:.80}")

    if "enum" in schema and value not in schema["enum"]:
        bad("not one of the enum values")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            bad(f"longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f"shorter than {schema['minLength']}")
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            bad(f"does not match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "maximum" in schema and value > schema["maximum"]:
            bad(f"above {schema['maximum']}")
        if "minimum" in schema and value < schema["minimum"]:
            bad(f"below {schema['minimum']}")
    if isinstance(value, list):
        keys = list_keys(schema)
        if keys is not None:
            seen = [tuple(v.get(k) for k in keys) if keys and isinstance(v, dict) else _frozen(v)
                    for v in value]
            if len(seen) != len(set(seen)):
                bad(f"duplicate entries (x-kubernetes-list-type {schema['x-kubernetes-list-type']})")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            bad(f"more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(f"fewer than {schema['minItems']} items")
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            bad(f"more than {schema['maxProperties']} properties")
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(f"{path}.{key}: Required value")


def validate(value: Any, schema: Schema, path: str, errors: list[str]) -> None:
    """Append every schema and CEL error of ``value`` (already defaulted) to ``errors``."""
    if not _type_ok(value, schema):
        errors.append(f"{path or '<root>'}: wrong type {type(value).__name__}, want {schema.get('type')}")
        return
    before = len(errors)
    _bounds(value, schema, path, errors)
    if isinstance(value, dict) and not preserves_unknown(schema):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key in props:
                validate(child, props[key], f"{path}.{key}", errors)
            elif isinstance(extra, dict):
                validate(child, extra, f"{path}[{key!r}]", errors)
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                errors.append(f"{path}.{key}: unknown field")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            validate(child, schema["items"], f"{path}[{index}]", errors)
    if len(errors) > before:
        return  # the apiserver evaluates rules only on values that passed the schema
    for entry in schema.get("x-kubernetes-validations") or []:
        try:
            ok = cel_rules.holds(entry["rule"], value)
        except cel_rules.RuleError as exc:
            errors.append(f"{path or '<root>'}: rule error: {exc}")
            continue
        if not ok:
            errors.append(f"{path or '<root>'}: {entry.get('message', entry['rule'])}")


def crd_identity(path: Path = CRD_PATH) -> tuple[str, str]:
    """(apiVersion, kind) of the CRD's storage version."""
    crd = yaml.safe_load(path.read_text())
    (version,) = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    return f"{crd['spec']['group']}/{version}", crd["spec"]["names"]["kind"]


def unresolved_references(schema: Schema, path: str = "") -> list[str]:
    """Rules or fieldPaths naming a field the schema does not declare: the apiserver refuses
    such a CRD (fieldPath "must be a valid path"; CEL "undefined field")."""
    problems = []
    for entry in schema.get("x-kubernetes-validations") or []:
        for chain in re.findall(r"\bself((?:\.\w+)+)(?!\w|\s*\()", entry["rule"]):
            problems += _resolve(schema, chain, f"{path or '<root>'}: rule {entry['rule']!r}")
        if "fieldPath" in entry:
            problems += _resolve(schema, entry["fieldPath"], f"{path or '<root>'}: fieldPath")
    for key, child in (schema.get("properties") or {}).items():
        problems += unresolved_references(child, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += unresolved_references(schema[key], f"{path}[]")
    return problems


def _resolve(schema: Schema, chain: str, where: str) -> list[str]:
    node = schema
    for name in chain.strip(".").split("."):
        if node.get("x-kubernetes-preserve-unknown-fields") or node.get("type") != "object":
            return []
        props = node.get("properties")
        if props is None:
            return []  # a map: any key
        if name not in props:
            return [f"{where}: {name!r} is not a field here (fields: {sorted(props)})"]
        node = props[name]
    return []
