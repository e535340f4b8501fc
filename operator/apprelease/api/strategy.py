"""How a new revision reaches the pods: rolling, recreate, or canary steps."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import (
    DURATION_PATTERN,
    ApiModel,
    cel,
    check_exactly_one,
    exactly_one,
    parse_duration,
    validations,
)


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    AfterValidator(_valid_duration),
    Field(
        max_length=32,
        json_schema_extra=validations(
            cel("self.matches('" + DURATION_PATTERN + "')",
                "must be a duration such as 30s, 5m or 1h30m")
        ),
    ),
]
IntOrPercent = Annotated[
    int | Annotated[str, Field(pattern=r"^[0-9]+%$", max_length=5)],
    Field(
        description="A number of pods or a percentage such as 25%.",
        json_schema_extra=validations(
            cel("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",
                "must be a number of pods or a percentage such as 25%")
        ),
    ),
]


class RollingStrategy(ApiModel):
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"


class RecreateStrategy(ApiModel):
    pass


class Pause(ApiModel):
    duration: Duration | None = Field(
        None, description="Resume by itself after this long; without it, wait for promote."
    )

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


_STEP_MESSAGE = "each step needs exactly one of setWeight, pause"


class CanaryStep(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(exactly_one(("setWeight", "pause"), _STEP_MESSAGE))
    }

    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    pause: Pause | None = None

    @model_validator(mode="after")
    def _one_action(self) -> CanaryStep:
        check_exactly_one(self, ("set_weight", "pause"), _STEP_MESSAGE)
        return self


class CanaryStrategy(ApiModel):
    steps: Annotated[list[CanaryStep], Field(max_length=64)] = Field(default_factory=list)
    traffic_routing: Literal["replicas", "nginx"] = Field(
        "replicas",
        description=(
            "replicas: the Service selects stable and canary pods, so the replica ratio is the"
            " weight. nginx: stable/canary Services and an nginx canary Ingress with the exact"
            " weight."
        ),
    )
    max_restarts: Annotated[int, Field(ge=0)] = Field(
        3, description="Abort when a canary container restarts more often than this."
    )


class Strategy(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("[has(self.rolling), has(self.recreate), has(self.canary)].filter(x, x).size() <= 1",
                "set only one of rolling, recreate, canary"),
        )
    }

    rolling: RollingStrategy | None = None
    recreate: RecreateStrategy | None = None
    canary: CanaryStrategy | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Strategy:
        if sum(x is not None for x in (self.rolling, self.recreate, self.canary)) > 1:
            raise ValueError("set only one of rolling, recreate, canary")
        return self

    @property
    def kind(self) -> Literal["rolling", "recreate", "canary"]:
        if self.canary is not None:
            return "canary"
        if self.recreate is not None:
            return "recreate"
        return "rolling"
