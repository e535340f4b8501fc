"""Drop managedFields from every object kopf receives, before kopf holds on to it.

Our indices keep slimmed copies only, but kopf keeps each raw object while it is being
processed, and on startup that is all of them at once: every object's worker waits until
every index is listed, each holding its full body. managedFields are a third or more of a
Deployment's JSON and nobody here reads them (kopf neither), so they are removed from the
watch stream as it is read. Installed by wrapping the stream function kopf calls, before
``kopf.run``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from kopf._cogs.clients import watching

from ..k8s.observe import LAST_APPLIED

_ORIGINAL = watching.infinite_watch


def strip_heavy_metadata(obj: MutableMapping[str, Any]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)


async def _slim_infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
    async for raw_event in _ORIGINAL(**kwargs):
        obj: Any = raw_event.get("object") if isinstance(raw_event, dict) else None
        if isinstance(obj, dict):
            strip_heavy_metadata(obj)
        yield raw_event


def install() -> None:
    """Make kopf's watchers read slimmed events (call before kopf.run; idempotent)."""
    watching.infinite_watch = _slim_infinite_watch
