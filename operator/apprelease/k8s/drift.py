"""Does a live object already carry everything we would apply? Pure.

An idle operator must make zero writes, yet drift on our fields must be reverted. So we
compare what we would apply with what is there, as a subset: fields others added (defaults,
nodePorts, an HPA's annotations) are ignored; fields we set must match.
"""

from __future__ import annotations

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
