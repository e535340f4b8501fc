"""Strings matching a regex, drawn as whole runs rather than character by character.

hypothesis' ``from_regex`` draws each character through its regex machinery, and the
CRD's patterns (names, keys, durations) were most of the generation time. The simple
patterns a CRD uses (literals, classes, groups, alternation, repeats, anchors) are
translated here into ``st.text`` runs; anything else falls back to ``from_regex``.
"""

from __future__ import annotations

import re._constants as sre_constants
import re._parser as sre_parse
from typing import Any

from hypothesis import strategies as st

# Unbounded repeats ("*", "+") stop this many characters (or groups) past their minimum.
REPEAT_SPAN = 12
_ANY_CHAR = st.characters(exclude_categories=("Cs",))
# plain=True: printable ASCII only, for specs that should look like what people write.
_PLAIN = {"min_codepoint": 32, "max_codepoint": 126}


class _Unsupported(Exception):
    pass


def _chars(exclude: str, plain: bool) -> st.SearchStrategy[str]:
    if plain:
        return st.characters(exclude_characters=exclude, **_PLAIN)
    return st.characters(exclude_characters=exclude, exclude_categories=("Cs",))


def _charset(items: list[tuple[Any, Any]], plain: bool) -> st.SearchStrategy[str]:
    negate = False
    chars: set[str] = set()
    for op, av in items:
        if op is sre_constants.NEGATE:
            negate = True
        elif op is sre_constants.LITERAL:
            chars.add(chr(av))
        elif op is sre_constants.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        else:
            raise _Unsupported(op)
    if negate:
        return _chars("".join(chars), plain)
    return st.sampled_from(sorted(chars))


def _single_char(op: Any, av: Any, plain: bool) -> st.SearchStrategy[str] | None:
    if op is sre_constants.LITERAL:
        return st.just(chr(av))
    if op is sre_constants.NOT_LITERAL:
        return _chars(chr(av), plain)
    if op is sre_constants.ANY:
        return _chars("\n", plain)
    if op is sre_constants.IN:
        return _charset(av, plain)
    return None


def _sequence(items: Any, plain: bool) -> st.SearchStrategy[str]:
    parts = [_item(op, av, plain) for op, av in items]
    return st.tuples(*parts).map("".join) if len(parts) != 1 else parts[0]


def _item(op: Any, av: Any, plain: bool) -> st.SearchStrategy[str]:
    single = _single_char(op, av, plain)
    if single is not None:
        return single
    if op is sre_constants.AT:
        return st.just("")
    if op is sre_constants.SUBPATTERN:
        return _sequence(av[3], plain)
    if op is sre_constants.BRANCH:
        return st.one_of(*[_sequence(branch, plain) for branch in av[1]])
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
        low, high, sub = av
        high = low + REPEAT_SPAN if high is sre_constants.MAXREPEAT else high
        if len(sub) == 1 and (char := _single_char(*sub[0], plain)) is not None:
            return st.text(alphabet=char, min_size=low, max_size=high)
        return st.lists(_sequence(sub, plain), min_size=low, max_size=high).map("".join)
    raise _Unsupported(op)


def matching(pattern: str, plain: bool = False) -> st.SearchStrategy[str]:
    """Strings the (Python-syntax) ``pattern`` matches from their start; a pattern without
    a final ``$`` matches any text after its match, and so do the strings drawn here.
    ``plain``: negated classes and "." draw printable ASCII only."""
    try:
        strategy = _sequence(sre_parse.parse(pattern), plain)
    except _Unsupported:
        return st.from_regex(pattern, fullmatch=pattern.endswith("$"))
    if pattern.endswith("$"):
        return strategy
    tail = _chars("", plain)
    return st.tuples(strategy, st.text(tail, max_size=8)).map("".join)
