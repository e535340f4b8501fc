"""KWOK Stage objects: how fake nodes and pods move through their lifecycle.

Run as the plain `kwok` binary, KWOK has no built-in stages: every behaviour comes from
here. The node stages follow KWOK's own defaults (kustomize/stage/node/{fast,
heartbeat-with-lease} in sigs.k8s.io/kwok v0.8.0). Pods behave like a kubelet's where our
tests need it; our e2e tests select other behaviours per pod with the label
`e2e.apprelease.io/behavior`:

    any pod       Pending -> Running, pod IP assigned, containers started but not ready;
                  containers ready at startTime + the annotation `e2e.apprelease.io/ready-after`
                  (Go duration; default 300ms, 5s with behavior slow-ready)
    not-ready     Pending -> Running, never ready, containers in CrashLoopBackOff with
                  restartCount +1 every `e2e.apprelease.io/restart-interval` (default 3s)
    Job pods      Ready -> Succeeded (what KWOK's pod-complete does)

Readiness as a kubelet computes it: Ready = ContainersReady and every
`spec.readinessGates[].conditionType` condition is "True". Gate conditions belong to
whoever PATCHes pods/status with them; KWOK reads them and never writes them (its status
patches are strategic merge patches - KWOK's default for pods - and `conditions` merge by
type, so a condition missing from a patch is left alone). A gate going False takes Ready
back to False, True again makes it True, also while the pod terminates.

Termination as a kubelet: a deleted Running pod keeps running (Ready unchanged: a kubelet
keeps probing readiness during termination; EndpointSlices mark it `ready: false,
terminating: true` on their own) until its containers' `lifecycle.preStop.sleep.seconds` has
passed (the longest; capped by the grace period), then its containers stop and the pod is
deleted, so "containers stopped" is "pod gone". Without a preStop hook containers exit within
1 s (never later than the grace period). The stop time is recorded on the pod as the
annotation `e2e.apprelease.io/containers-stop-at` (RFC 3339) when the deletion is first
seen. Pods that never started are deleted at once (within 1 s).

The selectors are mutually exclusive, so exactly one stage applies to a pod at any time.
A stage re-applies whenever its patch leaves the pod matching it again: that is how the
restart counter keeps growing. KWOK recomputes a matching stage's delay on every update of
the pod, so delays are counted to absolute times (startTime + ready-after, the recorded stop
time), never from "now". Status templates are Go templates rendered by KWOK per pod (KWOK's
API has no other form); everything around them is plain data dumped with PyYAML.
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

CONTAINERS_STOP_AT_ANNOTATION = "e2e.apprelease.io/containers-stop-at"

# Containers become ready this long after the pod started, unless the pod says otherwise.
DEFAULT_START_DELAY_MS = 300
DEFAULT_SLOW_READY_AFTER_MS = 5_000
DEFAULT_RESTART_INTERVAL_MS = 3_000
# Our fake containers without a preStop hook "exit" within this many seconds of SIGTERM
# (never later than the pod's grace period): deletes are quick, yet observable.
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
_CONTAINERS_READY = '.status.conditions.[] | select( .type == "ContainersReady" ) | .status'
_STOP_AT = f'.metadata.annotations["{CONTAINERS_STOP_AT_ANNOTATION}"]'
# True when a running pod with ready containers shows a Ready condition other than the one
# its readiness gates call for (the kubelet's rule, see CONDITIONS_READY_BY_GATES).
_READY_DISAGREES_WITH_GATES = """\
([.status.conditions[]? | select(.type == "ContainersReady" and .status == "True")] | length > 0)
  as $containersReady
| [.status.conditions[]? | select(.status == "True") | .type] as $trueConditions
| (([.spec.readinessGates[]?.conditionType] - $trueConditions) | length == 0) as $gatesReady
| ([.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length > 0)
  as $ready
| .status.phase == "Running" and $containersReady and ($ready != $gatesReady)"""
# A running pod being deleted whose stop time is not recorded yet.
_STOP_NOT_SCHEDULED = (
    f'.metadata.deletionTimestamp != null and .status.phase == "Running" and {_STOP_AT} == null'
)


def _match(key: str, operator: str, values: list[str] | None = None) -> dict[str, Any]:
    requirement: dict[str, Any] = {"key": key, "operator": operator}
    if values is not None:
        requirement["values"] = values
    return {"jq": requirement}


def _status_patch(template: str) -> dict[str, Any]:
    # No `type`: KWOK's default for pods is a strategic merge patch (conditions merge by type).
    return {"patch": {"subresource": "status", "root": "status", "template": template}}


def _metadata_patch(template: str) -> dict[str, Any]:
    return {"patch": {"root": "metadata", "template": template}}


def _delay(default_ms: int, from_jq: str | None = None) -> dict[str, Any]:
    delay: dict[str, Any] = {"durationMilliseconds": default_ms}
    if from_jq is not None:
        # A missing/null value falls back to durationMilliseconds; strings are Go durations.
        delay["durationFrom"] = {"jq": {"expression": from_jq}}
    return delay


def _ready_deadline_delay(default_ms: int) -> dict[str, Any]:
    """Delay until startTime + ready-after (not "ready-after from now"): an unrelated update
    of the pod while it waits re-queues the stage, and must not push readiness further out."""
    annotation = f"'{READY_AFTER_ANNOTATION}'"
    expression = (
        f"{annotation} in self.metadata.annotations"
        f" ? self.status.startTime + duration(self.metadata.annotations[{annotation}]) - Now()"
        f" : self.status.startTime + duration('{default_ms}ms') - Now()"
    )
    return {
        "durationMilliseconds": default_ms,
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
    deleting = _match(_DELETION, "Exists")
    containers_not_ready = _match(_CONTAINERS_READY, "NotIn", ["True"])
    ready_agrees = _match(_READY_DISAGREES_WITH_GATES, "NotIn", ["true"])
    stop_not_scheduled = _match(_STOP_NOT_SCHEDULED, "In", ["true"])
    return [
        _stage(
            "pod-start",
            "Pod",
            [_alive(), pending, _match(_BEHAVIOR, "NotIn", [BEHAVIOR_NOT_READY])],
            [_status_patch(tpl.POD_START)],
        ),
        _stage(
            "pod-containers-ready",
            "Pod",
            [
                _alive(),
                running,
                containers_not_ready,
                _match(_BEHAVIOR, "NotIn", _SPECIAL_BEHAVIORS),
            ],
            [_status_patch(tpl.POD_CONTAINERS_READY)],
            delay=_ready_deadline_delay(DEFAULT_START_DELAY_MS),
        ),
        _stage(
            "pod-slow-ready-containers-ready",
            "Pod",
            [
                _alive(),
                running,
                containers_not_ready,
                _match(_BEHAVIOR, "In", [BEHAVIOR_SLOW_READY]),
            ],
            [_status_patch(tpl.POD_CONTAINERS_READY)],
            delay=_ready_deadline_delay(DEFAULT_SLOW_READY_AFTER_MS),
        ),
        _stage(
            "pod-readiness-gates",
            "Pod",
            [
                _match(_READY_DISAGREES_WITH_GATES, "In", ["true"]),
                _match(_STOP_NOT_SCHEDULED, "NotIn", ["true"]),
            ],
            [_status_patch(tpl.POD_READINESS_GATES)],
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
                ready_agrees,
                _match(_OWNER_KINDS, "In", ["Job"]),
            ],
            [_status_patch(tpl.POD_COMPLETE)],
        ),
        _stage(
            "pod-terminating",
            "Pod",
            [deleting, stop_not_scheduled],
            [
                _metadata_patch(
                    tpl.pod_containers_stop_at(CONTAINERS_STOP_AT_ANNOTATION, TERMINATION_SECONDS)
                )
            ],
        ),
        _stage(
            "pod-containers-stopped",
            "Pod",
            [deleting, running, _match(_STOP_AT, "Exists"), ready_agrees],
            # Real kubelets confirm the deletion once containers exit; finalizers still apply.
            [{"delete": True}],
            # An RFC 3339 time: KWOK waits until then (at once if it has passed).
            delay=_delay(0, _STOP_AT),
        ),
        _stage(
            "pod-delete-unstarted",
            "Pod",
            [deleting, _match(_PHASE, "NotIn", ["Running"])],
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
