"""Helpers shared by unit and e2e tests (no fixtures here)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = ROOT / "examples" / "order-service.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def expand(value: Any) -> Any:
    """'{{x300000}}' → 'x' * 300000: long values stay readable in the YAML."""
    if isinstance(value, str):
        return re.sub(r"\{\{(.)(\d+)\}\}", lambda m: m.group(1) * int(m.group(2)), value)
    if isinstance(value, dict):
        return {expand(k): expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def invalid_cases() -> list[dict[str, Any]]:
    base = load_yaml(DATA / "valid_base.yaml")
    cases = []
    for case in load_yaml(DATA / "invalid_appreleases.yaml"):
        cases.append({**case, "body": merge_patch(base, expand(case["patch"]))})
    return cases
