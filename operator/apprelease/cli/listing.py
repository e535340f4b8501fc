"""`apprelease list [-A]`: the AppReleases of a namespace (or all), as `kubectl get arl`."""

from __future__ import annotations

import click

from .common import Context, api_errors, kube_options, pass_context
from .output import as_list, format_objects, output_option


@click.command(name="list")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace (adds a NAMESPACE column).")
@click.option("-l", "--selector", help="Label selector, e.g. team=shop.")
@output_option()
@kube_options
@pass_context
@api_errors
def list_appreleases(ctx: Context, all_namespaces: bool, selector: str | None, output: str | None) -> None:
    """List AppReleases: name, phase, ready, step, weight, registered, age (-o wide: image,
    revision, message), the columns of `kubectl get arl`."""
    namespace = None if all_namespaces else ctx.namespace
    items = ctx.kube.list("AppRelease", namespace, **({"labelSelector": selector} if selector else {}))
    items.sort(key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    if not items and (output is None or output == "wide"):
        click.echo("No resources found" + ("" if all_namespaces else f" in {ctx.namespace} namespace") + ".",
                   err=True)
        return
    click.echo(format_objects(as_list(items), output, all_namespaces=all_namespaces), nl=False)
