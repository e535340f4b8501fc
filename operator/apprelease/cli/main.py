"""`apprelease` (also `kubectl apprelease`): run the operator, render, inspect, operate."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import IO

import click
import yaml
from pydantic import ValidationError

from .. import __version__
from .common import (
    EXIT_CODES,
    EXIT_ERROR,
    CliError,
    Context,
    api_errors,
    complete_app_names,
    connection_options,
    dump_yaml,
    kube_options,
    pass_context,
    timeout_option,
    unreachable,
)
from .output import format_objects, output_option

PROG = "apprelease"
SHELLS = ("bash", "zsh", "fish")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig (default: $KUBECONFIG).")
@click.option("--context", help="The kubeconfig context to use (default: its current context).")
@click.option("-n", "--namespace", help="Namespace (default: the context's namespace).")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
    """AppRelease: one object per app → Deployment, Service, Ingress, ConfigMap, canary rollouts.

    -n/--namespace, --context and --kubeconfig work before or after the command, as in kubectl.
    """
    ctx.obj = Context(kubeconfig.split(os.pathsep)[0] if kubeconfig else None, namespace, context)


@cli.command()
@kube_options
def version() -> None:
    """Print the version."""
    click.echo(f"apprelease {__version__}")


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@click.option("--pipelines-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the other kinds' CRDs (pipelines, analysis templates) into this directory.")
@kube_options
def crd(output: Path | None, pipelines_dir: Path | None) -> None:
    """Print the CustomResourceDefinition generated from the API model."""
    from ..api.crd import crd_yaml, other_crds, pipeline_crd_yaml

    text = crd_yaml()
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)
    for file_name in other_crds() if pipelines_dir else ():
        (pipelines_dir / file_name).write_text(pipeline_crd_yaml(file_name))  # type: ignore[operator]


@cli.command()
@click.option("-f", "--filename", "filename", required=True, type=click.File("r"),
              help="AppRelease YAML ('-' for stdin).")
@kube_options
@pass_context
def render(ctx: Context, filename: IO[str]) -> None:
    """Print the objects an AppRelease becomes (offline, as a YAML stream).

    They go to the AppRelease's namespace: -n NS, else the file's, else the kubeconfig
    context's. A file naming another namespace than -n is an error, as with kubectl apply.
    """
    from ..api.spec import AppRelease
    from ..render import RenderError, render_initial

    out = []
    for doc in yaml.safe_load_all(filename):
        if not doc:
            continue
        metadata = doc.setdefault("metadata", {}) if isinstance(doc, dict) else {}
        written = metadata.get("namespace")
        if ctx.namespace_flag and written and written != ctx.namespace_flag:
            raise click.UsageError(
                f"{metadata.get('name', '?')} is in namespace {written}, not {ctx.namespace_flag} (-n)")
        metadata["namespace"] = written or ctx.namespace
        try:
            app = AppRelease.model_validate(doc)
            out += render_initial(app)
        except (ValidationError, RenderError) as exc:
            click.echo(f"error: {doc.get('metadata', {}).get('name', '?')}: {exc}", err=True)
            sys.exit(1)
    click.echo(dump_yaml(out), nl=False)


@cli.command()
@click.option("--namespace", "namespaces", multiple=True,
              help="Watch only these namespaces (repeatable; default: every namespace).")
@click.option("--workers", default=8, show_default=True, help="Concurrent reconciles.")
@click.option("--metrics-port", default=8081, show_default=True, help="Prometheus metrics port (0: off).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="kopf liveness endpoint ('' to disable).")
@click.option("--leader-elect/--no-leader-elect", default=True, show_default=True,
              help="Only the replica holding the Lease writes; the others stand by with warm caches"
                   " (docs/high-availability.md). Off: this process is the only writer.")
@click.option("--lease-name", default="apprelease", show_default=True, help="The leader election Lease.")
@click.option("--lease-namespace", default=None,
              help="The Lease's namespace (default: the pod's own; outside a cluster, the kubeconfig"
                   " context's).")
@click.option("--lease-duration", default=15.0, show_default=True,
              help="Seconds a standby waits without seeing a renewal before it takes over.")
@click.option("--renew-deadline", default=10.0, show_default=True,
              help="Seconds the leader may go without a successful renewal; then it stops writing"
                   " and exits. At least 2 s below --lease-duration.")
@click.option("--retry-period", default=2.0, show_default=True,
              help="Seconds between renewals, and between a standby's looks at the Lease.")
@click.option("--registry-poll-seconds", default=5.0, show_default=True,
              help="How often each Nacos service is read (back-off on errors).")
@click.option("--allow-nacos-server", "nacos_servers", multiple=True, metavar="HOST:PORT",
              help="Nacos servers AppReleases may use, fnmatch patterns such as *.nacos.svc:8848"
                   " (repeatable; default: any). Credentials are never sent elsewhere.")
@click.option("--allow-registry-network", "registry_networks", multiple=True, metavar="CIDR",
              callback=lambda ctx, param, values: _networks(values, "--allow-registry-network"),
              help="Networks where a Nacos server (or an analysis's Prometheus or web hook) may be although"
                   " the operator refuses them by default:"
                   " loopback (its own pod), link-local and cloud metadata endpoints, unspecified,"
                   " multicast and reserved addresses (repeatable; e.g. 127.0.0.0/8 for a local Nacos"
                   " in development). The apiserver is refused whatever is allowed.")
@click.option("--allow-metric-server", "metric_servers", multiple=True, metavar="HOST:PORT",
              help="Prometheus servers and web hooks analyses may ask, fnmatch patterns such as"
                   " prometheus.monitoring.svc:9090 (repeatable; default: any). Naming one exactly also"
                   " allows an address refused by default (loopback, link-local, ...), as"
                   " --allow-registry-network does for a network.")
@click.option("--allow-notification-network", "notification_networks", multiple=True, metavar="CIDR",
              callback=lambda ctx, param, values: _networks(values, "--allow-notification-network"),
              help="Networks where a notification sink may be although refused by default (as for"
                   " --allow-registry-network; e.g. 10.0.0.0/8 for an in-cluster receiver). The apiserver"
                   " is refused whatever is allowed (docs/notifications.md).")
@click.option("--console-url", default="", metavar="URL",
              help="The console's address as people open it: notifications link to the app's page.")
@click.option("--allow-ingress-annotation", "annotations_allowed", multiple=True, metavar="PATTERN",
              help="Ingress annotation keys AppReleases may set (repeatable; default: *).")
@click.option("--deny-ingress-annotation", "annotations_denied", multiple=True, metavar="PATTERN",
              help="Ingress annotation keys denied even if allowed (repeatable; default: raw"
                   " nginx snippets, *-snippet and *snippets*; pass '' to deny none).")
@click.option("--startup-deadline-seconds", default=180.0, show_default=True,
              help="Liveness fails if the watches have not listed by then.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object a line; a reconcile's lines carry namespace, name and revision.")
@connection_options
@pass_context
def run(ctx: Context, namespaces: tuple[str, ...], workers: int,
        metrics_port: int, liveness: str, leader_elect: bool, lease_name: str,
        lease_namespace: str | None, lease_duration: float, renew_deadline: float, retry_period: float,
        registry_poll_seconds: float,
        nacos_servers: tuple[str, ...], registry_networks: tuple[str, ...], metric_servers: tuple[str, ...],
        notification_networks: tuple[str, ...], console_url: str, annotations_allowed: tuple[str, ...],
        annotations_denied: tuple[str, ...], startup_deadline_seconds: float, verbose: bool,
        log_format: str) -> None:
    """Run the operator."""
    from ..controller import run as run_module
    from ..controller.leader_election import ElectionTimings
    from ..controller.settings import RunOptions
    from ..domain import DEFAULT_DENIED_INGRESS_ANNOTATIONS, Policy
    from ..k8s.client import own_namespace

    timings = ElectionTimings(lease_duration, renew_deadline, retry_period)
    if leader_elect and timings.problems():
        raise click.UsageError("; ".join(timings.problems()))

    policy = Policy(
        nacos_servers=tuple(nacos_servers),
        registry_networks_allowed=tuple(registry_networks),
        metric_servers=tuple(metric_servers),
        ingress_annotations_allowed=tuple(annotations_allowed) or ("*",),
        ingress_annotations_denied=(
            tuple(p for p in annotations_denied if p) if annotations_denied
            else DEFAULT_DENIED_INGRESS_ANNOTATIONS
        ),
    )
    options = RunOptions(
        namespaces=tuple(namespaces),
        workers=workers,
        metrics_port=metrics_port or None,
        kubeconfig=ctx.kubeconfig,
        context=ctx.context,
        registry_poll_seconds=registry_poll_seconds,
        policy=policy,
        startup_deadline_seconds=startup_deadline_seconds,
        leader_election=leader_elect,
        lease_name=lease_name,
        lease_namespace=lease_namespace or own_namespace() or ctx.namespace,
        election=timings,
        console_url=console_url,
        notification_networks=tuple(notification_networks),
    )
    run_module.run_operator(options, liveness=liveness or None, verbose=verbose, log_format=log_format)


def _networks(values: tuple[str, ...], option: str) -> tuple[str, ...]:
    import ipaddress

    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@cli.command()
@click.argument("name", shell_complete=complete_app_names)
@click.option("-w", "--watch", is_flag=True,
              help="Redraw as it changes (watches: the apiserver pushes changes); Ctrl-C or --timeout ends it.")
@timeout_option("With -w: stop watching after this long (exit 0); 0: until Ctrl-C.")
@output_option()
@kube_options
@pass_context
@api_errors
def get(ctx: Context, name: str, watch: bool, timeout: float, output: str | None) -> None:
    """Show an AppRelease: phase, step, weight, revisions, Deployments and pods."""
    from .tree import show

    if timeout and not watch:
        raise click.UsageError("--timeout goes with -w")
    if output:
        if watch:
            raise click.UsageError("-o and -w do not go together")
        click.echo(format_objects(ctx.kube.get("AppRelease", ctx.namespace, name), output), nl=False)
        return
    show(ctx, name, watch=watch, timeout=timeout or None)


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script: `source <(apprelease completion bash)`."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    variable = f"_{PROG.upper().replace('-', '_')}_COMPLETE"
    click.echo(completer(cli, {}, PROG, variable).source())


def _register_subcommands() -> None:
    from importlib.metadata import entry_points

    from .adopt import ADOPT_COMMANDS
    from .config import config
    from .listing import list_appreleases
    from .ops import OPERATIONS
    from .pipeline import PIPELINE_COMMANDS
    from .registry import REGISTRY_COMMANDS
    from .status import status

    for command in [list_appreleases, status, *OPERATIONS, *REGISTRY_COMMANDS, config, *PIPELINE_COMMANDS,
                    *ADOPT_COMMANDS]:
        cli.add_command(command)
    # Commands through entry points: `console` (this package's, above cli in no layer: the
    # two may not import each other) and `dev` from apprelease-dev (devtools/), which the
    # operator image does not install.
    for entry in entry_points(group="apprelease.commands"):
        cli.add_command(entry.load(), name=entry.name)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # urllib3 warns of each connection retry: the one line below says it better.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    _register_subcommands()
    from aiohttp import ClientConnectorError
    from urllib3.exceptions import HTTPError as TransportError

    try:
        cli(prog_name=PROG)
    except TransportError as exc:  # a command without api_errors (console, dev): still one line
        click.echo(f"error: {unreachable(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except ClientConnectorError as exc:  # the console's client (aiohttp)
        reason = os.strerror(exc.os_error.errno) if exc.os_error.errno else str(exc.os_error)
        click.echo(f"error: cannot reach the apiserver at {exc.host}:{exc.port}: {reason}", err=True)
        sys.exit(EXIT_ERROR)
    except CliError as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
