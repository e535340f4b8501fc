"""ReleasePipeline and ReleaseApproval: promote an artifact from stage to stage.

The artifact vs the environment
-------------------------------
A pipeline moves only the **artifact** of each app from one stage's namespace to the next:
its image (``spec.image``) and its config content (``spec.config.files``; Nacos config items
are one more field of ``Artifact`` once they exist). Everything else is the **environment**
and never moves: replicas, hosts and Ingress, env values (``spec.env``, ``spec.config.env``),
the mount path, the Nacos namespace and registry, resources, the rollout strategy. Prod keeps
its replicas and its canary; it only gets test's image and files.

A ReleaseApproval is created in the namespace of the stage it releases to, so RBAC on
``create releaseapprovals`` in that namespace is who may release there. Its ``approver`` must
be the requesting user and its spec never changes (a ValidatingAdmissionPolicy,
deploy/30-releaseapproval-policy.yaml): the record of who approved cannot be forged.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .analysis import AnalysisRef, AnalysisRunStatus
from .base import (
    DNS_LABEL_PATTERN,
    INT32_MAX,
    ApiModel,
    cel,
    exactly_one,
    only_one_set,
    validations,
)
from .notifications import PipelineRules
from .status import StatusModel

PIPELINE_KIND = "ReleasePipeline"
PIPELINE_PLURAL = "releasepipelines"
APPROVAL_KIND = "ReleaseApproval"
APPROVAL_PLURAL = "releaseapprovals"
# How much history the status keeps (it is an etcd object: bounded).
MAX_HISTORY = 50
MAX_PASSED = 20
MAX_STAGES = 16
MAX_APPS = 64

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
AppName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL_PATTERN)]


class AutoGate(ApiModel):
    soak_seconds: Annotated[int, Field(ge=0, le=INT32_MAX)] = Field(
        0, description="How long every app of the previous stage stays Healthy with the artifact before it moves on."
    )


class ManualGate(ApiModel):
    """The artifact waits for a ReleaseApproval in this stage's namespace."""


_GATE_MESSAGE = "a gate is exactly one of auto, manual"


class Gate(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": validations(exactly_one(("auto", "manual"),
                                                                                          _GATE_MESSAGE))}

    auto: AutoGate | None = None
    manual: ManualGate | None = None

    @model_validator(mode="after")
    def _one(self) -> Gate:
        if only_one_set(self, ("auto", "manual")) != 1:
            raise ValueError(_GATE_MESSAGE)
        return self


class Stage(ApiModel):
    name: Name
    namespace: Name = Field(description="Where this stage's AppReleases live.")
    gate: Gate | None = Field(None, description="How an artifact enters this stage (none on the first stage).")
    analysis: AnalysisRef | None = Field(
        None, description="Run against this stage once every app is Healthy on an artifact (AnalysisTemplates of"
        " the stage's namespace; args app, namespace, revision filled: the app names joined by |, the stage's"
        " namespace, the artifact's digest): the artifact moves on only once it is Successful.")


class AppSelector(ApiModel):
    match_labels: Annotated[dict[str, str], Field(max_length=32)] = Field(default_factory=dict)


_APPS_MESSAGE = "apps is exactly one of names, selector"


class Apps(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": validations(exactly_one(("names", "selector"),
                                                                                          _APPS_MESSAGE))}

    names: Annotated[list[AppName], Field(min_length=1, max_length=MAX_APPS)] | None = Field(
        None, description="The AppReleases (by name, the same in every stage) that move together."
    )
    selector: AppSelector | None = Field(
        None, description="The AppReleases of the first stage with these labels (the same names in later stages)."
    )

    @model_validator(mode="after")
    def _one(self) -> Apps:
        if only_one_set(self, ("names", "selector")) != 1:
            raise ValueError(_APPS_MESSAGE)
        return self


_STAGES_RULES = (
    cel("self.size() >= 2", "a pipeline has at least 2 stages"),
    cel("self.all(s, self.exists_one(t, t.name == s.name))", "stage names must be unique"),
    cel("self.all(s, self.exists_one(t, t.__namespace__ == s.__namespace__))", "stage namespaces must be unique"),
    cel("!has(self[0].gate)", "the first stage has no gate (artifacts enter it by a normal release)"),
    cel("self.filter(s, !has(s.gate)).size() <= 1", "every stage after the first has a gate"),
)


class ReleasePipelineSpec(ApiModel):
    stages: Annotated[list[Stage], Field(max_length=MAX_STAGES, json_schema_extra=validations(*_STAGES_RULES))]
    apps: Apps
    notifications: PipelineRules = Field(
        default_factory=list,
        description="Who hears about this pipeline (waiting for approval, promoted, rejected, ...): sinks of"
        " its namespace's Secret apprelease-notifications (docs/notifications.md).",
    )

    @model_validator(mode="after")
    def _check(self) -> ReleasePipelineSpec:
        if len(self.stages) < 2:
            raise ValueError("a pipeline has at least 2 stages")
        for field in ("name", "namespace"):
            values = [getattr(s, field) for s in self.stages]
            if len(set(values)) != len(values):
                raise ValueError(f"stage {field}s must be unique")
        if self.stages[0].gate is not None:
            raise ValueError("the first stage has no gate (artifacts enter it by a normal release)")
        if any(s.gate is None for s in self.stages[1:]):
            raise ValueError("every stage after the first has a gate")
        return self


# Status ------------------------------------------------------------------------------------


class AppArtifactStatus(StatusModel):
    """What one app of a stage runs: its artifact and whether it is settled on it."""

    name: str
    image: str = ""
    config_hash: str = Field("", description="Hash of the config content (spec.config.files).")
    digest: str = Field("", description="The app's artifact digest (image + config content).")
    revision: int | None = None
    healthy: bool = False
    healthy_since: str | None = Field(None, description="Healthy on this artifact since (seen by the pipeline).")
    message: str = Field("", description="Why it is not Healthy on its artifact, or missing.")


class PassedArtifact(StatusModel):
    digest: str
    at: str
    apps: list[AppArtifactStatus] = Field(default_factory=list)


class StageStatus(StatusModel):
    name: str
    namespace: str
    digest: str = Field("", description="The stage's artifact: one digest over every app's artifact.")
    healthy_since: str | None = Field(None, description="Every app Healthy on the artifact since.")
    apps: list[AppArtifactStatus] = Field(default_factory=list)
    passed: Annotated[list[PassedArtifact], Field(max_length=MAX_PASSED)] = Field(
        default_factory=list, description="Artifacts that were Healthy here (newest last): what may move on."
    )
    last_promoted: str | None = Field(None, description="The artifact last promoted into this stage.")
    analysis: AnalysisRunStatus | None = Field(
        None, description="The analysis of the stage's current artifact (run: digest/pipeline/healthy since).")


class PendingPromotion(StatusModel):
    stage: str = Field(description="The stage the artifact waits to enter.")
    digest: str
    reason: Literal["Soaking", "Analyzing", "AnalysisInconclusive", "AnalysisFailed", "WaitingForApproval",
                    "PromotionFailed"]
    since: str
    message: str = ""


class PromotionRecord(StatusModel):
    stage: str = Field(description="The stage the decision is about (the target).")
    from_stage: str = ""
    digest: str
    decision: Literal["Promoted", "Rejected", "Refused", "Failed"]
    by: str = Field(description="'gate' for an auto gate, else the approver's user name.")
    approval: str | None = Field(None, description="The ReleaseApproval (namespace/name) it came from.")
    at: str
    message: str = ""


class ReleasePipelineStatus(StatusModel):
    observed_generation: int | None = None
    message: str = ""
    stages: list[StageStatus] = Field(default_factory=list)
    pending: list[PendingPromotion] = Field(default_factory=list)
    history: Annotated[list[PromotionRecord], Field(max_length=MAX_HISTORY)] = Field(
        default_factory=list, description="Promotions, rejections and refusals, newest last (bounded)."
    )


# ReleaseApproval ----------------------------------------------------------------------------


class ReleaseApprovalSpec(ApiModel):
    pipeline: Name
    pipeline_namespace: Name = Field(description="Where the ReleasePipeline lives.")
    stage: Name = Field(description="The stage released to: this object's namespace must be that stage's.")
    artifact: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z0-9:]+$")] = Field(
        description="The digest of the artifact (as `apprelease pipeline get` shows it)."
    )
    decision: Literal["Approve", "Reject"]
    approver: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="The user who decided: must be the user creating the object (admission policy)."
    )
    comment: Annotated[str, Field(max_length=1024)] = ""


class ReleaseApprovalStatus(StatusModel):
    outcome: Literal["Promoted", "Rejected", "Refused", "Failed"] | None = None
    message: str = ""
    at: str | None = None
