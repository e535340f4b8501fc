"""Content hashes that name revisions and config maps.

Hashes are over canonical JSON of the wire form, so field order and YAML formatting never
create a new revision, while any change of content does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.spec import RevisionTemplate
from ..api.workload import ConfigFiles

HASH_LENGTH = 10


def content_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def revision_hash(template: RevisionTemplate) -> str:
    # Defaults are left out so that adding a defaulted field to the API in a later version
    # does not turn every running app into a new revision.
    wire = template.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json")
    return content_hash(wire)


def config_hash(config: ConfigFiles) -> str:
    return content_hash({"files": dict(config.files), "env": dict(config.env)})
