"""Carrying out the config plan on a ConfigStore: read the keys a plan needs, run its actions.

Shared by the operator's config monitor (registry/config_monitor.py) and the unit tests'
simulation, so both do exactly the same calls. Each call is one ConfigStore call, under the
store's whole-call deadline.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..domain import ConfigAction
from ..rollout.observed import ConfigRead
from .base import RegistryUnavailable
from .config_store import ConfigKey, ConfigRefused, ConfigStore


async def read_keys(store: ConfigStore, namespace: str, keys: Iterable[tuple[str, str]]) -> ConfigRead:
    """The md5 of each (group, dataId); on the first failure, a read that says why."""
    found: dict[tuple[str, str], str | None] = {}
    try:
        for group, data_id in keys:
            stored = await store.read(ConfigKey(_space(namespace), group, data_id))
            found[(group, data_id)] = stored.md5 if stored is not None else None
    except RegistryUnavailable as exc:
        return ConfigRead(error=str(exc), error_reason=exc.reason)
    except ConfigRefused as exc:
        return ConfigRead(error=str(exc), error_reason="ConfigRefused")
    return ConfigRead(md5=found)


async def run_actions(store: ConfigStore, namespace: str, actions: Iterable[ConfigAction]) -> str | None:
    """Run the actions in order; a failed one stops the others on the same dataId (a put-back
    never runs when the save before it failed). Returns what failed, or None."""
    failed: set[tuple[str, str]] = set()
    errors: list[str] = []
    for action in actions:
        if (action.group, action.data_id) in failed:
            continue
        try:
            await _run(store, _space(namespace), action)
        except (RegistryUnavailable, ConfigRefused) as exc:
            failed.add((action.group, action.data_id))
            errors.append(f"{action.kind} {action.group}/{action.data_id}: {exc}")
    return "; ".join(errors) if errors else None


async def _run(store: ConfigStore, namespace: str, action: ConfigAction) -> None:
    key = ConfigKey(namespace, action.group, action.data_id)
    if action.kind == "publish":
        md5 = await store.publish(key, action.content, action.type)
        if action.md5 and md5 != action.md5:
            raise ConfigRefused(f"read back md5 {md5}, published {action.md5}")
    elif action.kind == "save-drift":
        stored = await store.read(key)
        if stored is None or stored.md5 != action.md5:
            return  # edited again (or gone) meanwhile: the next read shows what is there now
        saved = await store.publish(ConfigKey(namespace, action.save_to, action.data_id), stored.content, "text")
        if saved != action.md5:
            raise ConfigRefused(f"the saved copy reads back md5 {saved}, not {action.md5}")
    else:
        await store.delete(key)


def _space(namespace: str) -> str:
    return "" if namespace == "public" else namespace
