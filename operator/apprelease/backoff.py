"""Exponential back-off that stays finite however long something keeps failing."""

from __future__ import annotations

# 2 ** 30 times any base is already past every cap we use; the exponent stops there, so the
# arithmetic never overflows (0.5 * 2 ** 1024 did, after ~34 h of retries of one key).
_MAX_EXPONENT = 30


def exponential_backoff(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: base, 2 x base, ... cap."""
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    return float(min(cap, base * 2**exponent))
