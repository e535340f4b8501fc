"""Pipeline commands: `pipeline get`, `approve`, `reject` (docs/pipelines.md)."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..actions import promotion_diff
from ..k8s.client import ApiError
from ..rollout.pipeline import ApprovalDecision, approval_body, decision_refused
from .common import CliError, Context, api_errors, kube_options, pass_context, print_structured


@click.group()
def pipeline() -> None:
    """ReleasePipelines: what each stage runs, what waits, who approved what."""


@pipeline.command("get")
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), help="The whole object.")
@kube_options
@pass_context
@api_errors
def get_pipeline(ctx: Context, name: str, output: str | None) -> None:
    """Stages, the artifact each runs, pending promotions and the history of NAME."""
    body = ctx.kube.get("ReleasePipeline", ctx.namespace, name)
    if output:
        print_structured(body, output)
        return
    status = body.get("status") or {}
    console = Console(width=200)
    gates = {s["name"]: s.get("gate") for s in (body.get("spec") or {}).get("stages") or []}
    stages = Table(box=None, header_style="bold")
    for column in ("STAGE", "NAMESPACE", "GATE", "ARTIFACT", "APP", "IMAGE", "CONFIG", "REVISION", "HEALTHY SINCE"):
        stages.add_column(column)
    for stage in status.get("stages") or []:
        gate = gates.get(stage["name"])
        gate_text = "-" if not gate else ("manual" if "manual" in gate else
                                          f"auto {(gate.get('auto') or {}).get('soakSeconds', 0)}s")
        for index, app in enumerate(stage.get("apps") or []):
            first = index == 0
            stages.add_row(stage["name"] if first else "", stage["namespace"] if first else "",
                           gate_text if first else "", (stage.get("digest") or "-") if first else "",
                           app["name"], app.get("image") or "-", app.get("configHash") or "-",
                           str(app.get("revision") or "-"),
                           app.get("healthySince") or f"not healthy: {app.get('message', '')}")
    console.print(stages)
    pending = status.get("pending") or []
    console.print("[bold]Waiting:[/bold]" if pending else "Waiting: nothing")
    namespaces = {s["name"]: s["namespace"] for s in (body.get("spec") or {}).get("stages") or []}
    for item in pending:
        console.print(f"  {item['stage']}: artifact {item['digest']} {item['reason']} since {item['since']}:"
                      f" {item.get('message', '')}", markup=False)
        if item["stage"] in namespaces:
            _print_promotion_diff(console, ctx, name, namespaces[item["stage"]], item["digest"])
    history = status.get("history") or []
    if history:
        table = Table(box=None, header_style="bold", title="History", title_justify="left")
        for column in ("AT", "STAGE", "ARTIFACT", "DECISION", "BY", "MESSAGE"):
            table.add_column(column)
        for record in history[-20:]:
            table.add_row(record["at"], record["stage"], record["digest"], record["decision"], record["by"],
                          record.get("message", ""))
        console.print(table)


def _print_promotion_diff(console: Console, ctx: Context, pipeline: str, stage_namespace: str, digest: str) -> None:
    """What approving ``digest`` into the stage would change, app by app (the console's diff)."""
    found = promotion_diff(ctx.kube, ctx.namespace, pipeline, stage_namespace, digest)
    if isinstance(found, str):
        console.print(f"    {found}", markup=False)
        return
    for app in found:
        lines = [f"no such app in namespace {stage_namespace}"] if app.new_app else app.changes() or ["no differences"]
        for line in lines:
            console.print(f"    {app.app}: {line}", markup=False)


def _decide(ctx: Context, name: str, stage: str, artifact: str | None, decision: ApprovalDecision, comment: str) -> None:
    body = ctx.kube.get("ReleasePipeline", ctx.namespace, name)
    stages = {s["name"]: s for s in (body.get("spec") or {}).get("stages") or []}
    if stage not in stages:
        raise CliError(f"pipeline {name} has no stage {stage} (stages: {', '.join(stages)})")
    status = body.get("status") or {}
    if artifact is None:
        waiting = [p for p in status.get("pending") or [] if p["stage"] == stage]
        if not waiting:
            raise CliError(f"nothing waits for stage {stage}: name an artifact with --artifact"
                           f" (see `apprelease pipeline get {name}`)")
        artifact = waiting[0]["digest"]
    namespace = stages[stage]["namespace"]
    approval = approval_body(pipeline=name, pipeline_namespace=ctx.namespace, stage=stage, stage_namespace=namespace,
                             artifact=artifact, decision=decision, approver=ctx.kube.whoami(), comment=comment)
    try:
        created: dict[str, Any] = ctx.kube.create(approval)
    except ApiError as exc:
        if exc.status == 403:
            raise CliError(decision_refused(decision, stage, namespace, exc.message)) from None
        raise
    meta = created["metadata"]
    click.echo(f"releaseapproval {meta['namespace']}/{meta['name']} created: {decision} artifact {artifact}"
               f" for stage {stage} as {approval['spec']['approver']}")


def _decision_command(decision: ApprovalDecision, help_text: str) -> click.Command:
    @click.command(decision.lower(), help=help_text)
    @click.argument("name")
    @click.argument("stage")
    @click.option("--artifact", help="The artifact digest (default: the one waiting for STAGE).")
    @click.option("--comment", default="", help="Why, for the record.")
    @kube_options
    @pass_context
    @api_errors
    def command(ctx: Context, name: str, stage: str, artifact: str | None, comment: str) -> None:
        _decide(ctx, name, stage, artifact, decision, comment)

    return command


approve = _decision_command(
    "Approve", "Approve the artifact waiting to enter STAGE of pipeline NAME (or --artifact, an older one).")
reject = _decision_command("Reject", "Reject the artifact waiting to enter STAGE of pipeline NAME.")

PIPELINE_COMMANDS = [pipeline, approve, reject]
