"""kopf wiring only: the AppRelease index, and its events enqueue the AppRelease.

We use kopf for the AppReleases themselves (lists, reconnects, bookmarks, liveness), and deliberately no change-detecting handlers (on.create/update/resume): those
store progress and diff-base annotations on every object, i.e. writes while idle. kopf runs
handlers only after its index is fully listed, and the workers also wait for the children's
informers, so the first reconcile after a restart sees every child and has nothing to write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.spec import GROUP, PLURAL, VERSION
from ..k8s.client import connection_info, load_configuration
from ..k8s.observe import slim_app
from ..k8s.packing import pack
from .runtime import Runtime
from .settings import OperatorStop, RunOptions

log = logging.getLogger("apprelease.handlers")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    options: RunOptions = memo.get("options") or RunOptions()
    settings.posting.enabled = False  # we post our own Events, only for transitions
    settings.watching.server_timeout = 300  # re-establish watches; never hang on a dead stream
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # List in pages: by default kopf reads every AppRelease in one response, and the heap
    # keeps that peak (the raw and decoded list, ~20 KB per AppRelease) after a restart.
    settings.watching.chunk_size = 500
    if options.namespaces:
        # Namespaced: no cluster-wide CRD/namespace watch, so namespaced RBAC is enough.
        settings.scanning.disabled = True
    stop: OperatorStop | None = memo.get("stop")
    runtime = Runtime(options, kwargs["apprelease_index"], stop_operator=stop.request if stop else None)
    runtime.start()
    memo["runtime"] = runtime
    if options.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(options.metrics_port)
    log.info("apprelease operator started (%d workers)", options.workers)


@kopf.on.probe(id="progress")
def progress(memo: kopf.Memo, **_: Any) -> str:
    """Liveness: fails (HTTP 500 from kopf's endpoint) while workers or informers are stuck.
    A PermanentError, because kopf retries an ordinary exception inside the probe request."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return "starting"
    problems = runtime.health()
    if problems:
        raise kopf.PermanentError("; ".join(problems))
    return "ok"


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with exactly the configuration our own client uses."""
    options: RunOptions = memo.get("options") or RunOptions()
    return connection_info(load_configuration(options.kubeconfig, options.context))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


# The AppRelease index ---------------------------------------------------------------------
# Children are not watched through kopf: see k8s/informer.py (kopf's per-object machinery
# costs more than the ~7 children per app are worth).


@kopf.index(GROUP, VERSION, PLURAL)
async def apprelease_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict:
    return {(namespace or "", name): pack(slim_app(body))}


# Triggers --------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def apprelease_changed(
    event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.ready.set()  # kopf runs handlers only after every index has been listed
    key = (namespace or "", name)
    # kopf has indexed this version already (indexers run before handlers).
    runtime.cache.seen(event.get("object") or {}, deleted=event.get("type") == "DELETED")
    if event.get("type") == "DELETED":
        runtime.removed(key)
    else:
        runtime.enqueue(key, urgent=_user_change(event.get("object") or {}))


def _user_change(body: Mapping[str, Any]) -> bool:
    """A spec edit or a new request, as opposed to our own status update coming back."""
    status = body.get("status") or {}
    if body.get("metadata", {}).get("generation") != status.get("observedGeneration"):
        return True
    annotations = body.get("metadata", {}).get("annotations") or {}
    handled = status.get("handledRequests") or {}
    return any(
        annotations.get(f"{GROUP}/{kind}") not in (None, handled.get(kind))
        for kind in ("promote", "abort", "retry")
    )
