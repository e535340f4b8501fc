"""What the CRD's CEL rules say about a node, read so the strategies can aim at admitted input.

Only shapes are read here (which keys exclude each other, which regex a string or a map key
must match, numeric bounds of an int-or-string, a unique list field, quantities); whether a
value is admitted is always decided by evaluating the rules themselves (admission.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apprelease.api.base import cel_regex
from apprelease.api.resources import QUANTITY_PATTERN

_GROUP = re.compile(r"\[((?:\s*has\(self\.\w+\)\s*,?)+)\]\.filter\(\w+,\s*\w+\)\.size\(\)\s*(==|<=)\s*1")
_HAS = re.compile(r"has\(self\.(\w+)\)")
_NOT_BOTH = re.compile(r"^!\(has\(self\.(\w+)\) && has\(self\.(\w+)\)")
# A "!" before it makes the match a guard ("!k.matches(r) || ..."), not a requirement.
_MATCHES = re.compile(r"(!?)([\w.]+)\.matches\('((?:[^'\\]|\\.)*)'\)")
_ALL_KEYS = re.compile(r"^self\.all\((\w+),")
_INT_MIN = re.compile(r"self >= (-?\d+)")
_INT_MAX = re.compile(r"self <= (-?\d+)")
_UNIQUE = re.compile(r"exists_one\(\w+, \w+\.(\w+) == \w+\.\1\)")
_KEY_CHOICES = re.compile(r"^self\.all\((\w+), \1 in \[((?:'[^']*'(?:, )?)+)\]")
_FIELD_IN = re.compile(r"string\(self\.(\w+)\) in \[((?:'[^']*'(?:, )?)+)\]")
_SIZE_MAX = re.compile(r"size\(([\w.]+)\) <= (\d+)|([\w.]+)\.size\(\) <= (\d+)")


@dataclass
class Shapes:
    exactly_one: list[tuple[str, ...]] = field(default_factory=list)
    at_most_one: list[tuple[str, ...]] = field(default_factory=list)
    self_regexes: list[str] = field(default_factory=list)
    key_regexes: list[str] = field(default_factory=list)
    # "self.all(k, k in ['a', 'b'] || k.matches(r1) || k.matches(r2))": a key is one of the
    # literals or matches one of the regexes.
    key_choices: list[str] = field(default_factory=list)
    key_alternatives: list[str] = field(default_factory=list)
    # "string(self.divisor) in ['1m', '1']": values a field takes (drawn now and then).
    field_choices: dict[str, list[str]] = field(default_factory=dict)
    other_regexes: dict[str, list[str]] = field(default_factory=dict)  # e.g. self.metadata.name
    max_sizes: dict[str, int] = field(default_factory=dict)
    key_max: int | None = None
    int_min: int | None = None
    int_max: int | None = None
    unique_field: str | None = None
    quantities: bool = False


def shapes_of(schema: dict[str, Any]) -> Shapes:
    found = Shapes()
    for entry in schema.get("x-kubernetes-validations") or []:
        rule = entry["rule"]
        for keys, op in _GROUP.findall(rule):
            group = tuple(_HAS.findall(keys))
            (found.exactly_one if op == "==" else found.at_most_one).append(group)
        if m := _NOT_BOTH.match(rule):
            found.at_most_one.append((m.group(1), m.group(2)))
        key_var = m.group(1) if (m := _ALL_KEYS.match(rule)) else None
        choices = _KEY_CHOICES.match(rule)
        if choices:
            found.key_choices += re.findall(r"'([^']*)'", choices.group(2))
        for negated, var, regex in _MATCHES.findall(rule):
            regex = regex.replace("\\\\", "\\")
            if negated:
                continue
            if choices and var == key_var:
                found.key_alternatives.append(regex)
            elif var == "self":
                found.self_regexes.append(regex)
            elif var == key_var:
                found.key_regexes.append(regex)
            else:
                found.other_regexes.setdefault(var, []).append(regex)
        for name, literals in _FIELD_IN.findall(rule):
            found.field_choices.setdefault(name, []).extend(re.findall(r"'([^']*)'", literals))
        for a, n, b, m2 in _SIZE_MAX.findall(rule):
            var, size = a or b, int(n or m2)
            if var == key_var:
                found.key_max = size
            else:
                found.max_sizes[var] = size
        if m := _INT_MIN.search(rule):
            found.int_min = int(m.group(1))
        if m := _INT_MAX.search(rule):
            found.int_max = int(m.group(1))
        if m := _UNIQUE.search(rule):
            found.unique_field = m.group(1)
        if "quantity(" in rule.lower() or cel_regex(QUANTITY_PATTERN) in rule:
            found.quantities = True
    return found


def go_regex_for_python(pattern: str) -> str:
    """An RE2 (Go) pattern rewritten so Python's ``re`` means the same, for generation.

    Go's Perl classes are ASCII-only; Python's are Unicode-aware. Generating from the
    Python reading of ``\\S`` would never produce a no-break space, which the apiserver
    admits where ``\\S`` is required.
    """
    ascii_space = "\\t\\n\\f\\r "
    out, in_class, i = [], False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            esc = pattern[i + 1]
            if esc in "sdw":
                body = {"s": ascii_space, "d": "0-9", "w": "0-9A-Za-z_"}[esc]
                out.append(body if in_class else f"[{body}]")
            elif esc in "SDW":
                if in_class:
                    raise ValueError(f"negated class escape inside a class: {pattern}")
                out.append(f"[^{ {'S': ascii_space, 'D': '0-9', 'W': '0-9A-Za-z_'}[esc]}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class and out and out[-1] not in ("[", "[^"):
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)
