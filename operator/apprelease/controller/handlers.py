"""kopf wiring only: indices hold what we watch, events enqueue the owning AppRelease.

We use kopf for watching (lists, reconnects, bookmarks, peering, liveness) and indices,
and deliberately no change-detecting handlers (on.create/update/resume): those store
progress and diff-base annotations on every object, i.e. writes while idle. kopf runs
handlers only after every index is fully listed, so the first reconcile after a restart
already sees every child and has nothing to write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from ..api.spec import GROUP, PLURAL, VERSION
from ..k8s.client import connection_info, load_configuration
from ..k8s.observe import AppKey, app_key_of, pack, pod_state, slim_app, slim_object, slim_revision
from ..render import labels
from .runtime import Runtime
from .settings import RunOptions

log = logging.getLogger("apprelease.handlers")
OURS = {labels.MANAGED_BY: labels.MANAGER}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    options: RunOptions = memo.get("options") or RunOptions()
    settings.posting.enabled = False  # we post our own Events, only for transitions
    settings.watching.server_timeout = 300  # re-establish watches; never hang on a dead stream
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    indices = {name: value for name, value in kwargs.items() if name.endswith("_index")}
    runtime = Runtime(options, indices)
    runtime.start()
    memo["runtime"] = runtime
    if options.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(options.metrics_port)
    log.info("apprelease operator started (%d workers)", options.workers)


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with exactly the configuration our own client uses."""
    options: RunOptions = memo.get("options") or RunOptions()
    return connection_info(load_configuration(options.kubeconfig))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


# Indices ---------------------------------------------------------------------------------
# A child's index function also wakes its AppRelease: one kopf handler call per watch event
# instead of two (indexing runs for every event anyway). The workers start only once kopf
# has listed every index (see Runtime.ready), so nothing is reconciled from half a cache.


@kopf.index(GROUP, VERSION, PLURAL)
async def apprelease_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict:
    return {(namespace or "", name): pack(slim_app(body))}


def _wake(memo: kopf.Memo, key: AppKey) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.enqueue(key)


def _packed_slim(body: kopf.Body) -> bytes:
    return pack(slim_object(body))


def _packed_endpoint_slice(body: kopf.Body) -> bytes:
    return pack(slim_object(body) | {"endpoints": body.get("endpoints") or [], "ports": body.get("ports") or []})


def _packed_revision(body: kopf.Body) -> bytes:
    return pack(slim_revision(body))


# (index name, what is watched, what is kept); the names are what controller/cache.py reads.
_CHILD_INDICES: tuple[tuple[str, tuple[str, ...], Callable[[kopf.Body], Any]], ...] = (
    ("deployment_index", ("apps", "v1", "deployments"), _packed_slim),
    ("service_index", ("v1", "services"), _packed_slim),
    ("ingress_index", ("networking.k8s.io", "v1", "ingresses"), _packed_slim),
    ("configmap_index", ("v1", "configmaps"), _packed_slim),
    ("revision_index", ("apps", "v1", "controllerrevisions"), _packed_revision),
    ("pod_index", ("v1", "pods"), pod_state),
    ("endpointslice_index", ("discovery.k8s.io", "v1", "endpointslices"), _packed_endpoint_slice),
)


def _child_index(keep: Callable[[kopf.Body], Any]) -> Callable[..., Any]:
    async def index(body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict | None:
        key = app_key_of(body)
        if key is None:
            return None
        _wake(memo, key)
        return {key: keep(body)}

    return index


for _index_name, _resource, _keep in _CHILD_INDICES:
    kopf.index(*_resource, labels=OURS, id=_index_name)(_child_index(_keep))


# Triggers --------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def apprelease_changed(
    event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.ready.set()  # kopf runs handlers only after every index has been listed
    key = (namespace or "", name)
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


async def _child_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Index functions do not see deletions; a deleted child must be put back."""
    key = app_key_of(body)
    if key is not None:
        _wake(memo, key)


def _deleted(type: str, **_: Any) -> bool:
    return type == "DELETED"


# Not pods, the most numerous: a pod is marked deleting (an indexed change) before it goes,
# and its going changes its Deployment's status and EndpointSlice, which wake the app too.
for _index_name, _resource, _keep in _CHILD_INDICES:
    if _resource[-1] != "pods":
        kopf.on.event(*_resource, labels=OURS, when=_deleted, id=f"deleted-{_resource[-1]}")(_child_deleted)
