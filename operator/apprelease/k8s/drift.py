"""Does a live object already carry everything we would apply? Pure.

An idle operator must make zero writes, yet drift on our fields must be reverted. So we
compare what we would apply with what is there, as a subset: fields others added (defaults,
nodePorts, an HPA's annotations) are ignored; fields we set must match.
"""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from kubernetes.utils import parse_quantity

from ..api.resources import is_quantity, quantity_value

_MILLI = Decimal("0.001")
# Go's omitempty drops these, so "absent" in the live object equals them.
_EMPTY: tuple[Any, ...] = (False, 0, "", None)


def _is_empty(value: Any) -> bool:
    return value in _EMPTY or value == [] or value == {}


def _milli(quantity: str) -> Decimal:
    with localcontext() as context:
        context.prec = 200  # 1e99 has 100 digits
        return quantity_value(quantity).quantize(_MILLI, rounding=ROUND_CEILING)


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    # Quantities are canonicalised by the apiserver ("1000m" → "1", 1 → "1"), binary ones
    # capped ("9999Ei" → int64's maximum), and a resource list's rounded up to milli units
    # ("1.0000000011" → "1001m"): compared the same way, or every reconcile would re-apply.
    if isinstance(want, int | float | str) and isinstance(have, int | float | str):
        if is_quantity(str(want)) and is_quantity(str(have)):
            return _milli(str(want)) == _milli(str(have))
        try:
            return bool(parse_quantity(want) == parse_quantity(have))
        except (ValueError, TypeError):
            return str(want) == str(have)
    return False


def contains(have: Any, want: Any) -> bool:
    """True when ``have`` (live) includes ``want`` (desired) field by field."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return _is_empty(want) and have is None
        return all(
            contains(have[key], value) if key in have else _is_empty(value)
            for key, value in want.items()
        )
    if isinstance(want, list):
        if not isinstance(have, list):
            return not want and have is None
        return len(want) == len(have) and all(contains(h, w) for h, w in zip(have, want, strict=True))
    return _scalar_equal(want, have)


# Fields compared whole, because a key more changes their meaning: a Service selector with a
# key left over selects fewer pods (a blue-green app's revision key, after a change to canary
# or rolling). Only we set them; a server-side apply without the key removes it.
_WHOLE: dict[str, tuple[str, ...]] = {"Service": ("spec", "selector")}


def _at(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None  # type: ignore[assignment]
    return obj


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    if live is None:
        return True
    path = _WHOLE.get(desired.get("kind", ""))
    if path is not None and (_at(live, path) or {}) != (_at(desired, path) or {}):
        return True
    return not contains(live, desired)


# Controllers that write the objects we apply as part of their own job, never drift.
_CONTROLLERS = ("kube-controller-manager",)


def _other_managers(obj: dict[str, Any], ours: str) -> list[dict[str, Any]]:
    return [
        m for m in obj.get("metadata", {}).get("managedFields") or []
        if not m.get("subresource") and m.get("manager") not in (ours, *_CONTROLLERS)
    ]


def drifted_fields(live: dict[str, Any], desired: dict[str, Any], ours: str) -> dict[str, list[str]]:
    """Per other manager, the fields we apply that it owns in ``live`` with another value.

    Read off the object's managedFields, so it survives an operator restart: whoever changes a
    field we set (an Update by kubectl or Rancher, or a forced apply) takes its ownership from
    us until we apply again. Fields they own that we do not set are theirs, never drift."""
    found: dict[str, list[str]] = {}
    for entry in _other_managers(live, ours):
        paths = _owned_differing(entry.get("fieldsV1") or {}, live, desired, "")
        if paths:
            found.setdefault(str(entry.get("manager") or "an unnamed manager"), []).extend(paths)
    return found


def _owned_differing(fields: dict[str, Any], have: Any, want: Any, path: str) -> list[str]:
    """Walk a managedFields fieldsV1 set (``f:`` fields, ``k:`` list entries by key) along what
    we want; a leaf it owns whose live value does not include ours is a drifted path."""
    found: list[str] = []
    for key, sub in fields.items():
        if key.startswith("f:") and isinstance(want, dict) and key[2:] in want:
            name = key[2:]
            have_value = have.get(name) if isinstance(have, dict) else None
            if sub:
                found += _owned_differing(sub, have_value, want[name], f"{path}.{name}")
            elif not contains(have_value, want[name]):
                found.append(f"{path}.{name}")
        elif key.startswith("k:") and isinstance(want, list):
            try:
                item_key = json.loads(key[2:])
            except ValueError:
                continue
            index = next((i for i, w in enumerate(want) if _keyed(w, item_key, exact=False)), None)
            if index is None:
                continue
            have_item = next((h for h in have if _keyed(h, item_key, exact=True)), None) if isinstance(have, list) else None
            found += _owned_differing(sub, have_item, want[index], f"{path}[{index}]")
    return found


def _keyed(item: Any, key: dict[str, Any], *, exact: bool) -> bool:
    """Whether a list item has the entry's key values; in what we render, a key field left out
    (a port's default protocol) matches."""
    if not isinstance(item, dict) or not any(k in item for k in key):
        return False
    return all(item.get(k) == v or (not exact and k not in item) for k, v in key.items())


def last_other_writer(obj: dict[str, Any], ours: str) -> str | None:
    """Who last wrote the object's spec or metadata, when not us: the newest managedFields
    entry of another manager (status and scale subresources are the controllers' own)."""
    entries = _other_managers(obj, ours)
    if not entries:
        return None
    newest = max(entries, key=lambda m: str(m.get("time") or ""))
    return str(newest.get("manager") or "an unnamed manager")


def differing_paths(live: Any, want: Any, path: str = "") -> list[str]:
    """Where ``live`` does not include ``want`` (the fields needs_apply finds changed)."""
    if isinstance(want, dict) and isinstance(have := live, dict):
        found: list[str] = []
        for key, value in want.items():
            if key in have:
                found += differing_paths(have[key], value, f"{path}.{key}")
            elif not _is_empty(value):
                found.append(f"{path}.{key}")
        return found
    if isinstance(want, list) and isinstance(live, list) and len(want) == len(live):
        return [p for i, (h, w) in enumerate(zip(live, want, strict=True)) for p in differing_paths(h, w, f"{path}[{i}]")]
    return [] if contains(live, want) else [path or "."]
