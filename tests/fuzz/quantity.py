"""Kubernetes resource.Quantity parsing, for the CEL ``isQuantity`` the CRD uses.

A port of apimachinery's ``ParseQuantity`` acceptance (api/resource/quantity.go,
suffix.go): the scanner is more lenient than the documented grammar ("+", "-", "." and
"1." are quantities) and that leniency is exactly what the apiserver admits.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal, localcontext

_DIGITS = "0123456789"
_SUFFIX_LETTERS = "eEinumkKMGTP"
_NAMED_SUFFIXES = {"", "n", "u", "m", "k", "M", "G", "T", "P", "E",
                   "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _scan(text: str) -> str | None:
    """parseQuantityString: the suffix, or None where the scanner reports ErrFormatWrong."""
    pos, end = 0, len(text)
    if pos < end and text[0] in "+-":
        pos += 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return ""
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos >= end:
        return ""
    if text[pos] == ".":
        pos += 1
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        if pos >= end:
            return ""
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_LETTERS:
        pos += 1
    if pos >= end:
        return text[suffix_start:]
    if text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    return text[suffix_start:] if pos >= end else None


def _go_parse_int64(text: str) -> bool:
    """strconv.ParseInt(text, 10, 64) succeeds."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or any(c not in _DIGITS for c in body):
        return False
    return _INT64_MIN <= int(text) <= _INT64_MAX


def is_quantity(text: str) -> bool:
    if text == "":
        return False
    suffix = _scan(text)
    if suffix is None:
        return False
    if suffix in _NAMED_SUFFIXES:
        return True
    # DecimalExponent: "e"/"E" followed by a 64-bit integer (Go truncates it to int32 after).
    return len(suffix) > 1 and suffix[0] in "eE" and _go_parse_int64(suffix[1:])


_DECIMAL_EXPONENTS = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
                      "E": 18}
_BINARY_EXPONENTS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_NANO = Decimal("1e-9")
_MAX_BINARY = Decimal(2**63 - 1)


def _int32(value: int) -> int:
    """Go's int32(x) conversion: two's complement wrap-around."""
    return (value + 2**31) % 2**32 - 2**31


def quantity_value(text: str) -> Decimal:
    """The value the apiserver keeps for a quantity (what ``compareTo`` compares): non-zero
    values rounded away from zero to nano units, BinarySI capped at int64, the exponent of
    "1e<n>" wrapped to int32 as Go's conversion does; "+", "-" and "." are zero."""
    if not is_quantity(text):
        raise ValueError(f"not a quantity: {text!r}")
    suffix = _scan(text) or ""
    number = text[: len(text) - len(suffix)].lstrip("+")
    digits = number.lstrip("-")
    if digits in ("", "."):
        return Decimal(0)
    with localcontext() as context:
        context.prec, context.Emax, context.Emin = 200, 10**15, -(10**15)
        value = Decimal(("-" if number.startswith("-") else "") + (digits if digits != "." else "0"))
        if suffix in _BINARY_EXPONENTS:
            value = value * (2 ** _BINARY_EXPONENTS[suffix])
            if abs(value) > _MAX_BINARY:
                value = _MAX_BINARY.copy_sign(value)
        else:
            exponent = _DECIMAL_EXPONENTS.get(suffix)
            value = value.scaleb(exponent if exponent is not None else _int32(int(suffix[1:])))
        if value and value.as_tuple().exponent < -9:  # type: ignore[operator]
            value = value.quantize(_NANO, rounding=ROUND_UP)
    return value


_MAX_INT64_FACTORS = 18


def _parts(text: str) -> tuple[str, str, str]:
    """(numerator without leading zeros, denominator, suffix), as parseQuantityString splits."""
    suffix = _scan(text) or ""
    number = text[: len(text) - len(suffix)].lstrip("+-")
    whole, _, denominator = number.partition(".")
    return whole.lstrip("0") or "0", denominator, suffix


def as_int64(text: str) -> int | None:
    """Quantity.AsInt64 (CEL's ``isInteger``/``asInteger``): the value when ParseQuantity took
    its int64 fast path and the value scales to an int64 without loss, else None. It depends
    on how the quantity was written, not only on its value: "1000m" is not an integer here."""
    if not is_quantity(text):
        raise ValueError(f"not a quantity: {text!r}")
    if text == "0":
        return 0
    numerator, denominator, suffix = _parts(text)
    negative = text.startswith("-")
    if suffix in _BINARY_EXPONENTS:
        exponent = _BINARY_EXPONENTS[suffix]
        if denominator or 15 - len(numerator) - int(exponent * 3 / 10) - 1 < 0:
            return None
        value = int(numerator) << exponent
        scale = 0
    else:
        exponent = _DECIMAL_EXPONENTS[suffix] if suffix in _DECIMAL_EXPONENTS else _int32(int(suffix[1:]))
        if _MAX_INT64_FACTORS - len(numerator) - len(denominator) < 0:
            return None
        scale = exponent - len(denominator)
        if scale < -9:
            return None
        value = int(numerator + denominator)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None  # int64Multiply overflowed: the inf.Dec path, never an integer
    if scale < 0:
        return None
    value *= 10**scale
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return -value if negative else value
