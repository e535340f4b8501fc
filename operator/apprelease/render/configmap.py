"""Config files → an immutable ConfigMap named by content hash.

Immutable and content-named means a config change is a new object (a new revision), the old
revision's ConfigMap is still there for rollback, and the kubelet need not watch it.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import AppRelease
from ..api.workload import ConfigFiles
from . import labels
from .deployment import RenderError
from .hashing import config_hash
from .naming import configmap_name
from .owner import child_metadata

# What Kubernetes allows in a ConfigMap's values, in bytes.
CONFIGMAP_MAX_BYTES = 1024 * 1024


def render_configmap(app: AppRelease, config: ConfigFiles) -> dict[str, Any]:
    # The CRD bounds the values in characters (all the apiserver's CEL budget allows):
    # characters of up to 4 bytes in UTF-8 can still make too large a ConfigMap.
    size = sum(len(v.encode()) for v in (*config.files.values(), *config.env.values()))
    if size > CONFIGMAP_MAX_BYTES:
        raise RenderError(
            f"spec.config: files and env values are {size} bytes in UTF-8; a ConfigMap holds at most"
            f" {CONFIGMAP_MAX_BYTES} (1 MiB)"
        )
    digest = config_hash(config)
    meta = child_metadata(app, configmap_name(app.name, digest), labels={labels.CONFIG_HASH: digest})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": {**dict(sorted(config.files.items())), **dict(sorted(config.env.items()))},
    }
