"""Shared CLI plumbing: the client, the namespace, YAML output, errors → exit codes.

Exit codes (the same for every command, shown by `apprelease --help`):
  0  done (`status`: Healthy or TakenDown)
  1  `status`: the rollout failed: Degraded (aborted) or Stalled
  2  usage error (click's)
  3  `status`: the timeout passed before a verdict
  4  error: not found, refused by the apiserver, no or unreadable kubeconfig, apiserver unreachable
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
import yaml
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import MaxRetryError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as TransportTimeout

from ..actions import ActionError
from ..k8s.client import ApiError, Kube, context_namespace, load_api_client

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_ERROR = 4
EXIT_CODES = f"""Exit codes: {EXIT_OK} done (status: Healthy or TakenDown); {EXIT_FAILED} status: Degraded or
Stalled; {EXIT_USAGE} usage error; {EXIT_TIMEOUT} status: timed out; {EXIT_ERROR} error (not found, refused,
kubeconfig, apiserver unreachable)."""


class CliError(click.ClickException):
    """One line on stderr and EXIT_ERROR."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


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
    """Where commands act: the kubeconfig, its context, the namespace (kubectl's flags)."""

    def __init__(self, kubeconfig: str | None = None, namespace: str | None = None,
                 context: str | None = None):
        self.kubeconfig = kubeconfig
        self.context = context
        self._namespace = namespace
        self._kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = connect(self.kubeconfig, self.context)
        return self._kube

    @property
    def namespace_flag(self) -> str | None:
        """The namespace given with -n, if one was."""
        return self._namespace

    @property
    def namespace(self) -> str:
        return self._namespace or context_namespace(self.kubeconfig, self.context)


def connect(kubeconfig: str | None, context: str | None) -> Kube:
    """The client for a kubeconfig (or in-cluster); CliError saying what is wrong with it."""
    try:
        return Kube(load_api_client(kubeconfig, context, pool_size=4))
    except Exception as exc:  # the loader raises ConfigException, OSError, TypeError, YAMLError...
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if "No configuration found" in str(exc) or isinstance(exc, FileNotFoundError):
            raise CliError(f"no kubeconfig at {where}: pass --kubeconfig or set KUBECONFIG") from None
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(f"cannot use the kubeconfig {where}: {detail}") from None


pass_context = click.make_pass_decorator(Context)


def _first_path(value: str | None) -> str | None:
    # KUBECONFIG may list several files; like the official client, we read the first.
    return value.split(os.pathsep)[0] if value else None


def _set(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        target = ctx.find_object(Context)
        if target is None:  # a command invoked on its own (tests): make the object
            target = ctx.ensure_object(Context)
        if attribute == "kubeconfig":
            value = _first_path(value)
        setattr(target, attribute, value)
        target._kube = None

    return callback


def complete_app_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of NAME: the AppReleases in the namespace (nothing if unreachable)."""
    from click.shell_completion import CompletionItem

    target = ctx.find_object(Context)
    root = ctx.find_root().params
    context = target or Context(_first_path(root.get("kubeconfig")), root.get("namespace"),
                                root.get("context"))
    try:
        items = context.kube.list("AppRelease", context.namespace)
    except Exception:
        return []
    names = sorted(i["metadata"]["name"] for i in items)
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _kube_options(fn: F, *, namespace: bool) -> F:
    options = [
        click.option("--context", "_context", expose_value=False, callback=_set("context"),
                     help="The kubeconfig context to use."),
        click.option("--kubeconfig", "_kubeconfig", expose_value=False, callback=_set("kubeconfig"),
                     help="Path to the kubeconfig (default: $KUBECONFIG)."),
    ]
    if namespace:
        options.insert(0, click.option(
            "-n", "--namespace", "_namespace", expose_value=False, callback=_set("_namespace"),
            help="Namespace (default: the context's namespace)."))
    for option in reversed(options):
        fn = option(fn)
    return fn


def kube_options(fn: F) -> F:
    """kubectl's -n/--namespace, --context and --kubeconfig, accepted after the subcommand
    too (`apprelease promote NAME -n NS`, as `kubectl apprelease promote NAME -n NS` passes)."""
    return _kube_options(fn, namespace=True)


def connection_options(fn: F) -> F:
    """--context and --kubeconfig only (for `run`, whose --namespace lists watched namespaces)."""
    return _kube_options(fn, namespace=False)


def output_option(fn: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default=None,
                        help="Print the object(s) as JSON or YAML instead of a table.")(fn)


class Timeout(click.ParamType):
    """Seconds, or a duration such as 30s, 5m or 1h30m (kubectl's --timeout); 0: none."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from ..api.base import parse_duration

        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        try:
            return float(int(text)) if text.isdigit() else parse_duration(text)
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 30s, 5m or 1h30m", param, ctx)


def timeout_option(help_text: str) -> Callable[[F], F]:
    return click.option("--timeout", type=Timeout(), default="0", show_default=True, metavar="DURATION",
                        help=help_text)


def print_structured(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        click.echo(dump_yaml([data]), nl=False)


def unreachable(exc: TransportError) -> str:
    """One line for a request that reached no apiserver."""
    reason: Any = exc.reason if isinstance(exc, MaxRetryError) else exc
    where = ""
    pool = getattr(exc, "pool", None)
    if pool is not None:
        where = f" at {pool.host}:{pool.port}"
    if isinstance(reason, NewConnectionError):
        detail = re.sub(r"^\[Errno -?\d+\] ", "", str(reason).rsplit(": ", 1)[-1])
    elif isinstance(reason, TransportTimeout):
        detail = "timed out"
    elif isinstance(reason, SSLError):
        detail = f"TLS: {reason}"
    else:
        detail = str(reason) or type(reason).__name__
    return f"cannot reach the apiserver{where}: {detail}"


def api_errors(fn: F) -> F:
    """API, kubeconfig and connection failures: one clear line and EXIT_ERROR, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise CliError(exc.message or str(exc)) from None
        except ActionError as exc:
            raise CliError(str(exc)) from None
        except TransportError as exc:
            raise CliError(unreachable(exc)) from None

    return wrapper  # type: ignore[return-value]
