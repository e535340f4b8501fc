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


class MergeError(ValueError):
    """The overlay's shape does not fit where it goes (a string where a map must be)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def _merge_named(base: list[Any], overlay: list[Any], key: str, path: str) -> list[Any]:
    merged = [copy.deepcopy(item) for item in base]
    index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for position, item in enumerate(overlay):
        if not isinstance(item, dict):
            raise MergeError(f"{path}[{position}]", f"must be an object, not {type(item).__name__}")
        if item.get(key) in index:
            pos = index[item[key]]
            merged[pos] = merge(merged[pos], item, f"{path}[{position}]")
        else:
            merged.append(copy.deepcopy(item))
    return merged


def merge(base: dict[str, Any], overlay: dict[str, Any], path: str = "") -> dict[str, Any]:
    """``overlay`` merged into ``base``; MergeError (with the path) where their shapes clash:
    a map we generate (metadata, spec, a container) cannot become a string or a list."""
    if not isinstance(overlay, dict):
        raise MergeError(path, f"must be an object, not {type(overlay).__name__}")
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        current = result.get(key)
        where = f"{path}.{key}"
        if isinstance(current, dict):
            if not isinstance(value, dict):
                raise MergeError(where, f"must be an object, not {type(value).__name__}")
            result[key] = merge(current, value, where)
        elif isinstance(current, list) and key in _MERGE_KEY_BY_LIST:
            if not isinstance(value, list):
                raise MergeError(where, f"must be a list, not {type(value).__name__}")
            result[key] = _merge_named(current, value, _MERGE_KEY_BY_LIST[key], where)
        else:
            result[key] = copy.deepcopy(value)
    return result
