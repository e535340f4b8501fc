"""The CRD's ``x-kubernetes-validations`` evaluated as the apiserver does.

cel-expr-python wraps cel-cpp, the reference C++ implementation (the apiserver runs
cel-go; both implement the same spec, with RE2 for ``matches``), plus its strings extension
(``replace``). Kubernetes adds libraries to CEL; only the functions the CRD uses are declared
here: ``isQuantity``, ``quantity``, ``compareTo``, ``isInteger`` and ``asInteger`` (quantity
library; a quantity travels as the text of its exact value and of its int64 form), ``isSorted``
and ``sum`` of ints (lists library). A rule calling anything else
fails to compile: a new rule that needs more of the Kubernetes libraries fails loudly
instead of passing unchecked.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from itertools import pairwise
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext.ext_strings import ExtStrings

from .quantity import as_int64, is_quantity, quantity_value


def _quantity(text: str) -> str:
    """A quantity travels as "<exact value>;<AsInt64 or nothing>"."""
    integer = as_int64(text)
    return f"{quantity_value(text)};{'' if integer is None else integer}"


def _compare_to(left: str, right: str) -> int:
    a, b = Decimal(left.split(";")[0]), Decimal(right.split(";")[0])
    return (a > b) - (a < b)


def _is_integer(value: str) -> bool:
    return value.split(";")[1] != ""


def _as_integer(value: str) -> int:
    if not _is_integer(value):
        raise ValueError("cannot convert value to integer")
    return int(value.split(";")[1])


def _is_sorted(values: Any) -> bool:
    return all(a <= b for a, b in pairwise(list(values)))


def _sum(values: Any) -> int:
    return sum(int(v) for v in values)


def _declare(name: str, result: Any, params: list[Any], impl: Any, member: bool = False) -> Any:
    return cel.FunctionDecl(name, [cel.Overload(f"k8s_{name}", result, params, is_member=member, impl=impl)])


KUBERNETES_FUNCTIONS = [
    _declare("isQuantity", cel.Type.BOOL, [cel.Type.STRING], is_quantity),
    _declare("quantity", cel.Type.STRING, [cel.Type.STRING], _quantity),
    _declare("compareTo", cel.Type.INT, [cel.Type.STRING, cel.Type.STRING], _compare_to, member=True),
    _declare("isInteger", cel.Type.BOOL, [cel.Type.STRING], _is_integer, member=True),
    _declare("asInteger", cel.Type.INT, [cel.Type.STRING], _as_integer, member=True),
    _declare("isSorted", cel.Type.BOOL, [cel.Type.List(cel.Type.DYN)], _is_sorted, member=True),
    _declare("sum", cel.Type.INT, [cel.Type.List(cel.Type.INT)], _sum, member=True),
]


class RuleError(Exception):
    """A rule did not evaluate to a boolean: the apiserver rejects the object then too."""


@cache
def _env() -> Any:
    return cel.NewEnv(variables={"self": cel.Type.DYN}, functions=KUBERNETES_FUNCTIONS,
                      extensions=[ExtStrings()])


@cache
def _program(rule: str) -> Any:
    return _env().compile(rule)


def compile_rule(rule: str) -> None:
    _program(rule)


@cache
def _fields_read(rule: str) -> frozenset[str] | None:
    """The fields of ``self`` a rule can reach, or None when it uses ``self`` as a whole.

    A rule that only says ``self.port`` sees no other field, so only the fields it names
    are handed over (converting the whole spec for every spec-level rule is the cost).
    """
    fields = set()
    for use in re.finditer(r"\bself\b(\.(\w+)(\s*\()?)?", rule):
        if use.group(2) is None or use.group(3) is not None:
            return None
        fields.add(use.group(2))
    return frozenset(fields)


# Property names that are CEL reserved words: Kubernetes rules write them as __name__.
_RESERVED = {"as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
             "loop", "package", "namespace", "return", "var", "void", "while"}


def _escaped(value: Any) -> Any:
    """Reserved property names escaped as the apiserver does. Only for rules that use such a
    name (no map key of ours is one of these words; the apiserver leaves map keys alone)."""
    if isinstance(value, dict):
        return {(f"__{k}__" if k in _RESERVED else k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def holds(rule: str, value: Any) -> bool:
    """Evaluate one rule with ``self`` bound to ``value`` (JSON data as the apiserver decoded it)."""
    fields = _fields_read(rule)
    if fields is not None and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k in fields}
    if any(f"__{word}__" in rule for word in _RESERVED):
        value = _escaped(value)
    result = _program(rule).eval(data={"self": value})
    if result.type() == cel.Type.BOOL:
        return bool(result.value())
    raise RuleError(f"{rule!r}: {result.value()!r}")
