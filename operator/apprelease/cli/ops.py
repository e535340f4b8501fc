"""Rollout operations. Each one patches the AppRelease (spec or a request annotation), so
the same can be done with kubectl or from Git; the operator does the rest. The patches are
planned in apprelease.actions, which the web console shares."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import actions
from ..rollout.observed import RevisionRecord
from .common import (
    Context,
    api_errors,
    complete_app_names,
    kube_options,
    output_option,
    pass_context,
    print_structured,
)


def load_history(ctx: Context, name: str) -> list[RevisionRecord]:
    items = ctx.kube.list("ControllerRevision", ctx.namespace, labelSelector=actions.history_selector(name))
    return actions.history_of(items)


def _perform(ctx: Context, name: str, action: actions.Action) -> None:
    click.echo(f"apprelease {actions.perform(ctx.kube, ctx.namespace, name, action)}")


def _name_argument() -> Any:
    return click.argument("name", shell_complete=complete_app_names)


@click.command()
@_name_argument()
@click.option("--full", is_flag=True, help="Skip the remaining steps and promote now.")
@kube_options
@pass_context
@api_errors
def promote(ctx: Context, name: str, full: bool) -> None:
    """Move the canary on by one step (ends a pause), or promote fully."""
    _perform(ctx, name, actions.Promote(full=full))


@click.command()
@_name_argument()
@kube_options
@pass_context
@api_errors
def pause(ctx: Context, name: str) -> None:
    """Stop the rollout where it is (spec.paused=true)."""
    _perform(ctx, name, actions.Pause(paused=True))


@click.command()
@_name_argument()
@kube_options
@pass_context
@api_errors
def resume(ctx: Context, name: str) -> None:
    """Continue a paused rollout (spec.paused=false)."""
    _perform(ctx, name, actions.Pause(paused=False))


@click.command()
@_name_argument()
@kube_options
@pass_context
@api_errors
def abort(ctx: Context, name: str) -> None:
    """Scale the canary away now; all traffic on stable. The spec stays as it is."""
    _perform(ctx, name, actions.Abort())


@click.command()
@_name_argument()
@kube_options
@pass_context
@api_errors
def retry(ctx: Context, name: str) -> None:
    """Restart an aborted canary from step 1."""
    _perform(ctx, name, actions.Retry())


@click.command()
@_name_argument()
@kube_options
@pass_context
@api_errors
def restart(ctx: Context, name: str) -> None:
    """Rolling restart of every pod of the current revision."""
    _perform(ctx, name, actions.Restart())


@click.command(name="take-down")
@_name_argument()
@kube_options
@pass_context
@api_errors
def take_down(ctx: Context, name: str) -> None:
    """Take every instance out of the registry, drain, scale to zero (spec.takenDown=true)."""
    _perform(ctx, name, actions.TakeDown(down=True))


@click.command(name="bring-up")
@_name_argument()
@kube_options
@pass_context
@api_errors
def bring_up(ctx: Context, name: str) -> None:
    """Scale a taken-down app back to spec.replicas (spec.takenDown=false)."""
    _perform(ctx, name, actions.TakeDown(down=False))


@click.command()
@_name_argument()
@click.option("--to-revision", type=int, help="Revision number (default: the previous stable).")
@kube_options
@pass_context
@api_errors
def rollback(ctx: Context, name: str, to_revision: int | None) -> None:
    """Return to an earlier revision (image AND config), without walking canary steps."""
    _perform(ctx, name, actions.Rollback(to_revision=to_revision))


@click.group(name="set")
def set_field() -> None:
    """Change a field of an AppRelease (as kubectl set)."""


@set_field.command(name="image")
@_name_argument()
@click.argument("image")
@kube_options
@pass_context
@api_errors
def set_image(ctx: Context, name: str, image: str) -> None:
    """Set spec.image to IMAGE: a new revision, rolled out by the app's strategy
    (then `apprelease status NAME --timeout 10m` waits for its verdict)."""
    _perform(ctx, name, actions.SetImage(image=image))


def _marks(record: RevisionRecord, status: dict[str, Any]) -> list[str]:
    marks = []
    if record.hash == status.get("currentRevisionHash"):
        marks.append("current")
    if record.hash == status.get("stableRevisionHash"):
        marks.append("stable")
    if record.hash == status.get("canaryRevisionHash"):
        marks.append("canary")
    return marks


@click.command()
@_name_argument()
@output_option
@kube_options
@pass_context
@api_errors
def history(ctx: Context, name: str, output: str | None) -> None:
    """Revisions: number, image, config hash, created, promoted / aborted, current."""
    from ..render.hashing import config_hash

    app = ctx.kube.get("AppRelease", ctx.namespace, name)
    status = app.get("status") or {}
    records = load_history(ctx, name)
    if output:
        print_structured([{
            "revision": r.number, "hash": r.hash, "created": r.created, "promoted": r.promoted,
            "aborted": r.aborted, "abortReason": r.abort_reason, "marks": _marks(r, status),
            "template": r.template.to_wire(),
        } for r in records], output)
        return
    table = Table(box=None, header_style="bold")
    for column in ("REVISION", "IMAGE", "CONFIG", "CREATED", "PROMOTED", "ABORTED", ""):
        table.add_column(column)
    for record in records:
        config = record.template.config
        table.add_row(
            str(record.number),
            record.template.image,
            config_hash(config) if config else "-",
            record.created,
            record.promoted or "-",
            f"{record.aborted} ({record.abort_reason})" if record.aborted else "-",
            ",".join(_marks(record, status)),
        )
    Console(width=200).print(table)


OPERATIONS = [set_field, promote, pause, resume, abort, retry, restart, take_down, bring_up, rollback, history]
