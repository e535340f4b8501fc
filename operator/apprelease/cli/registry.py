"""Registry commands: the Nacos-console style instance list, and taking pods offline."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from .. import actions
from .common import Context, api_errors, complete_app_names, kube_options, pass_context


@click.command()
@click.argument("name", shell_complete=complete_app_names)
@kube_options
@pass_context
@api_errors
def registry(ctx: Context, name: str) -> None:
    """Instances of NAME in its registry (like the Nacos console), stale rows included."""
    status = (ctx.kube.get("AppRelease", ctx.namespace, name).get("status") or {})
    reg = status.get("registration")
    if not reg:
        raise click.ClickException(f"{name} has no registration status yet")
    console = Console(width=200)
    console.print(f"[bold]{reg.get('service', '')}[/bold]  provider: {reg.get('provider')}  "
                  f"registered+healthy/ready: {reg.get('summary', '')}  "
                  f"last change: {reg.get('lastSyncTime') or '-'}")
    if reg.get("lastError"):
        console.print(f"[red]error:[/red] {reg['lastError']}")
    per_revision = Table(box=None, header_style="bold")
    for column in ("TRACK", "REVISION", "READY PODS", "REGISTERED", "HEALTHY", "ENABLED"):
        per_revision.add_column(column)
    for row in reg.get("revisions") or []:
        per_revision.add_row(row["track"], str(row.get("revision", "-")), str(row.get("expected", 0)),
                             str(row.get("registered", 0)), str(row.get("healthy", 0)), str(row.get("enabled", 0)))
    console.print(per_revision)
    instances = Table(box=None, header_style="bold")
    for column in ("IP", "PORT", "POD", "REVISION", "HEALTHY", "ENABLED", "WEIGHT", "EPHEMERAL", "CLUSTER"):
        instances.add_column(column)
    for row in reg.get("instances") or []:
        instances.add_row(row["ip"], str(row["port"]), row.get("pod") or "-", str(row.get("revision", "-")),
                          str(row.get("healthy")).lower(), str(row.get("enabled")).lower(),
                          str(row.get("weight")), str(row.get("ephemeral")).lower(), row.get("cluster", ""))
    for row in reg.get("stale") or []:
        instances.add_row(row["ip"], str(row["port"]), "(stale: no pod)", "-",
                          str(row.get("healthy")).lower(), str(row.get("enabled")).lower(),
                          str(row.get("weight")), str(row.get("ephemeral")).lower(), row.get("cluster", ""))
    console.print(instances)
    shown = len(reg.get("instances") or [])
    if reg.get("instanceCount", 0) > shown or reg.get("staleCount", 0) > len(reg.get("stale") or []):
        console.print(f"({reg.get('instanceCount')} instances and {reg.get('staleCount')} stale in all; "
                      f"status lists the first {shown})")


@click.command()
@click.argument("name", shell_complete=complete_app_names)
@click.option("--pod", "pods", multiple=True, required=True, help="Pod to take offline (repeatable).")
@kube_options
@pass_context
@api_errors
def offline(ctx: Context, name: str, pods: tuple[str, ...]) -> None:
    """Disable the pods' registry instances (traffic off, pods keep running)."""
    click.echo(f"apprelease {actions.perform(ctx.kube, ctx.namespace, name, actions.SetOffline(pods, True))}")


@click.command()
@click.argument("name", shell_complete=complete_app_names)
@click.option("--pod", "pods", multiple=True, required=True, help="Pod to bring back (repeatable).")
@kube_options
@pass_context
@api_errors
def online(ctx: Context, name: str, pods: tuple[str, ...]) -> None:
    """Enable the pods' registry instances again."""
    click.echo(f"apprelease {actions.perform(ctx.kube, ctx.namespace, name, actions.SetOffline(pods, False))}")


REGISTRY_COMMANDS = [registry, offline, online]
