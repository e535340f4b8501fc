"""Rollout operations. Each one patches the AppRelease (spec or a request annotation), so
the same can be done with kubectl or from Git; the operator does the rest."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import click
import tenacity
from rich.console import Console
from rich.table import Table

from ..k8s.client import ApiError
from ..k8s.history import from_controller_revision
from ..render import labels
from ..rollout import requests
from ..rollout.observed import RevisionRecord
from ..rollout.rollback import rollback_patch, rollback_target
from ..rollout.timefmt import format_time
from .common import Context, api_errors, pass_context


def _nonce() -> str:
    return f"{format_time(datetime.now(UTC))}-{secrets.token_hex(3)}"


def _annotate(ctx: Context, name: str, key: str, value: str) -> None:
    ctx.kube.merge_patch("AppRelease", ctx.namespace, name, {"metadata": {"annotations": {key: value}}})


def _patch_spec(ctx: Context, name: str, spec: dict[str, Any]) -> None:
    ctx.kube.merge_patch("AppRelease", ctx.namespace, name, {"spec": spec})


def load_history(ctx: Context, name: str) -> list[RevisionRecord]:
    selector = f"{labels.INSTANCE}={name},{labels.MANAGED_BY}={labels.MANAGER}"
    items = ctx.kube.list("ControllerRevision", ctx.namespace, labelSelector=selector)
    return sorted((from_controller_revision(i) for i in items), key=lambda r: r.number)


@click.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip the remaining steps and promote now.")
@pass_context
@api_errors
def promote(ctx: Context, name: str, full: bool) -> None:
    """Move the canary on by one step (ends a pause), or promote fully."""
    _annotate(ctx, name, requests.PROMOTE, requests.request_value(full, _nonce()))
    click.echo(f"apprelease {name}: {'full promotion' if full else 'promotion'} requested")


@click.command()
@click.argument("name")
@pass_context
@api_errors
def pause(ctx: Context, name: str) -> None:
    """Stop the rollout where it is (spec.paused=true)."""
    _patch_spec(ctx, name, {"paused": True})
    click.echo(f"apprelease {name} paused")


@click.command()
@click.argument("name")
@pass_context
@api_errors
def resume(ctx: Context, name: str) -> None:
    """Continue a paused rollout (spec.paused=false)."""
    _patch_spec(ctx, name, {"paused": False})
    click.echo(f"apprelease {name} resumed")


@click.command()
@click.argument("name")
@pass_context
@api_errors
def abort(ctx: Context, name: str) -> None:
    """Scale the canary away now; all traffic on stable. The spec stays as it is."""
    _annotate(ctx, name, requests.ABORT, _nonce())
    click.echo(f"apprelease {name}: abort requested")


@click.command()
@click.argument("name")
@pass_context
@api_errors
def retry(ctx: Context, name: str) -> None:
    """Restart an aborted canary from step 1."""
    _annotate(ctx, name, requests.RETRY, _nonce())
    click.echo(f"apprelease {name}: retry requested")


@click.command()
@click.argument("name")
@pass_context
@api_errors
def restart(ctx: Context, name: str) -> None:
    """Rolling restart of every pod of the current revision."""
    _patch_spec(ctx, name, {"restartAt": format_time(datetime.now(UTC))})
    click.echo(f"apprelease {name}: restart requested")


@click.command()
@click.argument("name")
@click.option("--to-revision", type=int, help="Revision number (default: the previous stable).")
@pass_context
@api_errors
def rollback(ctx: Context, name: str, to_revision: int | None) -> None:
    """Return to an earlier revision (image AND config), without walking canary steps."""
    # The operator writes status all the time; a write between our read and our patch is a
    # conflict, and the right answer is to read again and recompute, not to fail.
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, ApiError) and exc.conflict),
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_random(0.05, 0.3),
        reraise=True,
    )
    message = retrying(_rollback_once, ctx, name, to_revision)
    click.echo(f"apprelease {name}: {message}")


def _rollback_once(ctx: Context, name: str, to_revision: int | None) -> str:
    app = ctx.kube.get("AppRelease", ctx.namespace, name)
    status = app.get("status") or {}
    try:
        target = rollback_target(
            load_history(ctx, name),
            current_hash=status.get("currentRevisionHash"),
            stable_hash=status.get("stableRevisionHash"),
            to_revision=to_revision,
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    ops = rollback_patch(app.get("spec") or {}, target.template)
    if not ops:
        return f"already describes revision {target.number}"
    # resourceVersion in the patched object is a precondition: 409 if the app moved on.
    ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion",
                   "value": app["metadata"]["resourceVersion"]})
    ctx.kube.request(
        "PATCH",
        f"/apis/apprelease.io/v1alpha1/namespaces/{ctx.namespace}/appreleases/{name}",
        body=ops,
        content_type="application/json-patch+json",
        resource="AppRelease",
    )
    return f"rolling back to revision {target.number} ({target.template.image})"


@click.command()
@click.argument("name")
@pass_context
@api_errors
def history(ctx: Context, name: str) -> None:
    """Revisions: number, image, config hash, created, promoted / aborted, current."""
    from ..render.hashing import config_hash

    app = ctx.kube.get("AppRelease", ctx.namespace, name)
    status = app.get("status") or {}
    table = Table(box=None, header_style="bold")
    for column in ("REVISION", "IMAGE", "CONFIG", "CREATED", "PROMOTED", "ABORTED", ""):
        table.add_column(column)
    for record in load_history(ctx, name):
        config = record.template.config
        marks = []
        if record.hash == status.get("currentRevisionHash"):
            marks.append("current")
        if record.hash == status.get("stableRevisionHash"):
            marks.append("stable")
        if record.hash == status.get("canaryRevisionHash"):
            marks.append("canary")
        table.add_row(
            str(record.number),
            record.template.image,
            config_hash(config) if config else "-",
            record.created,
            record.promoted or "-",
            f"{record.aborted} ({record.abort_reason})" if record.aborted else "-",
            ",".join(marks),
        )
    Console(width=200).print(table)


OPERATIONS = [promote, pause, resume, abort, retry, restart, rollback, history]
