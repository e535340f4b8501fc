"""`apprelease config NAME`: the app's Nacos dataIds, each copy's md5 and who reads it."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from ..api.status import AppReleaseStatus
from ..render import labels
from ..rollout.nacos_config import config_table
from .common import (
    Context,
    api_errors,
    complete_app_names,
    kube_options,
    output_option,
    pass_context,
    print_structured,
)
from .ops import load_history


@click.command()
@click.argument("name", shell_complete=complete_app_names)
@output_option
@kube_options
@pass_context
@api_errors
def config(ctx: Context, name: str, output: str | None) -> None:
    """Nacos config of NAME: each dataId's formal copy and revision copies, md5, revisions, pods."""
    app = ctx.kube.get("AppRelease", ctx.namespace, name)
    status = AppReleaseStatus.model_validate(app.get("status") or {})
    pods: dict[int, list[str]] = {}
    for pod in ctx.kube.list("Pod", ctx.namespace, labelSelector=f"{labels.INSTANCE}={name}"):
        revision = (pod["metadata"].get("labels") or {}).get(labels.REVISION, "")
        if revision.isdigit() and not pod["metadata"].get("deletionTimestamp"):
            pods.setdefault(int(revision), []).append(pod["metadata"]["name"])
    rows = config_table(status.config, load_history(ctx, name), pods)
    if output:
        print_structured(rows, output)
        return
    if not rows:
        raise click.ClickException(f"{name} has no Nacos config in status (spec.config.nacos)")
    nacos = status.config.nacos if status.config else None
    console = Console(width=200)
    console.print(f"namespace: {nacos.namespace if nacos else '-'}")
    table = Table(box=None, header_style="bold")
    for column in ("DATAID", "GROUP", "COPY", "MD5", "REVISIONS", "PODS", "HAND EDIT SAVED TO"):
        table.add_column(column)
    for row in rows:
        revisions = row["revisions"]
        pods_of = row["pods"]
        assert isinstance(revisions, list) and isinstance(pods_of, list)
        table.add_row(str(row["dataId"]), str(row["group"]), str(row["copy"]), str(row["md5"] or "-"),
                      ",".join(map(str, revisions)) or "-", ",".join(pods_of) or "-", str(row["handEdited"] or "-"))
    console.print(table)
    if nacos and nacos.last_drift:
        console.print(f"last hand edit: {nacos.last_drift}")
