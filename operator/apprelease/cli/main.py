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
    Context,
    api_errors,
    complete_app_names,
    connection_options,
    dump_yaml,
    kube_options,
    output_option,
    pass_context,
    print_structured,
)

PROG = "apprelease"
SHELLS = ("bash", "zsh", "fish")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@kube_options
def crd(output: Path | None) -> None:
    """Print the CustomResourceDefinition generated from the API model."""
    from ..api.crd import crd_yaml

    text = crd_yaml()
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("-f", "--filename", "filename", required=True, type=click.File("r"),
              help="AppRelease YAML ('-' for stdin).")
@kube_options
def render(filename: IO[str]) -> None:
    """Print the objects an AppRelease becomes (offline, as a YAML stream)."""
    from ..api.spec import AppRelease
    from ..render import RenderError, render_initial

    out = []
    for doc in yaml.safe_load_all(filename):
        if not doc:
            continue
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
@click.option("--peering", default=None, help="kopf peering name for HA standby (default: standalone).")
@click.option("--registry-poll-seconds", default=5.0, show_default=True,
              help="How often each Nacos service is read (back-off on errors).")
@click.option("--allow-nacos-server", "nacos_servers", multiple=True, metavar="HOST:PORT",
              help="Nacos servers AppReleases may use, fnmatch patterns such as *.nacos.svc:8848"
                   " (repeatable; default: any). Credentials are never sent elsewhere.")
@click.option("--allow-registry-network", "registry_networks", multiple=True, metavar="CIDR",
              callback=lambda ctx, param, values: _networks(values),
              help="Networks where a Nacos server may be although the operator refuses them by default:"
                   " loopback (its own pod), link-local and cloud metadata endpoints, unspecified,"
                   " multicast and reserved addresses (repeatable; e.g. 127.0.0.0/8 for a local Nacos"
                   " in development). The apiserver is refused whatever is allowed.")
@click.option("--allow-ingress-annotation", "annotations_allowed", multiple=True, metavar="PATTERN",
              help="Ingress annotation keys AppReleases may set (repeatable; default: *).")
@click.option("--deny-ingress-annotation", "annotations_denied", multiple=True, metavar="PATTERN",
              help="Ingress annotation keys denied even if allowed (repeatable; default: raw"
                   " nginx snippets, *-snippet and *snippets*; pass '' to deny none).")
@click.option("--startup-deadline-seconds", default=180.0, show_default=True,
              help="Liveness fails if the watches have not listed by then.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@connection_options
@pass_context
def run(ctx: Context, namespaces: tuple[str, ...], workers: int,
        metrics_port: int, liveness: str, peering: str | None, registry_poll_seconds: float,
        nacos_servers: tuple[str, ...], registry_networks: tuple[str, ...], annotations_allowed: tuple[str, ...],
        annotations_denied: tuple[str, ...], startup_deadline_seconds: float, verbose: bool) -> None:
    """Run the operator."""
    from ..controller.run import run_operator
    from ..controller.settings import RunOptions
    from ..domain import DEFAULT_DENIED_INGRESS_ANNOTATIONS, Policy

    policy = Policy(
        nacos_servers=tuple(nacos_servers),
        registry_networks_allowed=tuple(registry_networks),
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
        peering=peering,
        registry_poll_seconds=registry_poll_seconds,
        policy=policy,
        startup_deadline_seconds=startup_deadline_seconds,
    )
    run_operator(options, liveness=liveness or None, verbose=verbose)


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-registry-network") from None


@cli.command()
@click.argument("name", shell_complete=complete_app_names)
@click.option("-w", "--watch", is_flag=True, help="Redraw as it changes.")
@output_option
@kube_options
@pass_context
@api_errors
def get(ctx: Context, name: str, watch: bool, output: str | None) -> None:
    """Show an AppRelease: phase, step, weight, revisions, Deployments and pods."""
    from .tree import show

    if output:
        if watch:
            raise click.UsageError("-o and -w do not go together")
        print_structured(ctx.kube.get("AppRelease", ctx.namespace, name), output)
        return
    show(ctx, name, watch=watch)


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

    from .ops import OPERATIONS
    from .registry import REGISTRY_COMMANDS

    for command in OPERATIONS + REGISTRY_COMMANDS:
        cli.add_command(command)
    # Commands through entry points: `console` (this package's, above cli in no layer: the
    # two may not import each other) and `dev` from apprelease-dev (devtools/), which the
    # operator image does not install.
    for entry in entry_points(group="apprelease.commands"):
        cli.add_command(entry.load(), name=entry.name)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register_subcommands()
    cli(prog_name=PROG)


if __name__ == "__main__":
    main()
