"""What a user can do to an AppRelease, shared by the CLI and the web console (and what
approving a pipeline's promotion would change, which both show).

Every action is a PATCH of the AppRelease (a spec field or a request annotation), so kubectl
and Git can do the same and RBAC's `patch appreleases` decides who may. An action is planned
purely (current object and history in, patch out) and then sent by the one client (`Kube`):
the CLI's, or the console's acting as the browser's user (on a thread of its pool).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import tenacity

from .k8s.client import RESOURCES, ApiError
from .k8s.history import from_controller_revision
from .render import labels
from .rollout import requests
from .rollout.diff import AppDiff, artifact_diffs
from .rollout.observed import RevisionRecord
from .rollout.pipeline import Artifact, artifact_store_name, stored_artifacts
from .rollout.rollback import rollback_patch, rollback_target
from .rollout.timefmt import format_time

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
CONFLICT_ATTEMPTS = 5


class ActionError(Exception):
    """The action cannot be planned (say, no revision to roll back to); nothing was sent."""


@dataclass(frozen=True)
class Patch:
    content_type: str
    body: Any


@dataclass(frozen=True)
class Planned:
    patch: Patch | None  # None: nothing to change
    message: str  # what happened, for the user


def nonce(now: datetime | None = None) -> str:
    """A fresh request value: the time (readable in kubectl) and a random suffix (unique)."""
    return f"{format_time(now or datetime.now(UTC))}-{secrets.token_hex(3)}"


def _annotation(key: str, value: str | None, resource_version: str | None = None) -> Patch:
    metadata: dict[str, Any] = {"annotations": {key: value}}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version  # a precondition: 409 if it moved on
    return Patch(MERGE, {"metadata": metadata})


def _spec(fields: dict[str, Any]) -> Patch:
    return Patch(MERGE, {"spec": fields})


@dataclass(frozen=True)
class Action:
    """Base: an action that needs neither the object nor its history."""

    verb: str = field(init=False, default="")
    needs_app: bool = field(init=False, default=False)
    needs_history: bool = field(init=False, default=False)

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        raise NotImplementedError


@dataclass(frozen=True)
class Promote(Action):
    full: bool = False
    verb: str = field(init=False, default="promote")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        value = requests.request_value(self.full, nonce(now))
        what = "full promotion" if self.full else "promotion"
        return Planned(_annotation(requests.PROMOTE, value), f"{name}: {what} requested")


@dataclass(frozen=True)
class Pause(Action):
    paused: bool = True
    verb: str = field(init=False, default="pause")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_spec({"paused": self.paused}), f"{name} {'paused' if self.paused else 'resumed'}")


@dataclass(frozen=True)
class Abort(Action):
    verb: str = field(init=False, default="abort")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_annotation(requests.ABORT, nonce(now)), f"{name}: abort requested")


@dataclass(frozen=True)
class Retry(Action):
    verb: str = field(init=False, default="retry")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_annotation(requests.RETRY, nonce(now)), f"{name}: retry requested")


@dataclass(frozen=True)
class Restart(Action):
    verb: str = field(init=False, default="restart")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_spec({"restartAt": format_time(now)}), f"{name}: restart requested")


@dataclass(frozen=True)
class TakeDown(Action):
    """spec.takenDown: every registry instance disabled, drained, scaled to zero (replicas
    kept); False brings the app back up."""

    down: bool = True
    verb: str = field(init=False, default="take-down")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_spec({"takenDown": self.down}),
                       f"{name}: {'take down' if self.down else 'bring up'} requested")


@dataclass(frozen=True)
class SetImage(Action):
    """spec.image (as `kubectl set image`): a new revision, rolled out by the app's strategy."""

    image: str = ""
    verb: str = field(init=False, default="set-image")

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        return Planned(_spec({"image": self.image}), f"{name}: image set to {self.image}")


@dataclass(frozen=True)
class SetOffline(Action):
    """Add pods to (or remove them from) the apprelease.io/offline annotation."""

    pods: tuple[str, ...] = ()
    offline: bool = True
    verb: str = field(init=False, default="offline")
    needs_app: bool = field(init=False, default=True)

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        assert app is not None
        meta = app["metadata"]
        current = [p for p in (meta.get("annotations") or {}).get(requests.OFFLINE, "").split(",") if p]
        if self.offline:
            wanted = sorted(set(current) | set(self.pods))
        else:
            wanted = [p for p in current if p not in self.pods]
        patch = _annotation(requests.OFFLINE, ",".join(wanted) or None, meta["resourceVersion"])
        return Planned(patch, f"{name}: offline pods: {', '.join(wanted) or 'none'}")


@dataclass(frozen=True)
class Rollback(Action):
    to_revision: int | None = None
    verb: str = field(init=False, default="rollback")
    needs_app: bool = field(init=False, default=True)
    needs_history: bool = field(init=False, default=True)

    def plan(self, name: str, app: Mapping[str, Any] | None,
             history: Sequence[RevisionRecord], now: datetime) -> Planned:
        assert app is not None
        status = app.get("status") or {}
        try:
            target = rollback_target(
                history,
                current_hash=status.get("currentRevisionHash"),
                stable_hash=status.get("stableRevisionHash"),
                to_revision=self.to_revision,
            )
        except LookupError as exc:
            raise ActionError(str(exc)) from None
        ops = rollback_patch(app.get("spec") or {}, target.template)
        if not ops:
            return Planned(None, f"{name}: already describes revision {target.number}")
        # resourceVersion in the patched object is a precondition: 409 if the app moved on.
        ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion",
                       "value": app["metadata"]["resourceVersion"]})
        return Planned(Patch(JSON_PATCH, ops),
                       f"{name}: rolling back to revision {target.number} ({target.template.image})")


def history_selector(name: str) -> str:
    return f"{labels.INSTANCE}={name},{labels.MANAGED_BY}={labels.MANAGER}"


def history_of(controller_revisions: Sequence[Mapping[str, Any]]) -> list[RevisionRecord]:
    return sorted((from_controller_revision(i) for i in controller_revisions), key=lambda r: r.number)


def _path(namespace: str, name: str) -> str:
    return RESOURCES["AppRelease"].path(namespace, name)


def _retrying_conflicts() -> dict[str, Any]:
    # The operator writes status all the time; a write between our read and our patch is a
    # conflict, and the right answer is to read again and plan again, not to fail.
    return {
        "retry": tenacity.retry_if_exception(lambda exc: isinstance(exc, ApiError) and exc.conflict),
        "stop": tenacity.stop_after_attempt(CONFLICT_ATTEMPTS),
        "wait": tenacity.wait_random(0.05, 0.3),
        "reraise": True,
    }


class Client(Protocol):
    """What an action needs of a client (k8s.client.Kube has it)."""

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]: ...
    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]: ...
    def request(self, method: str, path: str, *, body: Any = None, content_type: str = ...,
                resource: str = ...) -> Any: ...


def perform(kube: Client, namespace: str, name: str, action: Action,
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """Read what the action needs, plan, patch; again on a conflict. Returns the message."""

    def once() -> str:
        app = kube.get("AppRelease", namespace, name) if action.needs_app else None
        history = (history_of(kube.list("ControllerRevision", namespace, labelSelector=history_selector(name)))
                   if action.needs_history else [])
        planned = action.plan(name, app, history, now())
        if planned.patch is not None:
            kube.request("PATCH", _path(namespace, name), body=planned.patch.body,
                         content_type=planned.patch.content_type, resource="AppRelease")
        return planned.message

    return tenacity.Retrying(**_retrying_conflicts())(once)


ACTIONS: dict[str, Callable[..., Action]] = {
    "promote": lambda: Promote(full=False),
    "promote-full": lambda: Promote(full=True),
    "pause": lambda: Pause(paused=True),
    "resume": lambda: Pause(paused=False),
    "abort": Abort,
    "retry": Retry,
    "restart": Restart,
    "take-down": lambda: TakeDown(down=True),
    "bring-up": lambda: TakeDown(down=False),
}
"""Actions without arguments, by the name the console's buttons post."""


def promotion_diff(kube: Client, pipeline_namespace: str, pipeline: str, stage_namespace: str,
                   digest: str) -> list[AppDiff] | str:
    """Per app, what promoting the stored artifact ``digest`` into the stage of
    ``stage_namespace`` would change; or why that cannot be shown (read as the caller: a user
    may not read the store, or it was pruned)."""
    try:
        data = kube.get("ConfigMap", pipeline_namespace, artifact_store_name(pipeline, digest)).get("data") or {}
        incoming = stored_artifacts(data)
        bodies = {item["metadata"]["name"]: item for item in kube.list("AppRelease", stage_namespace)}
    except ApiError as exc:
        return f"cannot show what would change: {exc.message or exc.reason}"
    except ValueError as exc:
        return f"the stored artifact {digest} is not readable: {exc}"
    current = {app: Artifact.of_spec(bodies[app].get("spec") or {}) if app in bodies else None for app in incoming}
    return artifact_diffs(current, incoming)
