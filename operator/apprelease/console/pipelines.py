"""ReleasePipelines in the console: the list, and one pipeline's page with its stages side by
side (the artifact each runs, soak progress, what waits for approval, who decided what), the
diff of what is about to go into each stage, and Approve / Reject.

Everything is read and created as the user. The buttons show where a SelfSubjectAccessReview
says the user may create a ReleaseApproval in the stage's namespace; the click creates it as
the user, so the admission policy records their real name (and the apiserver's 403 is what a
forged request gets). The page redraws itself every few seconds, and only when it changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from ..actions import promotion_diff
from ..api.spec import GROUP
from ..k8s.client import ApiError, Kube
from ..rollout.diff import AppDiff
from ..rollout.pipeline import ApprovalDecision, approval_body, decision_refused
from ..rollout.timefmt import parse_time_or
from . import views
from .context import Console, console_of, identity_of, page_context
from .metrics import ACTIONS

log = logging.getLogger("apprelease.console.pipelines")

APPROVALS = (GROUP, "releaseapprovals")
REFRESH_SECONDS = 3
HISTORY_SHOWN = 30
DECISIONS: dict[str, ApprovalDecision] = {"approve": "Approve", "reject": "Reject"}


@dataclass
class StageCard:
    name: str
    namespace: str
    gate: str
    status: Mapping[str, Any]
    pending: list[Mapping[str, Any]] = field(default_factory=list)
    soak: str = ""
    may_decide: bool = False
    diffs: dict[str, list[AppDiff]] = field(default_factory=dict)  # digest → its apps' diffs
    diff_problem: dict[str, str] = field(default_factory=dict)  # digest → why no diff is shown


def gate_text(gate: Mapping[str, Any] | None) -> str:
    if not gate:
        return "entry (a normal release)"
    if "manual" in gate:
        return "manual approval"
    return f"automatic after {(gate.get('auto') or {}).get('soakSeconds', 0)}s healthy"


def soak_progress(gate: Mapping[str, Any] | None, source: Mapping[str, Any] | None, now: datetime) -> str:
    """How far the previous stage's artifact has soaked toward this stage's auto gate."""
    auto = (gate or {}).get("auto")
    if auto is None or not source or not source.get("healthySince"):
        return ""
    soak = int(auto.get("soakSeconds") or 0)
    elapsed = int((now - parse_time_or(source["healthySince"], now)).total_seconds())
    return f"soaked {min(max(elapsed, 0), soak)}s of {soak}s"


async def stage_cards(console: Console, request: web.Request, pipeline: Mapping[str, Any],
                      now: datetime) -> list[StageCard]:
    identity = identity_of(request)
    client = console.client(identity)
    spec_stages = (pipeline.get("spec") or {}).get("stages") or []
    status = pipeline.get("status") or {}
    by_name = {s.get("name"): s for s in status.get("stages") or []}
    cards = []
    for index, stage in enumerate(spec_stages):
        source = by_name.get(spec_stages[index - 1]["name"]) if index else None
        card = StageCard(stage["name"], stage["namespace"], gate_text(stage.get("gate")),
                         by_name.get(stage["name"]) or {},
                         pending=[p for p in status.get("pending") or [] if p.get("stage") == stage["name"]])
        if any(p.get("reason") == "Soaking" for p in card.pending):
            card.soak = soak_progress(stage.get("gate"), source, now)
        cards.append(card)

    async def fill(card: StageCard) -> None:
        waiting = [p for p in card.pending if p.get("reason") == "WaitingForApproval"]
        if waiting and not console.settings.read_only:
            card.may_decide = await console.access.can(identity, "create", APPROVALS, card.namespace)
        meta = pipeline["metadata"]
        for item in card.pending:
            digest = str(item.get("digest"))
            found = await client.call(promotion_diff, meta["namespace"], meta["name"], card.namespace, digest)
            if isinstance(found, str):
                card.diff_problem[digest] = found
            else:
                card.diffs[digest] = found

    await asyncio.gather(*(fill(card) for card in cards))
    return cards


# Pages --------------------------------------------------------------------------------------


def _pipeline_path(namespace: str, name: str) -> str:
    return f"/pipelines/{namespace}/{name}"


def _error_page(console: Console, context: dict[str, Any], exc: ApiError, what: str) -> web.Response:
    html = console.render("pipeline.html", **context, error=f"{what}: {exc.message or exc.reason}")
    return web.Response(text=html, content_type="text/html", status=exc.status if exc.status >= 400 else 502)


async def pipelines_page(request: web.Request) -> web.Response:
    console = console_of(request)
    namespace = console.settings.namespace or request.query.get("ns") or None
    context = await page_context(request)
    error = ""
    items: list[dict[str, Any]] = []
    try:
        items = await console.client(identity_of(request)).call(Kube.list, "ReleasePipeline", namespace)
    except ApiError as exc:
        where = f"namespace {namespace}" if namespace else "every namespace"
        error = f"cannot list ReleasePipelines in {where}: {exc.message or exc.reason}"
    items.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    html = console.render("pipelines.html", **context, pipelines=items, namespace=namespace or "", error=error,
                          path=_pipeline_path)
    return web.Response(text=html, content_type="text/html", status=403 if error and not items else 200)


async def _live_html(request: web.Request) -> tuple[str, str] | web.Response:
    """The page's live part and its version, or the error response."""
    console = console_of(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    try:
        pipeline = await console.client(identity_of(request)).call(Kube.get, "ReleasePipeline", namespace, name)
    except ApiError as exc:
        context = await page_context(request)
        return _error_page(console, context | {"namespace": namespace, "name": name}, exc,
                           f"cannot read ReleasePipeline {namespace}/{name}")
    now = views.utcnow()
    cards = await stage_cards(console, request, pipeline, now)
    history = list(reversed((pipeline.get("status") or {}).get("history") or []))[:HISTORY_SHOWN]
    # No relative times ("2s ago") in it: the version would change at every redraw.
    inner = console.render("_pipeline_live.html", pipeline=pipeline, cards=cards, history=history,
                           base=_pipeline_path(namespace, name))
    return inner, hashlib.sha256(inner.encode()).hexdigest()[:16]


async def _pipeline(request: web.Request, *, whole_page: bool) -> web.Response:
    console = console_of(request)
    live = await _live_html(request)
    if isinstance(live, web.Response):
        return live
    inner, version = live
    if not whole_page and request.query.get("v") == version:
        return web.Response(status=204)  # what the page shows already
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    parts = {"live": inner, "version": version, "refresh": REFRESH_SECONDS, "base": _pipeline_path(namespace, name)}
    if whole_page:
        html = console.render("pipeline.html", **await page_context(request), namespace=namespace, name=name, **parts)
    else:
        html = console.render("_pipeline_refresh.html", **parts)
    return web.Response(text=html, content_type="text/html")


async def pipeline_page(request: web.Request) -> web.Response:
    return await _pipeline(request, whole_page=True)


async def pipeline_live(request: web.Request) -> web.Response:
    """The live part again, or 204 when it is what the page shows (its version ``v``)."""
    return await _pipeline(request, whole_page=False)


# Approve / Reject ------------------------------------------------------------------------------


def _result(request: web.Request, ok: bool, text: str, status: int = 200) -> web.Response:
    html = console_of(request).render("_message.html", ok=ok, text=text)
    return web.Response(text=html, content_type="text/html", status=status)


async def decide(request: web.Request) -> web.Response:
    """Create a ReleaseApproval as the user; the apiserver decides whether they may."""
    console = console_of(request)
    namespace, name, stage = (request.match_info[k] for k in ("namespace", "name", "stage"))
    decision = DECISIONS.get(request.match_info["decision"])
    if decision is None:
        raise web.HTTPNotFound(text=f"no decision {request.match_info['decision']!r}")
    label = f"pipeline-{decision.lower()}"
    if console.settings.read_only:
        ACTIONS.labels(label, "read-only").inc()
        return _result(request, False, "this console is read-only", status=403)
    form = await request.post()
    artifact = str(form.get("artifact", "")).strip()
    comment = str(form.get("comment", "")).strip()
    if not artifact:
        return _result(request, False, "which artifact?", status=400)
    identity = identity_of(request)
    client = console.client(identity)
    stages: dict[str, Any] = {}
    try:
        pipeline = await client.call(Kube.get, "ReleasePipeline", namespace, name)
        stages = {s["name"]: s for s in (pipeline.get("spec") or {}).get("stages") or []}
        if stage not in stages:
            return _result(request, False, f"pipeline {name} has no stage {stage}", status=404)
        stage_namespace = stages[stage]["namespace"]
        approver = await client.whoami()
        body = approval_body(pipeline=name, pipeline_namespace=namespace, stage=stage,
                             stage_namespace=stage_namespace, artifact=artifact, decision=decision,
                             approver=approver, comment=comment)
        created = await client.call(Kube.create, body)
    except ApiError as exc:
        ACTIONS.labels(label, str(exc.status)).inc()
        log.info("%s %s/%s stage %s artifact %s refused: %s %s", label, namespace, name, stage, artifact,
                 exc.status, exc.reason)
        text = exc.message or str(exc)
        if exc.status == 403:
            text = decision_refused(decision, stage, stages[stage]["namespace"] if stage in stages else "?", text)
        return _result(request, False, text, status=exc.status if exc.status >= 400 else 502)
    ACTIONS.labels(label, "ok").inc()
    meta = created.get("metadata") or {}
    message = (f"{decision}: releaseapproval {meta.get('namespace')}/{meta.get('name')} created for artifact"
               f" {artifact} to stage {stage}, as {approver}")
    log.info("user %s: %s", approver, message)
    return _result(request, True, message)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/pipelines", pipelines_page)
    router.add_get("/pipelines/{namespace}/{name}", pipeline_page)
    router.add_get("/pipelines/{namespace}/{name}/live", pipeline_live)
    router.add_post("/pipelines/{namespace}/{name}/stages/{stage}/{decision}", decide)
