"""`-o wide|name|json|yaml|jsonpath=...` for AppReleases, as `kubectl get arl` prints them.

The table's columns are the CRD's printer columns (api/crd.py), so `apprelease list` and
`kubectl get arl` show the same. JSONPath expressions are evaluated by jsonpath-ng; only
kubectl's template around them (`{.a} text {range .items[*]}...{end}`) is read here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from jsonpath_ng.ext import parse as parse_jsonpath

from ..api.crd import PRINTER_COLUMNS
from ..api.spec import API_VERSION, GROUP, KIND
from ..rollout.timefmt import parse_time_or
from .common import dump_yaml

FORMATS = ("wide", "name", "json", "yaml", "jsonpath=TEMPLATE")


class OutputFormat(click.ParamType):
    """One of FORMATS; jsonpath's template checked as it is parsed."""

    name = "format"

    def __init__(self, choices: Sequence[str] = ("wide", "name", "json", "yaml", "jsonpath")):
        self.choices = tuple(choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        kind = text.split("=", 1)[0]
        if kind not in self.choices or (kind == "jsonpath") != ("=" in text):
            shown = "|".join("jsonpath=TEMPLATE" if c == "jsonpath" else c for c in self.choices)
            self.fail(f"{text!r}: use one of {shown}", param, ctx)
        if kind == "jsonpath":
            try:
                _parse_template(_unquote(text.split("=", 1)[1]))
            except ValueError as exc:
                self.fail(f"jsonpath: {exc}", param, ctx)
        return text

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "|".join("jsonpath=..." if c == "jsonpath" else c for c in self.choices)


def output_option(choices: Sequence[str] = ("wide", "name", "json", "yaml", "jsonpath")) -> Any:
    return click.option("-o", "--output", type=OutputFormat(choices), default=None,
                        help="Output format: " + ", ".join(
                            "jsonpath=TEMPLATE (kubectl's, e.g. '{.status.phase}')" if c == "jsonpath" else c
                            for c in choices) + ".")


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A list as kubectl prints one: a v1 List whose items carry kind and apiVersion."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [{"apiVersion": API_VERSION, "kind": KIND, **item} for item in items]}


def format_objects(data: Mapping[str, Any], output: str | None, *, all_namespaces: bool = False,
                   now: datetime | None = None) -> str:
    """``data``: one AppRelease, or a List of them (as_list)."""
    items = list(data["items"]) if data.get("kind") == "List" else [data]
    kind = output.split("=", 1)[0] if output else None
    if kind == "json":
        return json.dumps(data, indent=2) + "\n"
    if kind == "yaml":
        return dump_yaml([dict(data)])
    if kind == "name":
        return "".join(f"{KIND.lower()}.{GROUP}/{i['metadata']['name']}\n" for i in items)
    if kind == "jsonpath":
        assert output is not None
        return render_template(_unquote(output.split("=", 1)[1]), data)
    return table(items, wide=kind == "wide", all_namespaces=all_namespaces, now=now)


# The table ------------------------------------------------------------------------------


def table(items: Sequence[Any], *, wide: bool = False, all_namespaces: bool = False,
          now: datetime | None = None) -> str:
    columns = [c for c in PRINTER_COLUMNS if wide or not c.get("priority")]
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c["name"].upper() for c in columns]
    rows = [header]
    for item in items:
        row = [item["metadata"].get("namespace", "")] if all_namespaces else []
        row.append(item["metadata"]["name"])
        row += [_cell(item, column, now or datetime.now(UTC)) for column in columns]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    # kubectl's tabwriter: columns padded to the widest cell plus three spaces.
    return "".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)


def _cell(item: Mapping[str, Any], column: Mapping[str, Any], now: datetime) -> str:
    found = [m.value for m in parse_jsonpath("$" + column["jsonPath"]).find(item)]
    if not found or found[0] is None:
        return "<none>" if column["type"] != "date" else "<unknown>"
    value = found[0]
    if column["type"] == "date":
        return human_age((now - parse_time_or(str(value), now)).total_seconds())
    return str(value)


def human_age(seconds: float) -> str:
    """kubectl's HumanDuration (apimachinery/pkg/util/duration): 45s, 5m3s, 2h10m, 3d4h."""
    if seconds < -1:
        return "<invalid>"
    total = max(0, int(seconds))
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


# kubectl's JSONPath template ---------------------------------------------------------------
# Text outside braces is printed as it is; {"text"} is a literal; {EXPR} prints every match,
# space-separated; {range EXPR}...{end} repeats its body for every match, whose expressions
# then start from that match.

_TOKEN = re.compile(r"\{((?:[^{}\"']|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')*)\}")


def _unquote(template: str) -> str:
    if len(template) >= 2 and template[0] == template[-1] and template[0] in "'\"":
        return template[1:-1]
    return template


def _parse_template(template: str) -> list[Any]:
    """Nodes: str (text), ("expr", parsed), ("range", parsed, body)."""
    stack: list[list[Any]] = [[]]
    position = 0
    for match in _TOKEN.finditer(template):
        if match.start() > position:
            stack[-1].append(template[position:match.start()])
        position = match.end()
        inner = match.group(1).strip()
        if inner == "end":
            if len(stack) == 1:
                raise ValueError("{end} without {range}")
            body = stack.pop()
            stack[-1][-1] = (*stack[-1][-1][:2], body)
        elif inner.startswith("range "):
            stack[-1].append(("range", _expression(inner[len("range "):].strip()), None))
            stack.append([])
        elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            stack[-1].append(json.loads('"' + inner[1:-1].replace('"', '\\"') + '"') if inner[0] == "'"
                             else json.loads(inner))
        else:
            stack[-1].append(("expr", _expression(inner)))
    rest = template[position:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced braces in {template!r}")
    if rest:
        stack[-1].append(rest)
    if len(stack) != 1:
        raise ValueError("{range} without {end}")
    return stack[0]


def _expression(text: str) -> Any:
    if not text:
        raise ValueError("an empty expression: write {.status.phase}")
    path = text[1:] if text.startswith("$") else text
    if path and path[0] not in ".[":
        path = "." + path
    try:
        return parse_jsonpath("$" + path)
    except Exception as exc:  # JsonPathParserError, and the lexer's plain Exception
        raise ValueError(f"cannot read {text!r}: {exc}") from None


def render_template(template: str, data: Any) -> str:
    return "".join(_render(_parse_template(template), data))


def _render(nodes: list[Any], data: Any) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, str):
            yield node
        elif node[0] == "expr":
            yield " ".join(_text(m.value) for m in node[1].find(data))
        else:
            for match in node[1].find(data):
                yield from _render(node[2], match.value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value)
