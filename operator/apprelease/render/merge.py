"""Merge the user's partial ``podTemplate`` into the generated pod template.

Maps merge recursively; lists of named items (containers, volumes, env, volumeMounts, ports)
merge by name so a user can add a sidecar or patch the main container; any other list
(tolerations, imagePullSecrets) is taken from the user as given.
"""

from __future__ import annotations

import copy
from typing import Any

_MERGE_KEY_BY_LIST = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}


def _merge_named(base: list[Any], overlay: list[Any], key: str) -> list[Any]:
    merged = [copy.deepcopy(item) for item in base]
    index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in overlay:
        if isinstance(item, dict) and item.get(key) in index:
            pos = index[item[key]]
            merged[pos] = merge(merged[pos], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        current = result.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            result[key] = merge(current, value)
        elif isinstance(current, list) and isinstance(value, list) and key in _MERGE_KEY_BY_LIST:
            result[key] = _merge_named(current, value, _MERGE_KEY_BY_LIST[key])
        else:
            result[key] = copy.deepcopy(value)
    return result
