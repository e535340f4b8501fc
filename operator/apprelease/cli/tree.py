"""`apprelease get NAME [-w]`: a header and a revisions → Deployments → pods tree,
in the spirit of `kubectl argo rollouts get rollout -w`."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..k8s.observe import adopted_pods_selector, pod_state
from ..k8s.watch import WatchEvent, watch
from ..render import labels
from ..rollout import state as rollout_state
from ..rollout.state import Promoting, RolloutState, Switched
from . import analysis_view
from .common import Context

SYMBOLS = {
    "Healthy": ("✔", "green"),
    "Progressing": ("◌", "yellow"),
    "Paused": ("॥", "cyan"),
    "Degraded": ("✖", "red"),
    "TakenDown": ("⏻", "bright_black"),
}


def _symbol(phase: str | None) -> Text:
    mark, colour = SYMBOLS.get(phase or "", ("?", "white"))
    return Text(f"{mark} {phase or 'Unknown'}", style=colour)


def _fetch(ctx: Context, name: str) -> tuple[dict[str, Any], list[dict], list[dict], list[str]]:
    app = ctx.kube.get("AppRelease", ctx.namespace, name)
    selector = f"{labels.INSTANCE}={name},{labels.MANAGED_BY}={labels.MANAGER}"
    deployments = ctx.kube.list("Deployment", ctx.namespace, labelSelector=selector)
    pods = ctx.kube.list("Pod", ctx.namespace, labelSelector=selector)
    adopt = (app.get("spec") or {}).get("adopt")
    if adopt:  # the adopted revision's pods carry none of our labels
        pods += ctx.kube.list("Pod", ctx.namespace, labelSelector=adopted_pods_selector(adopt.get("selector") or {}))
    return app, deployments, pods, _others(ctx, name)


def _others(ctx: Context, name: str) -> list[str]:
    selector = f"{labels.INSTANCE}={name},{labels.MANAGED_BY}={labels.MANAGER}"
    return [
        f"{kind}/{obj['metadata']['name']}"
        for kind in ("Service", "Ingress", "ConfigMap")
        for obj in ctx.kube.list(kind, ctx.namespace, labelSelector=selector)
    ]


def render_view(
    app: dict[str, Any], deployments: list[dict], pods: list[dict], others: list[str] | None = None
) -> Group:
    spec, status = app.get("spec") or {}, app.get("status") or {}
    meta = app["metadata"]
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("Name:", meta["name"])
    header.add_row("Namespace:", meta["namespace"])
    header.add_row("Status:", _symbol(status.get("phase")))
    header.add_row("Message:", status.get("message") or "")
    header.add_row("Strategy:", (status.get("strategy") or "rolling").capitalize())
    if status.get("strategy") == "canary":
        header.add_row("  Step:", status.get("step") or "")
        header.add_row("  SetWeight:", str(status.get("setWeight", "")))
        header.add_row("  ActualWeight:", str(status.get("actualWeight", "")))
    analysis_view.add_header_rows(header, status)
    rollout = rollout_state.of_wire(status).state
    active = _active_revision(status, rollout)
    if status.get("strategy") == "blueGreen":
        header.add_row("  Active:", f"revision {active}" if active is not None else "")
        if status.get("canaryRevision") is not None:
            header.add_row("  Preview:", f"revision {status['canaryRevision']}")
        if isinstance(rollout, Switched):
            header.add_row("  Switched:", f"{rollout.at} (old pods kept for an instant rollback)")
    images = []
    for dep in sorted(deployments, key=lambda d: d["metadata"]["name"]):
        track = (dep["metadata"].get("labels") or {}).get(labels.TRACK, "")
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        images.append(f"{image} ({track})")
    header.add_row("Images:", "\n".join(images) or spec.get("image", ""))
    header.add_row("Replicas:", "")
    autoscaling = _condition(status, "Autoscaling")
    desired = str(spec.get("replicas", 1))
    if autoscaling and autoscaling.get("status") == "True":
        desired += f"  ({autoscaling.get('message', '').split(':')[0]})"
    header.add_row("  Desired:", desired)
    if autoscaling and autoscaling.get("status") == "False":
        header.add_row("  Autoscaling:", Text(autoscaling.get("message", ""), style="red"))
    header.add_row("  Current:", str(status.get("replicas", 0)))
    header.add_row("  Updated:", str(status.get("updatedReplicas", 0)))
    header.add_row("  Ready:", str(status.get("readyReplicas", 0)))
    header.add_row("  Available:", str(status.get("availableReplicas", 0)))
    if others:
        header.add_row("Children:", "\n".join(others))
    registration = status.get("registration")
    if registration:
        header.add_row(
            "Registered:",
            f"{registration.get('summary', '')} ({registration.get('provider')} {registration.get('service', '')})",
        )
        if registration.get("lastError"):
            header.add_row("  Error:", Text(registration["lastError"], style="red"))

    root = Tree(Text.assemble(("⟳ ", "bold"), meta["name"], "  AppRelease  ", _symbol(status.get("phase"))))
    by_revision: dict[str, list[dict]] = defaultdict(list)
    for dep in deployments:
        by_revision[(dep["metadata"].get("annotations") or {}).get(labels.REVISION, "?")].append(dep)
    pods_by_track: dict[str, list[dict]] = defaultdict(list)
    for pod in pods:
        # A pod without our track label is an adopted one (the stable Deployment's, as it was).
        pods_by_track[(pod["metadata"].get("labels") or {}).get(labels.TRACK, "stable")].append(pod)
    for revision in sorted(by_revision, key=lambda r: int(r) if r.isdigit() else 0, reverse=True):
        branch = root.add(Text(f"# revision:{revision}", style="magenta"))
        for dep in by_revision[revision]:
            track = (dep["metadata"].get("labels") or {}).get(labels.TRACK, "")
            dstatus = dep.get("status") or {}
            ready = f"{dstatus.get('readyReplicas', 0)}/{dep['spec'].get('replicas', 0)}"
            role = ""
            if status.get("strategy") == "blueGreen":
                role = "  active" if revision == str(active) else "  idle" if track == "stable" else "  preview"
            node = branch.add(f"⧉ {dep['metadata']['name']}  Deployment  {track}{role}  ready:{ready}")
            for pod in sorted(pods_by_track.get(track, []), key=lambda p: p["metadata"]["name"]):
                state = pod_state(pod)
                mark = ("✔", "green") if state.ready else (("✖", "red") if state.crash_looping else ("◌", "yellow"))
                adopted = labels.TRACK not in (pod["metadata"].get("labels") or {})
                pod_revision = "adopted" if adopted else state.revision if state.revision is not None else "?"
                node.add(Text.assemble(
                    (f"{mark[0]} ", mark[1]),
                    f"{state.name}  Pod  {state.phase}  ready:{int(state.ready)}/1"
                    f"  restarts:{state.restarts}  rev:{pod_revision}"
                    + (f"  registry:{state.gate.reason}" if state.gate else "")
                    + ("  terminating" if state.deleting else ""),
                ))
    analysis_view.add_tree(root, status)
    return Group(header, Text(""), root)


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _active_revision(status: dict[str, Any], state: RolloutState) -> int | None:
    """The revision traffic goes to with blue-green: the preview's once switched."""
    if isinstance(state, Promoting | Switched):
        return status.get("canaryRevision")
    return status.get("stableRevision")


def show(ctx: Context, name: str, *, watch: bool, timeout: float | None = None) -> None:
    console = Console()
    if not watch:
        console.print(render_view(*_fetch(ctx, name)))
        return
    app, deployments, pods, others = _fetch(ctx, name)  # not found: an error at once
    until = time.monotonic() + timeout if timeout else None
    view = _WatchedView(ctx, name, until, ((app.get("spec") or {}).get("adopt") or {}).get("selector"))
    view.start()
    with Live(render_view(app, deployments, pods, others), console=console, refresh_per_second=4) as live:
        try:
            while view.next_change():
                live.update(view.render())
        except KeyboardInterrupt:
            pass


class _WatchedView:
    """The AppRelease, its Deployments and pods, kept current by watches (each in a thread,
    all feeding one queue): the apiserver pushes changes, nothing polls. An adopted app's
    pods of the adopted revision carry none of our labels: a watch of their own selects them
    (as `get` lists them). The other children (Service, Ingress, ConfigMap: names only) are
    read again when the app changes."""

    def __init__(self, ctx: Context, name: str, until: float | None, adopted_selector: dict[str, str] | None = None):
        self._ctx = ctx
        self._name = name
        self._until = until
        selector = f"{labels.INSTANCE}={name},{labels.MANAGED_BY}={labels.MANAGER}"
        # source → (kind, watch selectors)
        self._sources: dict[str, tuple[str, dict[str, Any]]] = {
            "AppRelease": ("AppRelease", {"field_selector": f"metadata.name={name}"}),
            "Deployment": ("Deployment", {"label_selector": selector}),
            "Pod": ("Pod", {"label_selector": selector}),
        }
        if adopted_selector:
            self._sources["AdoptedPod"] = ("Pod", {"label_selector": adopted_pods_selector(adopted_selector)})
        self._objects: dict[str, dict[str, dict[str, Any]]] = {source: {} for source in self._sources}
        self._events: queue.Queue[tuple[str, WatchEvent | Exception | None]] = queue.Queue()
        self._others: list[str] = []

    def start(self) -> None:
        for source, (kind, selectors) in self._sources.items():
            threading.Thread(target=self._pump, args=(source, kind, selectors), daemon=True,
                             name=f"watch-{source}").start()

    def _pump(self, source: str, kind: str, selectors: dict[str, Any]) -> None:
        try:
            for event in watch(self._ctx.kube, kind, self._ctx.namespace, until=self._until, **selectors):
                self._events.put((source, event))
        except Exception as exc:  # handed to the main thread, which reports it
            self._events.put((source, exc))
        else:
            self._events.put((source, None))  # the timeout passed

    def next_change(self) -> bool:
        """Wait for a change and apply it (and whatever else arrived meanwhile); False once
        the timeout has passed."""
        source, event = self._events.get()
        while True:
            if event is None:
                return False
            if isinstance(event, Exception):
                raise event
            self._apply(source, event)
            try:
                source, event = self._events.get_nowait()
            except queue.Empty:
                return True

    def _apply(self, source: str, event: WatchEvent) -> None:
        known = self._objects[source]
        if event.type == "LISTED":
            known.clear()
        for obj in event.objects:
            if event.type == "DELETED":
                known.pop(obj["metadata"]["name"], None)
            else:
                known[obj["metadata"]["name"]] = obj
        if source == "AppRelease":
            self._others = _others(self._ctx, self._name)

    def render(self) -> Group:
        app = self._objects["AppRelease"].get(self._name)
        if app is None:
            return Group(Text(f"{self._name}: deleted", style="red"))
        pods = {**self._objects.get("AdoptedPod", {}), **self._objects["Pod"]}
        return render_view(app, list(self._objects["Deployment"].values()), list(pods.values()), self._others)
