"""Config files → an immutable ConfigMap named by content hash.

Immutable and content-named means a config change is a new object (a new revision), the old
revision's ConfigMap is still there for rollback, and the kubelet need not watch it.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import AppRelease
from ..api.workload import ConfigFiles
from . import labels
from .hashing import config_hash
from .naming import configmap_name
from .owner import child_metadata


def render_configmap(app: AppRelease, config: ConfigFiles) -> dict[str, Any]:
    digest = config_hash(config)
    meta = child_metadata(app, configmap_name(app.name, digest), labels={labels.CONFIG_HASH: digest})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": {**dict(sorted(config.files.items())), **dict(sorted(config.env.items()))},
    }
