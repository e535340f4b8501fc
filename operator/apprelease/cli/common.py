"""Shared CLI plumbing: the client, the namespace, YAML output, errors → exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml

from ..k8s.client import ApiError, Kube, load_api_client

F = TypeVar("F", bound=Callable[..., Any])


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (config files) as readable | blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
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
