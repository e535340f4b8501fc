"""Shared CLI plumbing: the client, the namespace, YAML output, errors → exit codes."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml

from ..k8s.client import ApiError, Kube, load_api_client

F = TypeVar("F", bound=Callable[..., Any])


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (config files) as readable | blocks."""


# Strings a YAML 1.2 reader (kubectl, Go) would take for a number, bool or null. PyYAML
# follows YAML 1.1 and would leave e.g. a hash like 21978643e1 unquoted.
_AMBIGUOUS = re.compile(
    r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|0o[0-7]+"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|(?i:true|false|yes|no|on|off|y|n|null|~)"
)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        style: str | None = "|"
    elif _AMBIGUOUS.fullmatch(value):
        style = "'"
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def dump_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_LiteralDumper, sort_keys=False, width=100)


class Context:
    def __init__(self, kubeconfig: str | None, namespace: str | None):
        self.kubeconfig = kubeconfig
        self._namespace = namespace
        self._kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(load_api_client(self.kubeconfig, pool_size=4))
        return self._kube

    @property
    def namespace(self) -> str:
        if self._namespace:
            return self._namespace
        try:
            from kubernetes import config

            _, active = config.list_kube_config_contexts(config_file=self.kubeconfig)
            return active.get("context", {}).get("namespace") or "default"
        except Exception:
            return "default"


pass_context = click.make_pass_decorator(Context)


def api_errors(fn: F) -> F:
    """Turn API failures into one clear line and exit code 1 (2 for not found)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            click.echo(f"error: {exc.message or exc}", err=True)
            sys.exit(2 if exc.not_found else 1)

    return wrapper  # type: ignore[return-value]
