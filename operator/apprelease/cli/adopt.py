"""`apprelease import` and `apprelease adopt`: bring a running app in (docs/adopt.md)."""

from __future__ import annotations

import sys
from typing import IO, Any

import click
import yaml

from ..api.spec import KIND, AppRelease
from ..k8s.client import ApiError, Kube
from ..render import RenderError, render_initial
from ..render.adoption import (
    AdoptionRefused,
    Change,
    adopt,
    differences,
    hpa_retarget,
    template_changes,
)
from ..render.importer import (
    AppObjects,
    Imported,
    ImportError_,
    collect,
    find_deployment,
    import_app,
)
from .common import CliError, Context, api_errors, dump_yaml, kube_options, pass_context

# What the apiserver keeps about an object's life, never what anyone applied.
_BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
_RELATED_KINDS = ("Deployment", "Service", "Ingress", "HorizontalPodAutoscaler")


def _deployment_name(target: str) -> str:
    kind, _, name = target.partition("/")
    if not name or kind.lower() not in ("deploy", "deployment", "deployments", "deployment.apps"):
        raise click.UsageError(f"{target}: name a Deployment as deploy/NAME")
    return name


def read_app(kube: Kube, namespace: str, name: str) -> tuple[AppObjects, list[dict[str, Any]]]:
    """The Deployment, what belongs to its app, and the namespace's other workloads/Services
    (for the refusals). ConfigMaps are read by name: only the mounted ones."""
    deployment = kube.get("Deployment", namespace, name)
    around: list[dict[str, Any]] = []
    for kind in _RELATED_KINDS:
        around += [{**o, "kind": kind} for o in kube.list(kind, namespace)]
    deployment = {**deployment, "kind": "Deployment"}
    found = collect(deployment, around)
    configmaps = []
    for volume in ((deployment["spec"]["template"].get("spec") or {}).get("volumes") or []):
        source = volume.get("configMap") or {}
        if source.get("name"):
            try:
                configmaps.append({**kube.get("ConfigMap", namespace, source["name"]), "kind": "ConfigMap"})
            except ApiError as exc:
                if not exc.not_found:
                    raise
    return AppObjects(deployment, found.services, found.ingresses, tuple(configmaps), found.hpas), around


def _print_imported(imported: Imported, out: IO[str]) -> None:
    click.echo(dump_yaml([imported.app]), nl=False, file=out)
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)


@click.command("import")
@click.argument("target", required=False)
@click.option("-f", "--filename", "filenames", multiple=True, type=click.File("r"),
              help="Manifests to read instead of the cluster (repeatable; '-' for stdin).")
@kube_options
@pass_context
@api_errors
def import_command(ctx: Context, target: str | None, filenames: tuple[IO[str], ...]) -> None:
    """Print the AppRelease that describes a running app (deploy/NAME) or manifests (-f).

    The Deployment, the Services selecting its pods, the Ingresses routing to them, the
    ConfigMaps it mounts and its HPA become one AppRelease; what it cannot express is listed
    as notes on stderr. Secret values are never read: env keeps its secretKeyRefs.
    """
    name = _deployment_name(target) if target else None
    try:
        if filenames:
            objects = [d for f in filenames for d in yaml.safe_load_all(f) if isinstance(d, dict)]
            deployment = find_deployment(objects, name)
            app = collect(deployment, objects)
        elif name:
            app, _ = read_app(ctx.kube, ctx.namespace, name)
        else:
            raise click.UsageError("name a Deployment (deploy/NAME) or give manifests with -f")
        imported = import_app(app)
    except ImportError_ as exc:
        raise CliError(str(exc)) from None
    _print_imported(imported, sys.stdout)


def _visible(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return {"metadata": meta, "spec": obj.get("spec")} if "spec" in obj else {"metadata": meta, "data": obj.get("data")}


def _show_changes(changes: list[Change]) -> None:
    for change in changes:
        click.echo(f"    {change.path}: {_short(change.live)} -> {_short(change.desired)}")


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip() if value is not None else "(none)"
    return text if len(text) <= 120 else text[:117] + "..."


def show_dry_run(kube: Kube, imported: Imported) -> bool:
    """Per object, what the operator would change, and whether pods would restart (a
    server-side dry-run apply: the apiserver's defaults and merge, nothing written)."""
    app = AppRelease.model_validate(imported.app)
    restarts = False
    for desired in render_initial(app):
        kind, name = desired["kind"], desired["metadata"]["name"]
        try:
            live = kube.get(kind, app.namespace, name)
        except ApiError as exc:
            if not exc.not_found:
                raise
            click.echo(f"{kind} {name}: created")
            continue
        applied = kube.apply(desired, dry_run=True)
        changes = differences(_visible(live), _visible(applied))
        click.echo(f"{kind} {name}: " + (f"{len(changes)} field(s) change" if changes else "unchanged"))
        _show_changes(changes)
        if kind == "Deployment":
            template = template_changes(live, applied)
            restarts = restarts or bool(template)
            click.echo("  pods restart: " + ("yes, one rolling update (the pod template changes)" if template
                                           else "no (pod template unchanged)"))
    for hpa in imported.objects.hpas if imported.objects else ():
        click.echo(f"HorizontalPodAutoscaler {hpa['metadata']['name']}: scaleTargetRef -> {KIND} {app.name}")
    return restarts


@click.command("adopt")
@click.argument("target")
@click.option("--dry-run", is_flag=True, help="Show per object what would change and whether pods restart.")
@kube_options
@pass_context
@api_errors
def adopt_command(ctx: Context, target: str, dry_run: bool) -> None:
    """Bring a running Deployment in without restarting it (deploy/NAME).

    Creates the AppRelease from `import` with spec.adopt: the operator keeps the Deployment's
    selector and pod template, the Service its name and ClusterIP, the Ingress its name, and
    adds owner references. Refused, with nothing written, when another controller (Helm,
    Argo Rollouts, another AppRelease) holds an object or a Service serves two apps.
    """
    name = _deployment_name(target)
    kube = ctx.kube
    app_objects, around = read_app(kube, ctx.namespace, name)
    try:
        imported = adopt(app_objects, around)
    except AdoptionRefused as exc:
        raise CliError(f"deploy/{name} not adopted: " + "; ".join(exc.reasons)) from None
    try:
        kube.get(KIND, ctx.namespace, name)
        raise CliError(f"AppRelease {name} already exists in {ctx.namespace}")
    except ApiError as exc:
        if not exc.not_found:
            raise
    _print_imported(imported, sys.stdout)
    if dry_run:
        try:
            show_dry_run(kube, imported)
        except RenderError as exc:
            raise CliError(str(exc)) from None
        return
    kube.create(imported.app)
    for hpa in app_objects.hpas:
        kube.merge_patch("HorizontalPodAutoscaler", ctx.namespace, hpa["metadata"]["name"], hpa_retarget(hpa, name))
    click.echo(f"apprelease {name} adopted", err=True)


ADOPT_COMMANDS = [import_command, adopt_command]
