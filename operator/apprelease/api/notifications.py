"""Notifications: which sinks hear about which events (spec.notifications), and the record
each notification carries.

The sinks themselves (webhook URLs, signing secrets) live in a Secret of the namespace
(docs/notifications.md); an AppRelease or a ReleasePipeline only names them, so the spec
never holds a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field

from .base import DNS_LABEL_PATTERN, ApiModel

# What a rollout tells (derived from the planner's Events and phase changes:
# rollout/notifications.py holds the mapping).
RolloutKind = Literal[
    "Started", "StepReached", "Paused", "Promoted", "Aborted", "RolledBack", "Degraded",
    "RegistryGateWaiting", "AnalysisFailed",
]
# What a ReleasePipeline tells (rollout/pipeline.py's Notification records).
PipelineKind = Literal["WaitingForApproval", "StagePromoted", "Rejected", "ApprovalRefused", "PromotionFailed",
                       "AnalysisFailed"]
NotificationKind = Literal[RolloutKind, PipelineKind]

ROLLOUT_KINDS: tuple[str, ...] = get_args(RolloutKind)
PIPELINE_KINDS: tuple[str, ...] = get_args(PipelineKind)
# Without `on`: what a person wants to hear about without a message per step.
DEFAULT_ROLLOUT_KINDS = ("Started", "Paused", "Promoted", "Aborted", "RolledBack", "Degraded", "AnalysisFailed")
# The Secret of a namespace that holds its sinks.
SINKS_SECRET = "apprelease-notifications"
MAX_RULES = 16

SinkName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]


class _Rule(ApiModel):
    sink: SinkName = Field(
        description="A sink defined in the namespace's Secret apprelease-notifications"
        " (keys <sink>.url, <sink>.type, <sink>.secret; docs/notifications.md)."
    )

    def hears(self, kind: str) -> bool:
        on: list[str] | None = getattr(self, "on", None)
        return kind in (on if on is not None else self.defaults())

    def defaults(self) -> tuple[str, ...]:
        raise NotImplementedError


_SET = {"x-kubernetes-list-type": "set"}


class NotificationRule(_Rule):
    """One sink of the namespace's Secret `apprelease-notifications`, and the events it hears."""

    on: Annotated[list[RolloutKind], Field(max_length=len(ROLLOUT_KINDS), json_schema_extra=_SET)] | None = Field(
        None,
        description="The events this sink hears (default: Started, Paused, Promoted, Aborted, RolledBack,"
        " Degraded, AnalysisFailed).",
    )

    def defaults(self) -> tuple[str, ...]:
        return DEFAULT_ROLLOUT_KINDS


class PipelineNotificationRule(_Rule):
    """One sink of the pipeline namespace's Secret `apprelease-notifications`, and the events it hears."""

    on: Annotated[list[PipelineKind], Field(max_length=len(PIPELINE_KINDS), json_schema_extra=_SET)] | None = Field(
        None, description="The events this sink hears (default: all of them).",
    )

    def defaults(self) -> tuple[str, ...]:
        return PIPELINE_KINDS


def _unique_sinks(rules: list[Any]) -> list[Any]:
    names = [rule.sink for rule in rules]
    if len(set(names)) != len(names):
        raise ValueError("each sink is listed once (put every event it hears in its `on`)")
    return rules


# One rule per sink: the apiserver rejects a second one ("Duplicate value").
_BY_SINK = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["sink"]}
Rules = Annotated[list[NotificationRule], Field(max_length=MAX_RULES, json_schema_extra=_BY_SINK),
                  AfterValidator(_unique_sinks)]
PipelineRules = Annotated[list[PipelineNotificationRule], Field(max_length=MAX_RULES, json_schema_extra=_BY_SINK),
                          AfterValidator(_unique_sinks)]


@dataclass(frozen=True)
class NotificationFacts:
    """One notification: what happened to which app or pipeline, built by the pure core and
    sent by the controller (the same record is the body of a plain JSON sink)."""

    kind: str
    namespace: str
    name: str
    reason: str  # the Event reason behind it (CanaryStarted, StepCompleted, ...)
    message: str  # what happened and why, in a sentence
    at: datetime
    subject: Literal["AppRelease", "ReleasePipeline"] = "AppRelease"
    revision: int | None = None
    image: str = ""
    step: str = ""  # canary step k/n
    weight: int | None = None
    phase: str = ""
    stage: str = ""  # pipelines: the stage concerned
    actor: str = ""  # pipelines: who approved or rejected

    @property
    def warning(self) -> bool:
        return self.kind in ("Aborted", "RolledBack", "Degraded", "AnalysisFailed", "Rejected",
                             "ApprovalRefused", "PromotionFailed")

    def to_wire(self, console_url: str = "") -> dict[str, Any]:
        wire: dict[str, Any] = {
            "kind": self.kind, "subject": self.subject, "namespace": self.namespace, "name": self.name,
            "reason": self.reason, "message": self.message, "at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        optional = {"revision": self.revision, "image": self.image, "step": self.step, "weight": self.weight,
                    "phase": self.phase, "stage": self.stage, "actor": self.actor, "url": console_url}
        wire.update({k: v for k, v in optional.items() if v not in (None, "")})
        return wire
