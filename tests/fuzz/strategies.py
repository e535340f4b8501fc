"""Hypothesis strategies built from the CRD's openAPIV3Schema, read at run time.

Every keyword the schema uses is honoured (types, properties/required, enum, pattern,
min/maxLength, minimum/maximum, min/maxItems, maxProperties, additionalProperties,
x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields, defaults), and the CEL
rules shape what is generated (rule_shapes.py) and filter each object locally, so most
whole objects pass admission. Values lean to the edges: 0, the bounds, int64's and int32's
limits, strings at maxLength, long digit runs ("100000000h").
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import re2
from hypothesis import strategies as st

from . import admission, cel_rules
from .pod_template import hostile_value, pod_templates, with_app_name
from .regex_strings import matching
from .resources import resources
from .rule_shapes import Shapes, go_regex_for_python, shapes_of

Schema = dict[str, Any]
# (schema path, rule) → [candidates it admitted, candidates it turned away] in local filters.
FILTERED: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
INT64 = (-(2**63), 2**63 - 1)
# Optional properties drawn per object: the spec itself, and anything nested.
TOP_BUDGET, NESTED_BUDGET = 8, 2
SMALL_ITEMS = 2
BOUNDARY_ITEMS_LIMIT = 64
# A list or map comes at its maximum size once in EDGE_ODDS + 1 draws.
EDGE_ODDS = 9
# Unbounded strings: short ones mostly, now and then 1 KiB, rarely 300 kB (past the 256 KiB
# annotation limit; a few make a ConfigMap past 1 MiB).
LONG_UNBOUNDED = (2**10,) * 4 + (300_000,)

_text = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=16),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
)
_free_keys = st.one_of(
    matching(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)?[a-z]{1,6}/[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$"),
    matching(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$"),
    st.sampled_from(["app.kubernetes.io/name", "app.kubernetes.io/managed-by",
                     "nginx.ingress.kubernetes.io/canary",
                     "nginx.ingress.kubernetes.io/configuration-snippet"]),
    _text,
)
_PLAIN_FREE_KEYS = st.one_of(*_free_keys.original_strategies[:3])  # type: ignore[attr-defined]
_quantity_strings = st.one_of(
    matching(r"([0-9]{1,4}(\.[0-9]{0,3})?|\.[0-9]{1,3})(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]{1,2})?$"),
    matching(r"[0-9]{1,4}(Ki|Mi|Gi|[kMG])?$"),  # whole numbers: extended resources, hugepages
    st.sampled_from(["0", "1.", ".5", "1E", "8Ei", "1n", "1.0000000011", "9" * 19, "9" * 32, "1e99",
                     "1e-99", "250m", "512Mi", "2Mi", "4Mi", "1Gi", "4194304"]),
    # What the CRD refuses: lenient apimachinery forms, signs, exponents it cannot afford
    # ("1e2147483648" hangs a 1.36 apiserver's isQuantity).
    st.sampled_from(["+", "-", ".", "-1", "+1", "1e100", "1e2147483648", "1e9223372036854775807"]),
)


# Parts whose rules tie values together more than rule shapes can say: drawn for them.
AIMED: dict[str, st.SearchStrategy[Any]] = {"spec.resources": resources()}


def boundary_ints(lo: int | None, hi: int | None) -> st.SearchStrategy[int]:
    lo = INT64[0] if lo is None else lo
    hi = INT64[1] if hi is None else hi
    edges = {lo, lo + 1, hi - 1, hi, 0, 1, 2, 3, 10, 100, 3600, 2**31 - 1, 2**31, 2**32,
             10**13, 2**53, 2**63 - 1, -1, -(2**31)}
    return st.one_of(
        st.sampled_from(sorted(v for v in edges if lo <= v <= hi)),
        st.integers(lo, min(hi, lo + 20)),
        st.integers(lo, hi),
    )


def _fits(regexes: list[str], lo: int, hi: int | None) -> Callable[[str], bool]:
    compiled = [re2.compile(r) for r in regexes]
    return lambda s: lo <= len(s) and (hi is None or len(s) <= hi) and all(r.search(s) for r in compiled)


def _stretched(sample: str, target: int) -> str:
    return (sample * math.ceil(target / max(1, len(sample))))[:target] if sample else sample


def patterned_strings(
    regexes: list[str], lo: int, hi: int | None, plain: bool = False
) -> st.SearchStrategy[str]:
    """Strings matching every regex (RE2), with variants at maxLength and long digit runs."""
    main = regexes[0]
    base = matching(go_regex_for_python(main), plain)
    fits = _fits(regexes, lo, hi)

    digit_runs = st.sampled_from(["9" * 12, "1" + "0" * 8, "9" * 25])
    kinds = st.sampled_from(["digits", "repeat", "pad"] if hi is not None else ["digits"])

    @st.composite
    def edge(draw: st.DrawFn) -> str:
        sample = draw(base)
        kind = draw(kinds)
        if kind == "repeat":  # the sample again and again, cut at maxLength
            variant = _stretched(sample, hi or 0)
        elif kind == "pad" and sample:  # its first character repeated up to maxLength
            variant = sample[0] * ((hi or 0) - len(sample) + 1) + sample[1:]
        else:  # a long digit run: durations, numbers in names
            variant = re.sub(r"[0-9]+", draw(digit_runs), sample, count=1)
        return variant if fits(variant) else sample

    return st.one_of(base, base, edge()).filter(fits)


_PLAIN_TEXT = st.characters(min_codepoint=32, max_codepoint=126)


def free_strings(lo: int, hi: int | None, plain: bool = False) -> st.SearchStrategy[str]:
    if plain:
        return st.text(_PLAIN_TEXT, min_size=lo, max_size=max(lo, min(hi or 16, 16)))
    short = st.text(st.characters(exclude_categories=("Cs",)), min_size=lo,
                    max_size=max(lo, min(hi or 24, 24)))
    seed = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=4)
    targets = [hi] if hi is not None else list(LONG_UNBOUNDED)
    long = st.builds(_stretched, seed, st.sampled_from([t for t in targets if t >= lo]))
    return st.one_of(_text.filter(lambda s: lo <= len(s) <= (hi or len(s))), short, short, long)


class Builder:
    """Strategies for one schema; ``overrides`` replace the strategy at a dotted path."""

    def __init__(self, overrides: dict[str, st.SearchStrategy[Any]] | None = None, plain: bool = False):
        self.overrides = overrides or {}
        # Printable ASCII strings, no long ones: specs that look like what people write.
        self.plain = plain

    def build(self, schema: Schema, path: str, depth: int = 0, edges: bool = True) -> st.SearchStrategy[Any]:
        """``edges``: lists and maps may come at their maximum size (not inside one that does)."""
        if path in self.overrides:
            return self.overrides[path]
        shapes = shapes_of(schema)
        if path in AIMED:
            strategy = self._validated(schema, AIMED[path], path)
        else:
            strategy = self._typed(schema, shapes, path, depth, edges)
        if "default" in schema:
            strategy = st.one_of(st.just(copy.deepcopy(schema["default"])), strategy, strategy)
        return strategy

    def _typed(self, schema: Schema, shapes: Shapes, path: str, depth: int, edges: bool) -> st.SearchStrategy[Any]:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return self._free_form(schema, path)
        if schema.get("x-kubernetes-int-or-string"):
            return self._checked(schema, self._int_or_string(schema, shapes), path)
        kind = schema.get("type")
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if kind == "string":
            return self._checked(schema, self._string(schema, shapes), path)
        if kind == "integer":
            return boundary_ints(schema.get("minimum"), schema.get("maximum"))
        if kind == "number":
            return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False,
                             allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "array":
            return self._array(schema, shapes, path, depth, edges)
        if kind == "object" and schema.get("properties") is not None:
            return self._object(schema, shapes, path, depth, edges)
        if kind == "object":
            return self._map(schema, shapes, path, depth, edges)
        raise ValueError(f"{path}: schema keyword set not supported: {sorted(schema)}")

    def _free_form(self, schema: Schema, path: str) -> st.SearchStrategy[Any]:
        """Anything the schema's known parts allow: pod-template fragments, plausible and
        hostile, for podTemplate; other free-form objects get hostile JSON."""
        candidates = pod_templates if path == "spec.podTemplate" else st.dictionaries(
            st.text(max_size=8), hostile_value, max_size=3)
        return self._validated(schema, candidates, path)

    @staticmethod
    def _validated(schema: Schema, candidates: st.SearchStrategy[Any], path: str) -> st.SearchStrategy[Any]:
        """Candidates the whole subtree's schema and rules admit."""
        def admitted(value: Any) -> bool:
            errors: list[str] = []
            admission.validate(admission.as_decoded(value), schema, path, errors)
            return not errors

        return candidates.filter(admitted)

    def _string(self, schema: Schema, shapes: Shapes, value_of: Shapes | None = None) -> st.SearchStrategy[str]:
        regexes = ([schema["pattern"]] if "pattern" in schema else []) + shapes.self_regexes
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if value_of is not None and value_of.quantities:
            return _quantity_strings.filter(lambda s: hi is None or len(s) <= hi)
        if regexes:
            return patterned_strings(regexes, lo, hi, self.plain)
        return free_strings(lo, hi, self.plain)

    def _int_or_string(self, schema: Schema, shapes: Shapes, value_of: Shapes | None = None) -> st.SearchStrategy[Any]:
        numbers = boundary_ints(shapes.int_min, shapes.int_max)
        if shapes.int_min is not None or shapes.int_max is not None:
            numbers = st.one_of(numbers, boundary_ints(None, None))  # the rule rejects the rest
        strings = self._string({"maxLength": schema.get("maxLength")} if "maxLength" in schema else {},
                               shapes, value_of)
        return st.one_of(numbers, strings, strings)

    def _array(self, schema: Schema, shapes: Shapes, path: str, depth: int, edges: bool) -> st.SearchStrategy[list]:
        item = self.build(schema["items"], f"{path}[]", depth + 1, edges)
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        unique = _unique_by(schema, shapes)
        small = st.lists(item, min_size=lo, max_size=max(lo, min(hi or SMALL_ITEMS, SMALL_ITEMS)), unique_by=unique)
        branches = [small] * EDGE_ODDS
        if edges and hi is not None and SMALL_ITEMS < hi <= BOUNDARY_ITEMS_LIMIT:
            plain_item = self.build(schema["items"], f"{path}[]", depth + 1, edges=False)
            branches.append(st.lists(plain_item, min_size=hi, max_size=hi, unique_by=unique))
        return self._checked(schema, st.one_of(*branches), path)

    def _map(self, schema: Schema, shapes: Shapes, path: str, depth: int, edges: bool) -> st.SearchStrategy[dict]:
        values_schema = schema.get("additionalProperties") or {}
        if values_schema.get("x-kubernetes-int-or-string"):
            values = self._int_or_string(values_schema, shapes_of(values_schema), value_of=shapes)
        elif shapes.quantities:
            values = self._string(values_schema, shapes_of(values_schema), value_of=shapes)
        else:
            values = self.build(values_schema, f"{path}{{}}", depth + 1, edges=False)
        if shapes.key_choices:
            alternatives = [patterned_strings([r], 0, shapes.key_max, self.plain) for r in shapes.key_alternatives]
            keys = st.one_of(st.sampled_from(shapes.key_choices), st.sampled_from(shapes.key_choices),
                             *alternatives, _PLAIN_FREE_KEYS if self.plain else _free_keys)
        elif shapes.key_regexes:
            keys = patterned_strings(shapes.key_regexes, 0, shapes.key_max, self.plain)
        else:
            keys = _PLAIN_FREE_KEYS if self.plain else _free_keys
        hi = schema.get("maxProperties")
        small = st.dictionaries(keys, values, max_size=min(hi or SMALL_ITEMS, SMALL_ITEMS))
        branches = [small] * EDGE_ODDS
        if edges and hi is not None and SMALL_ITEMS < hi <= BOUNDARY_ITEMS_LIMIT:
            branches.append(st.dictionaries(keys, values, min_size=hi, max_size=hi))
        return self._checked(schema, st.one_of(*branches), path)

    def _object(self, schema: Schema, shapes: Shapes, path: str, depth: int, edges: bool) -> st.SearchStrategy[dict]:
        props: dict[str, Schema] = schema["properties"]
        children = {k: self.build(v, f"{path}.{k}", depth + 1, edges) for k, v in props.items()}
        for name, choices in shapes.field_choices.items():
            if name in children:
                children[name] = st.one_of(st.sampled_from(choices), children[name])
        required = [k for k in schema.get("required") or [] if k in props]
        # A required member settles its group: nothing else of it may be drawn.
        groups_one = [g for g in shapes.exactly_one if not set(g) & set(required)]
        groups_at_most = [g for g in shapes.at_most_one if not set(g) & set(required)]
        grouped = {k for group in shapes.exactly_one + shapes.at_most_one for k in group}
        optional = [k for k in props if k not in required and k not in grouped]
        budget = TOP_BUDGET if depth == 0 else NESTED_BUDGET
        # Each optional property is present with the same chance; about `budget` of them.
        percent = min(50, 100 * budget // max(1, len(optional)))
        coins = st.integers(0, 99)
        picks_one = [st.sampled_from(group) for group in groups_one]
        picks_at_most_one = [st.sampled_from((None, *group)) for group in groups_at_most]

        @st.composite
        def objects(draw: st.DrawFn) -> dict[str, Any]:
            keys = set(required)
            keys.update(draw(pick) for pick in picks_one)
            keys.update(draw(pick) for pick in picks_at_most_one)
            keys.update(k for k in optional if draw(coins) < percent)
            return {k: draw(children[k]) for k in props if k in keys}

        return self._checked(schema, objects(), path)

    @staticmethod
    def _checked(schema: Schema, strategy: st.SearchStrategy[Any], path: str) -> st.SearchStrategy[Any]:
        """Filter by this node's own CEL rules, on a defaulted copy as the apiserver sees it.
        Every verdict is counted (FILTERED): a rule that turns most candidates away is either
        one the strategies should aim at, or one that rejects nearly everything."""
        rules = [v["rule"] for v in schema.get("x-kubernetes-validations") or []]
        if not rules:
            return strategy

        def holds(value: Any) -> bool:
            defaulted = admission.as_decoded(value)
            admission.apply_defaults(defaulted, schema)
            for rule in rules:
                try:
                    ok = cel_rules.holds(rule, defaulted)
                except cel_rules.RuleError:
                    ok = False
                FILTERED[(path, rule)][0 if ok else 1] += 1
                if not ok:
                    return False
            return True

        return strategy.filter(holds)


class Generated:
    """A generated body with a short repr: hypothesis pretty-prints failing examples, which
    takes minutes for a spec holding 300 kB strings."""

    def __init__(self, body: dict[str, Any]):
        self.body = body

    def __repr__(self) -> str:
        text = json.dumps(self.body, ensure_ascii=False)
        return f"Generated({text[:3000]}{'…' if len(text) > 3000 else ''})"


def requiring(schema: Schema, paths: tuple[str, ...]) -> Schema:
    """A copy of ``schema`` where each dotted path (e.g. "strategy.canary") is required."""
    schema = copy.deepcopy(schema)
    for path in paths:
        node = schema
        for name in path.split("."):
            if name not in node.get("required", []):
                node["required"] = [*node.get("required", []), name]
            node = node["properties"][name]
    return schema


def filter_report(top: int = 5) -> list[str]:
    """The local filters that turned away the largest share of candidates."""
    rows = sorted(FILTERED.items(), key=lambda kv: -kv[1][1] / max(1, sum(kv[1])))
    return [f"{100 * bad / max(1, ok + bad):.0f}% of {ok + bad} at {path}: {rule[:90]}"
            for (path, rule), (ok, bad) in rows[:top] if bad]


def _unique_by(schema: Schema, shapes: Shapes) -> Callable[[Any], Any] | None:
    """What list items must differ in: list-map keys, whole items of a set, or a field a CEL
    rule wants unique."""
    keys = admission.list_keys(schema)
    if keys is None and shapes.unique_field:
        keys = [shapes.unique_field]
    if keys is None:
        return None
    if not keys:
        return lambda v: repr(v)
    return lambda v: tuple(v.get(k) for k in keys) if isinstance(v, dict) else repr(v)


def appreleases(
    overrides: dict[str, st.SearchStrategy[Any]] | None = None,
    schema: Schema | None = None,
    require: tuple[str, ...] = (),
    plain: bool = False,
) -> st.SearchStrategy[dict[str, Any]]:
    """Whole AppRelease bodies (apiVersion, kind, metadata.name, spec) from the CRD.

    ``require``: spec paths always generated (e.g. "strategy.canary"), to aim at one part.
    ``plain``: printable ASCII and short strings only (still every edge of the numbers).
    """
    root = schema or admission.crd_schema()
    api_version, kind = admission.crd_identity()
    builder = Builder(overrides, plain)
    spec = builder.build(requiring(root["properties"]["spec"], require), "spec")
    root_shapes = shapes_of(root)
    name_regexes = root_shapes.other_regexes.get("self.metadata.name", [])
    names = patterned_strings(name_regexes, 1, root_shapes.max_sizes.get("self.metadata.name"))

    def body(name: str, spec_value: dict[str, Any]) -> dict[str, Any]:
        if "podTemplate" in spec_value:
            spec_value = {**spec_value, "podTemplate": with_app_name(spec_value["podTemplate"], name)}
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec_value}

    return st.builds(body, names, spec)
