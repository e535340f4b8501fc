"""The difference between two revisions: image, env, config files side by side, the rest; and
per app, between what a pipeline stage runs and the artifact a promotion would bring (the
console's pipeline page, `apprelease pipeline get`). Pure.

Secret references show as references (a revision never holds a Secret's value).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .pipeline import Artifact


@dataclass(frozen=True)
class FieldChange:
    field: str
    left: str
    right: str

    @property
    def changed(self) -> bool:
        return self.left != self.right


@dataclass(frozen=True)
class Line:
    left: str | None  # None: no line on this side
    right: str | None
    kind: str  # "same" | "changed" | "added" | "removed"


@dataclass(frozen=True)
class FileDiff:
    name: str
    lines: list[Line]
    changed: bool


@dataclass(frozen=True)
class RevisionDiff:
    left: int
    right: int
    fields: list[FieldChange]
    env: list[FieldChange]
    files: list[FileDiff]

    @property
    def identical(self) -> bool:
        return not any(f.changed for f in self.fields + self.env) and not any(f.changed for f in self.files)


def env_value(entry: Mapping[str, Any]) -> str:
    """What an env entry says, never a Secret's value (the AppRelease cannot hold one)."""
    if "value" in entry:
        return str(entry["value"])
    source = entry.get("valueFrom") or {}
    for kind, label in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
        if kind in source:
            ref = source[kind]
            return f"from {label} {ref.get('name')}/{ref.get('key')}"
    if "fieldRef" in source:
        return f"from field {source['fieldRef'].get('fieldPath')}"
    if "resourceFieldRef" in source:
        return f"from resource {source['resourceFieldRef'].get('resource')}"
    return ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def side_by_side(left: str, right: str) -> list[Line]:
    a, b = left.splitlines(), right.splitlines()
    lines: list[Line] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            lines += [Line(a[i], b[j], "same") for i, j in zip(range(i1, i2), range(j1, j2), strict=True)]
        elif op == "replace":
            for k in range(max(i2 - i1, j2 - j1)):
                old = a[i1 + k] if i1 + k < i2 else None
                new = b[j1 + k] if j1 + k < j2 else None
                lines.append(Line(old, new, "changed" if old is not None and new is not None
                                  else ("removed" if new is None else "added")))
        elif op == "delete":
            lines += [Line(a[i], None, "removed") for i in range(i1, i2)]
        else:
            lines += [Line(None, b[j], "added") for j in range(j1, j2)]
    return lines


_OTHER_FIELDS = ("imagePullPolicy", "command", "args", "ports", "envFrom", "resources", "readinessProbe",
                 "livenessProbe", "startupProbe", "restartAt", "podTemplate")


def diff(left_number: int, left: Mapping[str, Any], right_number: int, right: Mapping[str, Any]) -> RevisionDiff:
    """``left``/``right``: revision templates as stored (wire form, camelCase)."""
    fields = [FieldChange("image", _text(left.get("image")), _text(right.get("image")))]
    fields += [FieldChange(name, _text(left.get(name)), _text(right.get(name))) for name in _OTHER_FIELDS
               if left.get(name) or right.get(name)]
    left_config, right_config = left.get("config") or {}, right.get("config") or {}
    if left_config.get("mountPath") or right_config.get("mountPath"):
        fields.append(FieldChange("config mountPath", _text(left_config.get("mountPath")),
                                  _text(right_config.get("mountPath"))))
    left_env = {e["name"]: env_value(e) for e in left.get("env") or []}
    right_env = {e["name"]: env_value(e) for e in right.get("env") or []}
    for key, value in (left_config.get("env") or {}).items():
        left_env.setdefault(f"{key} (config)", value)
    for key, value in (right_config.get("env") or {}).items():
        right_env.setdefault(f"{key} (config)", value)
    env = [FieldChange(name, left_env.get(name, ""), right_env.get(name, ""))
           for name in sorted(left_env.keys() | right_env.keys())]
    left_files, right_files = left_config.get("files") or {}, right_config.get("files") or {}
    files = []
    for name in sorted(left_files.keys() | right_files.keys()):
        old, new = left_files.get(name, ""), right_files.get(name, "")
        files.append(FileDiff(name, side_by_side(old, new), old != new or (name in left_files) != (name in right_files)))
    return RevisionDiff(left_number, right_number, fields, env, files)


# Promotions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppDiff:
    """One app of a promotion: what the target stage runs now (left) and what would come."""

    app: str
    fields: list[FieldChange]
    config_files: list[FileDiff]
    nacos_items: list[FileDiff] = field(default_factory=list)
    new_app: bool = False

    @property
    def files(self) -> list[FileDiff]:
        return self.config_files + self.nacos_items

    @property
    def identical(self) -> bool:
        return not any(f.changed for f in self.fields) and not any(f.changed for f in self.files)

    def changes(self) -> list[str]:
        """What would change, one line each (the diff's text form): a field from → to, the
        config files and Nacos items by name."""
        return ([f"{f.field} {f.left or '(none)'} → {f.right or '(none)'}" for f in self.fields if f.changed]
                + [f"config file {f.name} changed" for f in self.config_files if f.changed]
                + [f"{f.name} changed" for f in self.nacos_items if f.changed])


def artifact_diffs(current: Mapping[str, Artifact | None], incoming: Mapping[str, Artifact]) -> list[AppDiff]:
    """Per app, the target's artifact against the one a promotion would apply: image, config
    files and Nacos config items, side by side (as the revision diff)."""
    diffs = []
    for app in sorted(incoming):
        now_running, coming = current.get(app), incoming[app]
        left = now_running.to_spec() if now_running else {}
        compared = diff(0, left, 0, coming.to_spec())
        nacos = _nacos_diffs(now_running.nacos if now_running else (), coming.nacos)
        diffs.append(AppDiff(app, compared.fields, compared.files, nacos, new_app=now_running is None))
    return diffs


def _nacos_diffs(left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]) -> list[FileDiff]:
    def by_key(items: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        return {f"Nacos {item.get('dataId')} ({item.get('group') or 'DEFAULT_GROUP'})":
                str(item.get("content") if item.get("content") is not None else f"from file {item.get('fromFile')}")
                for item in items}

    old, new = by_key(left), by_key(right)
    return [FileDiff(key, side_by_side(old.get(key, ""), new.get(key, "")), old.get(key) != new.get(key))
            for key in sorted(old.keys() | new.keys())]
