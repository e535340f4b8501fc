"""Container resources: names and quantities, checked as the apiserver checks a Deployment's.

One definition serves the CRD's rules and the model. Quantities follow Kubernetes' canonical
grammar, unsigned and with at most a two-digit exponent: apimachinery's own parser is more
lenient ("+", "-" and "." parse as zero) and hangs on an exponent at the int32 boundary
("1e2147483648" keeps a 1.36 apiserver computing until the request times out), so the CEL
rules match this pattern before they ever call ``isQuantity`` or ``quantity``.
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, localcontext
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .base import ApiModel, cel, cel_regex, validations

QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]{1,2})?$"
# Whole numbers (hugepages): no fraction, no milli/micro/nano, no exponent.
WHOLE_QUANTITY_PATTERN = r"^[0-9]+([KMGTPE]i|[kMGTPE])?$"
# Extended resources are counted (devices): Kubernetes wants integers; 15 digits keep the
# apiserver's milli-value arithmetic inside int64.
COUNT_PATTERN = r"^[0-9]{1,15}$"
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
HUGEPAGES_PREFIX = "hugepages-"
HUGEPAGES_PATTERN = r"^hugepages-[1-9][0-9]{0,3}(Ki|Mi|Gi)$"
# example.com/gpu: Kubernetes checks "requests." + name as a qualified name, so the domain
# is at most 244 characters; *kubernetes.io/ names are Kubernetes' own.
EXTENDED_PATTERN = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
MAX_EXTENDED_DOMAIN = 244
MAX_QUANTITY_LENGTH = 32

NAMES_MESSAGE = (
    "keys must be cpu, memory, ephemeral-storage, hugepages-<page size> (hugepages-2Mi)"
    " or an extended resource such as example.com/gpu"
)
QUANTITY_MESSAGE = "values must be Kubernetes quantities such as 250m, 1 or 512Mi (not negative)"
COUNT_MESSAGE = "extended resources (example.com/gpu) take whole numbers"
HUGEPAGES_MESSAGE = "hugepages take a whole multiple of their page size (hugepages-2Mi: 2Mi, 4Mi, ...)"
PAIRED_MESSAGE = "hugepages and extended resources need a limit, and a request equal to it"
WITHIN_LIMITS_MESSAGE = "each request must be at most its limit"
HUGEPAGES_NEED_CPU_OR_MEMORY = "hugepages need a cpu or memory request or limit"


def _value(v: str) -> str:
    return f"string(self[{v}])"


def _quantity_ok(text: str) -> str:
    return f"{text}.matches({cel_regex(QUANTITY_PATTERN)})"


_NAMES_RULE = (
    "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage']"
    f" || k.matches({cel_regex(HUGEPAGES_PATTERN)})"
    f" || (k.matches({cel_regex(EXTENDED_PATTERN)}) && k.indexOf('/') <= {MAX_EXTENDED_DOMAIN}"
    " && !k.startsWith('requests.') && !k.contains('kubernetes.io/')))"
)
_QUANTITIES_RULE = f"self.all(k, {_quantity_ok(_value('k'))})"
_COUNTS_RULE = f"self.all(k, !k.contains('/') || {_value('k')}.matches({cel_regex(COUNT_PATTERN)}))"
_PAGE = f"quantity(k.substring({len(HUGEPAGES_PREFIX)}))"
_HUGEPAGES_RULE = (
    f"self.all(k, !k.matches({cel_regex(HUGEPAGES_PATTERN)})"
    f" || ({_value('k')}.matches({cel_regex(WHOLE_QUANTITY_PATTERN)})"
    f" && quantity({_value('k')}).isInteger()"
    f" && quantity({_value('k')}).asInteger() % {_PAGE}.asInteger() == 0))"
)


def _pair(op: str) -> str:
    request, limit = "string(self.requests[k])", "string(self.limits[k])"
    return (f"!{_quantity_ok(request)} || !{_quantity_ok(limit)}"
            f" || quantity({request}).compareTo(quantity({limit})) {op} 0")


_WITHIN_LIMITS = (
    "!has(self.requests) || !has(self.limits)"
    f" || self.requests.all(k, !(k in self.limits) || {_pair('<=')})"
)
_PAIRED = (
    "!has(self.requests) || self.requests.all(k, !(k.startsWith('hugepages-') || k.contains('/'))"
    f" || (has(self.limits) && k in self.limits && ({_pair('==')})))"
)
_HAS_HUGEPAGES = "self.{m}.exists(k, k.startsWith('hugepages-'))"
_HAS_CPU_OR_MEMORY = "('cpu' in self.{m} || 'memory' in self.{m})"
_HUGEPAGES_WITH_CPU_OR_MEMORY = (
    "!((has(self.requests) && " + _HAS_HUGEPAGES.format(m="requests") + ")"
    " || (has(self.limits) && " + _HAS_HUGEPAGES.format(m="limits") + "))"
    " || (has(self.requests) && " + _HAS_CPU_OR_MEMORY.format(m="requests") + ")"
    " || (has(self.limits) && " + _HAS_CPU_OR_MEMORY.format(m="limits") + ")"
)

# int-or-string like Kubernetes' own Quantity fields; write fractions as strings ("500m", "0.5").
Quantity = int | Annotated[str, Field(max_length=MAX_QUANTITY_LENGTH)]

_DECIMAL_SUFFIXES = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_NANO = Decimal("1e-9")
_INT64_MAX = Decimal(2**63 - 1)


def is_quantity(value: Quantity) -> bool:
    return re.fullmatch(QUANTITY_PATTERN, str(value)) is not None


def quantity_value(value: Quantity) -> Decimal:
    """The value the apiserver keeps (what CEL's ``compareTo`` compares): non-zero values
    rounded up to whole nano units, binary-suffixed ones capped at int64's maximum."""
    text = str(value)
    parts = re.fullmatch(QUANTITY_PATTERN, text)
    if parts is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    suffix = parts.group(3) or ""
    with localcontext() as context:
        context.prec = 200
        number = Decimal(parts.group(1))
        if suffix in _BINARY_SUFFIXES:
            number = min(number * 2 ** _BINARY_SUFFIXES[suffix], _INT64_MAX)
        elif suffix in _DECIMAL_SUFFIXES:
            number = number.scaleb(_DECIMAL_SUFFIXES[suffix])
        else:
            number = number.scaleb(int(suffix[1:]))
        if number.as_tuple().exponent < -9:  # type: ignore[operator]
            number = number.quantize(_NANO, rounding=ROUND_UP)
        return number


def is_extended(name: str) -> bool:
    return (re.fullmatch(EXTENDED_PATTERN, name) is not None and name.index("/") <= MAX_EXTENDED_DOMAIN
            and not name.startswith("requests.") and "kubernetes.io/" not in name)


def _hugepage_size(name: str) -> int | None:
    return int(quantity_value(name[len(HUGEPAGES_PREFIX):])) if re.fullmatch(HUGEPAGES_PATTERN, name) else None


def _overcommit_allowed(name: str) -> bool:
    return not (name.startswith(HUGEPAGES_PREFIX) or "/" in name)


def _check_entry(name: str, value: Quantity) -> None:
    page = _hugepage_size(name)
    if name not in STANDARD_RESOURCES and page is None and not is_extended(name):
        raise ValueError(f"{name!r}: {NAMES_MESSAGE}")
    if not is_quantity(value):
        raise ValueError(f"{name}: {value!r}: {QUANTITY_MESSAGE}")
    if "/" in name and not re.fullmatch(COUNT_PATTERN, str(value)):
        raise ValueError(f"{name}: {value!r}: {COUNT_MESSAGE}")
    if page is not None and not (
        re.fullmatch(WHOLE_QUANTITY_PATTERN, str(value)) and quantity_value(value) % page == 0
    ):
        raise ValueError(f"{name}: {value!r}: {HUGEPAGES_MESSAGE}")


def _quantities() -> object:
    return Field(
        default_factory=dict,
        json_schema_extra=validations(
            cel(_NAMES_RULE, NAMES_MESSAGE),
            cel(_QUANTITIES_RULE, QUANTITY_MESSAGE),
            cel(_COUNTS_RULE, COUNT_MESSAGE),
            cel(_HUGEPAGES_RULE, HUGEPAGES_MESSAGE),
            maxProperties=8,
        ),
    )


class Resources(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(_WITHIN_LIMITS, WITHIN_LIMITS_MESSAGE, field_path=".requests"),
            cel(_PAIRED, PAIRED_MESSAGE, field_path=".requests"),
            cel(_HUGEPAGES_WITH_CPU_OR_MEMORY, HUGEPAGES_NEED_CPU_OR_MEMORY),
        )
    }

    requests: dict[str, Quantity] = _quantities()  # type: ignore[assignment]
    limits: dict[str, Quantity] = _quantities()  # type: ignore[assignment]

    @field_validator("requests", "limits")
    @classmethod
    def _entries_valid(cls, value: dict[str, Quantity]) -> dict[str, Quantity]:
        for name, quantity in value.items():
            _check_entry(name, quantity)
        return value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name, request in self.requests.items():
            if name not in self.limits:
                if not _overcommit_allowed(name):
                    raise ValueError(PAIRED_MESSAGE)
                continue
            request_value, limit_value = quantity_value(request), quantity_value(self.limits[name])
            if request_value > limit_value:
                raise ValueError(WITHIN_LIMITS_MESSAGE)
            if request_value != limit_value and not _overcommit_allowed(name):
                raise ValueError(PAIRED_MESSAGE)
        names = set(self.requests) | set(self.limits)
        if any(n.startswith(HUGEPAGES_PREFIX) for n in names) and not names & {"cpu", "memory"}:
            raise ValueError(HUGEPAGES_NEED_CPU_OR_MEMORY)
        return self
