"""KWOK Stage objects: how fake nodes and pods move through their lifecycle.

Run as the plain `kwok` binary, KWOK has no built-in stages: every behaviour comes from
here. The node stages and the default pod path follow KWOK's own defaults
(kustomize/stage/node/{fast,heartbeat-with-lease}, kustomize/stage/pod/fast in
sigs.k8s.io/kwok v0.8.0); the rest adds behaviours our e2e tests select per pod with the
label `e2e.apprelease.io/behavior`:

    (none/other)  Pending -> Running + Ready at once, pod IP assigned
    slow-ready    Pending -> Running, not Ready -> Ready at startTime + the pod annotation
                  `e2e.apprelease.io/ready-after` (Go duration, default 5s)
    not-ready     Pending -> Running, never Ready, containers in CrashLoopBackOff with
                  restartCount +1 every `e2e.apprelease.io/restart-interval` (default 3s)
    any pod       deletionTimestamp set -> removed after min(grace period, 1 s)
    Job pods      Ready -> Succeeded (what KWOK's pod-complete does)

The selectors are mutually exclusive, so exactly one stage applies to a pod at any time.
A stage re-applies whenever its patch leaves the pod matching it again: that is how the
restart counter keeps growing. Status templates are Go templates rendered by KWOK per pod
(KWOK's API has no other form); everything around them is plain data dumped with PyYAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from apprelease_dev import kwok_templates as tpl

STAGE_API_VERSION = "kwok.x-k8s.io/v1alpha1"

BEHAVIOR_LABEL = "e2e.apprelease.io/behavior"
BEHAVIOR_NOT_READY = "not-ready"
BEHAVIOR_SLOW_READY = "slow-ready"
READY_AFTER_ANNOTATION = "e2e.apprelease.io/ready-after"
RESTART_INTERVAL_ANNOTATION = "e2e.apprelease.io/restart-interval"

DEFAULT_READY_AFTER_MS = 5_000
DEFAULT_RESTART_INTERVAL_MS = 3_000
# Our fake containers "exit" within this many seconds of SIGTERM (never later than the
# pod's grace period): deletes are quick, yet a terminating pod is observable.
TERMINATION_SECONDS = 1
# KWOK's defaults: heartbeats via Lease, full status refresh every 10 min (+ jitter).
NODE_STATUS_REFRESH_MS = 600_000
NODE_STATUS_REFRESH_JITTER_MS = 610_000

# jq paths into the object (KWOK evaluates them against the object as JSON).
_DELETION = ".metadata.deletionTimestamp"
_PHASE = ".status.phase"
_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'
_BEHAVIOR = f'.metadata.labels["{BEHAVIOR_LABEL}"]'
_OWNER_KINDS = ".metadata.ownerReferences.[].kind"
_SPECIAL_BEHAVIORS = [BEHAVIOR_NOT_READY, BEHAVIOR_SLOW_READY]


def _match(key: str, operator: str, values: list[str] | None = None) -> dict[str, Any]:
    requirement: dict[str, Any] = {"key": key, "operator": operator}
    if values is not None:
        requirement["values"] = values
    return {"jq": requirement}


def _status_patch(template: str) -> dict[str, Any]:
    return {"patch": {"subresource": "status", "root": "status", "template": template}}


def _delay(default_ms: int, from_jq: str | None = None) -> dict[str, Any]:
    delay: dict[str, Any] = {"durationMilliseconds": default_ms}
    if from_jq is not None:
        # A missing/null value falls back to durationMilliseconds; strings are Go durations.
        delay["durationFrom"] = {"jq": {"expression": from_jq}}
    return delay


def _ready_deadline_delay() -> dict[str, Any]:
    """Delay until startTime + ready-after (not "ready-after from now"): an unrelated update
    of the pod while it waits re-queues the stage, and must not push readiness further out."""
    annotation = f"'{READY_AFTER_ANNOTATION}'"
    expression = (
        f"{annotation} in self.metadata.annotations"
        f" ? self.status.startTime + duration(self.metadata.annotations[{annotation}]) - Now()"
        f" : self.status.startTime + duration('{DEFAULT_READY_AFTER_MS}ms') - Now()"
    )
    return {
        "durationMilliseconds": DEFAULT_READY_AFTER_MS,
        "durationFrom": {"cel": {"expression": expression}},
    }


def _stage(
    name: str,
    kind: str,
    match: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    delay: dict[str, Any] | None = None,
    immediate_next_stage: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": match},
    }
    if delay is not None:
        spec["delay"] = delay
    spec["steps"] = steps
    if immediate_next_stage:
        spec["immediateNextStage"] = True
    return {
        "apiVersion": STAGE_API_VERSION,
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def _alive() -> dict[str, Any]:
    return _match(_DELETION, "DoesNotExist")


def node_stages() -> list[dict[str, Any]]:
    return [
        _stage(
            "node-initialize",
            "Node",
            [_match(_READY, "NotIn", ["True"])],
            [_status_patch(tpl.NODE_INITIALIZE)],
        ),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [_match(_PHASE, "In", ["Running"]), _match(_READY, "In", ["True"])],
            [_status_patch(tpl.NODE_HEARTBEAT)],
            delay={
                "durationMilliseconds": NODE_STATUS_REFRESH_MS,
                "jitterDurationMilliseconds": NODE_STATUS_REFRESH_JITTER_MS,
            },
            immediate_next_stage=True,
        ),
    ]


def pod_stages() -> list[dict[str, Any]]:
    pending = _match(_PHASE, "In", ["Pending"])
    running = _match(_PHASE, "In", ["Running"])
    not_ready = _match(_READY, "NotIn", ["True"])
    return [
        _stage(
            "pod-ready",
            "Pod",
            [_alive(), pending, not_ready, _match(_BEHAVIOR, "NotIn", _SPECIAL_BEHAVIORS)],
            [_status_patch(tpl.POD_START_READY)],
        ),
        _stage(
            "pod-slow-ready-start",
            "Pod",
            [_alive(), pending, _match(_BEHAVIOR, "In", [BEHAVIOR_SLOW_READY])],
            [_status_patch(tpl.POD_START_NOT_READY)],
        ),
        _stage(
            "pod-slow-ready-become-ready",
            "Pod",
            [_alive(), running, not_ready, _match(_BEHAVIOR, "In", [BEHAVIOR_SLOW_READY])],
            [_status_patch(tpl.POD_BECOME_READY)],
            delay=_ready_deadline_delay(),
        ),
        _stage(
            "pod-crashloop-start",
            "Pod",
            [_alive(), pending, _match(_BEHAVIOR, "In", [BEHAVIOR_NOT_READY])],
            [_status_patch(tpl.POD_START_CRASHLOOP)],
        ),
        _stage(
            "pod-crashloop-restart",
            "Pod",
            [_alive(), running, _match(_BEHAVIOR, "In", [BEHAVIOR_NOT_READY])],
            [_status_patch(tpl.POD_RESTART)],
            delay=_delay(
                DEFAULT_RESTART_INTERVAL_MS,
                f'.metadata.annotations["{RESTART_INTERVAL_ANNOTATION}"]',
            ),
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                _alive(),
                running,
                _match(_READY, "In", ["True"]),
                _match(_OWNER_KINDS, "In", ["Job"]),
            ],
            [_status_patch(tpl.POD_COMPLETE)],
        ),
        _stage(
            "pod-delete",
            "Pod",
            [_match(_DELETION, "Exists")],
            # Real kubelets confirm the deletion once containers exit; finalizers still apply.
            [{"delete": True}],
            delay=_delay(
                TERMINATION_SECONDS * 1000,
                f'"\\([.metadata.deletionGracePeriodSeconds // 0, {TERMINATION_SECONDS}] | min)s"',
            ),
        ),
    ]


def all_stages() -> list[dict[str, Any]]:
    return [*node_stages(), *pod_stages()]


class _LiteralBlockDumper(yaml.SafeDumper):
    """Multi-line strings (the templates) as `|` blocks, so the config file stays readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralBlockDumper.add_representer(str, _represent_str)


def write_stages_config(path: Path) -> Path:
    """Write all stages as one multi-document YAML file for `kwok --config`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        yaml.dump_all(all_stages(), handle, Dumper=_LiteralBlockDumper, sort_keys=False)
    return path
