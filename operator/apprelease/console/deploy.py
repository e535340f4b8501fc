"""The deploy form: new app or edit, with the YAML it will apply and the apiserver's verdict.

Preview is pure (the YAML to copy into Git). Validate and Deploy send the object as the
user, first with dryRun=All (the apiserver's schema, CEL rules and admission, nothing
stored), then for real; the apiserver's per-field causes go next to the fields.
"""

from __future__ import annotations

from typing import Any

import yaml
from aiohttp import web

from ..k8s.client import RESOURCES, ApiError
from . import form as deploy_form
from .access import APPRELEASES
from .context import console_of, identity_of, page_context

FIELD_MANAGER = "apprelease-console"


class _BlockDumper(yaml.SafeDumper):
    """Config files as readable | blocks, as people write them in Git."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str)


def to_yaml(obj: dict[str, Any]) -> str:
    shown = {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                 if k in ("name", "namespace", "labels", "annotations")}}
    return yaml.dump(shown, Dumper=_BlockDumper, sort_keys=False, width=100)


async def _render_form(request: web.Request, form: deploy_form.DeployForm, *, errors: dict[str, str] | None = None,
                       general: list[str] | None = None, message: str = "", status: int = 200,
                       fragment: bool = False) -> web.Response:
    console = console_of(request)
    obj, local_errors = deploy_form.to_app_release(form, _base(request, form))
    context = {
        "form": form, "errors": {**local_errors, **(errors or {})}, "general": general or [],
        "message": message, "yaml": to_yaml(obj), "env_sources": deploy_form.ENV_SOURCES,
        "probes": deploy_form.PROBES, "strategies": deploy_form.strategy_choices(form),
        "service_types": deploy_form.SERVICE_TYPES,
        "env_rows": form.env or [deploy_form.EnvRow()], "file_rows": form.files or [deploy_form.FileRow()],
    }
    if fragment:
        html = console.render("_form_body.html", **context)
    else:
        html = console.render("form.html", **await page_context(request), **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _base(request: web.Request, form: deploy_form.DeployForm) -> dict[str, Any] | None:
    """The live object an edit starts from (from the watch cache; the update itself is
    guarded by the resourceVersion the form was opened with)."""
    if not form.editing:
        return None
    return console_of(request).watches.apps.get((form.namespace, form.name))


async def new_form(request: web.Request) -> web.Response:
    console = console_of(request)
    if console.settings.read_only:
        raise web.HTTPForbidden(text="this console is read-only")
    namespace = request.query.get("ns") or console.settings.namespace or "default"
    return await _render_form(request, deploy_form.DeployForm(namespace=namespace))


async def edit_form(request: web.Request) -> web.Response:
    console = console_of(request)
    if console.settings.read_only:
        raise web.HTTPForbidden(text="this console is read-only")
    key = request.match_info["namespace"], request.match_info["name"]
    if not await console.access.can(identity_of(request), "get", APPRELEASES, key[0]):
        raise web.HTTPForbidden(text=f"you may not read AppReleases in namespace {key[0]}")
    app = console.watches.apps.get(key)
    if app is None:
        raise web.HTTPNotFound(text=f"no AppRelease {key[0]}/{key[1]}")
    return await _render_form(request, deploy_form.from_app_release(app))


async def _posted(request: web.Request) -> deploy_form.DeployForm:
    data = await request.post()
    return deploy_form.parse({k: str(v) for k, v in data.items()})


async def preview(request: web.Request) -> web.Response:
    """Re-render the form body (YAML preview, rows added) without asking the apiserver."""
    form = await _posted(request)
    add = request.query.get("add")
    if add == "env":
        form.env.append(deploy_form.EnvRow())
    elif add == "file":
        form.files.append(deploy_form.FileRow())
    return await _render_form(request, form, fragment=True)


async def submit(request: web.Request) -> web.Response:
    """Validate (dry run) or deploy, as the user."""
    console = console_of(request)
    if console.settings.read_only:
        raise web.HTTPForbidden(text="this console is read-only")
    form = await _posted(request)
    dry_run = request.query.get("dry_run") == "1"
    obj, local_errors = deploy_form.to_app_release(form, _base(request, form))
    if form.editing and _base(request, form) is None:
        return await _render_form(request, form, general=["the app is gone (deleted meanwhile?)"],
                                  status=409, fragment=True)
    if local_errors:
        return await _render_form(request, form, status=422, fragment=True)
    client = console.client(identity_of(request))
    resource = RESOURCES["AppRelease"]
    if form.editing:
        # Only what the form changed, under the version the form was opened with (409 else):
        # nothing else of the object (annotations, fields the form does not show) is touched.
        base = _base(request, form) or {}
        method, path, content_type = "PATCH", resource.path(form.namespace, form.name), deploy_form.MERGE
        body: dict[str, Any] = {"metadata": {"resourceVersion": form.resource_version},
                                "spec": deploy_form.merge_patch(base.get("spec") or {}, obj["spec"])}
    else:
        method, path, content_type = "POST", resource.path(form.namespace), "application/json"
        body = obj
    query = {"fieldManager": FIELD_MANAGER}
    try:
        await client.request(method, path, query={**query, "dryRun": "All"}, body=body,
                             content_type=content_type, resource="AppRelease")
        if dry_run:
            return await _render_form(request, form, message="the apiserver accepts this AppRelease (dry run)",
                                      fragment=True)
        await client.request(method, path, query=query, body=body, content_type=content_type,
                             resource="AppRelease")
    except ApiError as exc:
        by_field, general = deploy_form.field_errors(exc.causes, exc.message)
        if exc.status == 409 and form.editing:
            general = ["the app changed since this form was opened: reload to edit the current version"]
        return await _render_form(request, form, errors=by_field, general=general,
                                  status=exc.status, fragment=True)
    response = web.Response(status=204)
    response.headers["HX-Redirect"] = f"/apps/{form.namespace}/{form.name}"
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/new", new_form)
    router.add_get("/apps/{namespace}/{name}/edit", edit_form)
    router.add_post("/form/preview", preview)
    router.add_post("/form/submit", submit)
