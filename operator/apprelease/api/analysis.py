"""Analysis: where a rollout asks its metrics, and what they answered (status.analysis).

A canary ``analysis`` step (or a strategy's background ``analysis``) names AnalysisTemplates
(api/analysis_template.py) and the arguments they take; the operator measures each metric of
the templates as they say (interval, count) and decides: Successful moves on, Failed aborts,
Inconclusive pauses for a person. status.analysis keeps the run's counts in full and the last
``MAX_MEASUREMENTS`` measurements of each metric (an etcd object: bounded).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import DNS_SUBDOMAIN, ApiModel, cel, validations

MAX_MEASUREMENTS = 10
ARG_NAME_PATTERN = r"^[a-zA-Z_][-a-zA-Z0-9_]{0,62}$"
# Arguments the operator fills from the release; a user argument of the same name is refused.
RESERVED_ARGS = ("app", "namespace", "revision", "canary-hash", "stable-hash")

ArgName = Annotated[str, Field(min_length=1, max_length=63, pattern=ARG_NAME_PATTERN)]
TemplateName = Annotated[str, Field(min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")]


class TemplateRef(ApiModel):
    template_name: TemplateName
    cluster_scope: bool = Field(
        False, description="A ClusterAnalysisTemplate instead of an AnalysisTemplate of the AppRelease's namespace.")


class RunArg(ApiModel):
    name: ArgName
    value: Annotated[str, Field(max_length=1024)]


_RESERVED_MESSAGE = "args must not use the reserved names " + ", ".join(RESERVED_ARGS) + " (the operator fills them)"


class AnalysisRef(ApiModel):
    """Which templates to run, with which arguments (besides the reserved ones the operator
    fills: app, namespace, revision, canary-hash, stable-hash)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.args) || self.args.all(a, !(a.name in " + str(list(RESERVED_ARGS)) + "))",
                _RESERVED_MESSAGE, field_path=".args"),
        )
    }

    templates: Annotated[list[TemplateRef], Field(min_length=1, max_length=8)]
    args: Annotated[list[RunArg], Field(max_length=32)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_reserved(self) -> AnalysisRef:
        if any(a.name in RESERVED_ARGS for a in self.args):
            raise ValueError(_RESERVED_MESSAGE)
        return self


class BackgroundAnalysis(AnalysisRef):
    starting_step: Annotated[int, Field(ge=0, le=64)] = Field(
        0, description="Canary: start when this step (0-based) begins; 0 from the start of the rollout.")


# Status -------------------------------------------------------------------------------------

MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error"]
RunPhase = Literal["Running", "Successful", "Failed", "Inconclusive"]


class _Status(ApiModel):
    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "ignore"})


class MeasurementStatus(_Status):
    phase: MeasurementPhase
    at: str
    value: str = Field("", description="The query's result as text, e.g. [0.012].")
    message: str = ""


class MetricStatus(_Status):
    name: str
    template: str = ""
    phase: RunPhase = "Running"
    count: int = Field(0, description="Measurements taken so far (all of them; only the last ones are kept).")
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    measurements: list[MeasurementStatus] = Field(default_factory=list)
    message: str = ""


class AnalysisRunStatus(_Status):
    run: str = Field(description="Which run: revision hash, where it runs (step k or background) and since when.")
    phase: RunPhase = "Running"
    message: str = ""
    started_at: str = ""
    metrics: list[MetricStatus] = Field(default_factory=list)


class AnalysisStatus(_Status):
    """The canary revision's analysis runs: the current (or last) analysis step's, and the
    background one's."""

    step: AnalysisRunStatus | None = None
    background: AnalysisRunStatus | None = None

