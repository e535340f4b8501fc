"""AnalysisTemplate and ClusterAnalysisTemplate: reusable metric checks, as Argo Rollouts'.

One template ("HTTP 5xx rate of the canary below 1 %") serves every app: its queries use
``{{args.NAME}}``, filled from the release (app, namespace, revision, canary-hash,
stable-hash) and from the AppRelease's ``args``. Conditions are small expressions over
``result`` (the query's values), evaluated without ``eval`` (rollout/analysis.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .analysis import ArgName
from .base import (
    INT32_MAX,
    ApiModel,
    cel,
    check_exactly_one,
    duration_seconds,
    exactly_one,
    validations,
)
from .strategy import Duration, HeaderMatch

TEMPLATE_KIND = "AnalysisTemplate"
TEMPLATE_PLURAL = "analysistemplates"
CLUSTER_TEMPLATE_KIND = "ClusterAnalysisTemplate"
CLUSTER_TEMPLATE_PLURAL = "clusteranalysistemplates"

_URL = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s/?#]+([/?#]\S*)?$")]
Condition = Annotated[str, Field(min_length=1, max_length=1024)]
Limit = Annotated[int, Field(ge=0, le=INT32_MAX)]


class TemplateArg(ApiModel):
    name: ArgName
    value: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="The default; without one the argument must be given where the template is used.")


class PrometheusProvider(ApiModel):
    address: _URL = Field(description="The Prometheus server, e.g. http://prometheus.monitoring:9090.")
    query: Annotated[str, Field(min_length=1, max_length=8192)] = Field(
        description="PromQL; {{args.NAME}} is replaced by the argument's value.")


class WebProvider(ApiModel):
    """Flagger-style web hook: the rollout's context is POSTed as JSON; a 2xx answer passes."""

    url: _URL
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    headers: Annotated[list[HeaderMatch], Field(max_length=16)] = Field(default_factory=list)


_PROVIDER_MESSAGE = "a provider is exactly one of prometheus, web"


class MetricProvider(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(exactly_one(("prometheus", "web"), _PROVIDER_MESSAGE))
    }

    prometheus: PrometheusProvider | None = None
    web: WebProvider | None = None

    @model_validator(mode="after")
    def _one(self) -> MetricProvider:
        check_exactly_one(self, ("prometheus", "web"), _PROVIDER_MESSAGE)
        return self


_CONDITIONS_MESSAGE = "a prometheus metric needs successCondition or failureCondition"


class Metric(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.provider.prometheus) || has(self.successCondition) || has(self.failureCondition)",
                _CONDITIONS_MESSAGE, field_path=".successCondition"),
        )
    }

    name: ArgName
    interval: Duration = Field("30s", description="Time between measurements.")
    count: Annotated[int, Field(ge=1, le=10000)] | None = Field(
        None, description="Measurements to take; then the metric is decided. Default: 1 in an analysis step;"
        " in background analysis, until the rollout ends.")
    initial_delay: Duration | None = Field(None, description="Wait this long before the first measurement.")
    failure_limit: Limit = Field(0, description="Failed measurements tolerated; one more fails the analysis.")
    inconclusive_limit: Limit = Field(
        0, description="Inconclusive measurements tolerated; one more pauses the rollout for a person.")
    consecutive_error_limit: Limit = Field(
        4, description="Errors in a row tolerated (server unreachable, timeout); one more makes it inconclusive.")
    success_condition: Condition | None = Field(
        None, description="An expression over result (the values), e.g. result[0] < 0.01; true passes.")
    failure_condition: Condition | None = Field(
        None, description="An expression over result; true fails. Neither true: inconclusive.")
    provider: MetricProvider

    @model_validator(mode="after")
    def _conditions(self) -> Metric:
        if self.provider.prometheus is not None and not (self.success_condition or self.failure_condition):
            raise ValueError(_CONDITIONS_MESSAGE)
        return self

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)

    @property
    def initial_delay_seconds(self) -> float:
        return 0.0 if self.initial_delay is None else duration_seconds(self.initial_delay)


class AnalysisTemplateSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("self.metrics.all(a, self.metrics.exists_one(b, a.name == b.name))",
                "metric names must be unique", field_path=".metrics"),
        )
    }

    args: Annotated[list[TemplateArg], Field(max_length=32)] = Field(default_factory=list)
    metrics: Annotated[list[Metric], Field(min_length=1, max_length=16)]

    @model_validator(mode="after")
    def _unique(self) -> AnalysisTemplateSpec:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        return self


class AnalysisTemplateStatus(ApiModel):
    """Templates have no status of their own (results live in the AppRelease's status)."""
