"""Kubernetes resource.Quantity parsing, for the CEL ``isQuantity`` the CRD uses.

A port of apimachinery's ``ParseQuantity`` acceptance (api/resource/quantity.go,
suffix.go): the scanner is more lenient than the documented grammar ("+", "-", "." and
"1." are quantities) and that leniency is exactly what the apiserver admits.
"""

from __future__ import annotations

from fractions import Fraction

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


_SUFFIX_VALUE = {"": 1, "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
                 "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_value(text: str) -> Fraction | None:
    """The exact value of a quantity is_quantity() accepts (None for exponents too large to
    matter here); ``+``, ``-`` and ``.`` are zero, as the apiserver reads them."""
    if not is_quantity(text):
        raise ValueError(f"not a quantity: {text!r}")
    suffix = _scan(text) or ""
    number = text[: len(text) - len(suffix)]
    sign = -1 if number.startswith("-") else 1
    digits = number.lstrip("+-")
    whole, _, fraction = digits.partition(".")
    value = Fraction(int(whole or "0")) + (Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0)
    if suffix in _SUFFIX_VALUE:
        return sign * value * _SUFFIX_VALUE[suffix]
    exponent = int(suffix[1:])
    if abs(exponent) > 1000:
        return None
    return sign * value * Fraction(10) ** exponent
