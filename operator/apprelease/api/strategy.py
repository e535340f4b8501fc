"""How a new revision reaches the pods: rolling, recreate, or canary steps."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, model_validator

from .analysis import AnalysisRef, BackgroundAnalysis
from .base import (
    DNS_HOST_PATTERN,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN,
    DURATION_PATTERN,
    HTTP_PATH_MESSAGE,
    HTTP_PATH_RULE,
    INT32_MAX,
    ApiModel,
    cel,
    check_exactly_one,
    check_http_path,
    duration_seconds,
    exactly_one,
    parse_duration,
    validations,
)

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]


HttpPath = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=r"^/",
          json_schema_extra=validations(cel(HTTP_PATH_RULE, HTTP_PATH_MESSAGE))),
    AfterValidator(check_http_path),
]


# Gateway API's HTTPRoute also wants a path of URL characters (and %XX escapes) only.
GatewayPath = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=r"^/([-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})*$",
          json_schema_extra=validations(cel(HTTP_PATH_RULE, HTTP_PATH_MESSAGE))),
    AfterValidator(check_http_path),
]


class PreviewIngress(ApiModel):
    host: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_HOST_PATTERN)]
    class_name: DnsSubdomain | None = None
    path: HttpPath = "/"


DURATION_DESCRIPTION = "integer seconds (30) or a duration string (30s, 5m, 1h30m; units ms, s, m, h)"


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


def _at_most(maximum: str) -> AfterValidator:
    limit = parse_duration(maximum)

    def valid(value: int | str) -> int | str:
        if duration_seconds(value) > limit:
            raise ValueError(f"must be at most {maximum}")
        return value

    return AfterValidator(valid)


def _duration_rules(maximum: str) -> Any:
    """CEL for a duration of at most ``maximum``, in either form. The same rules as in the
    model: an unbounded one overflowed the planner's datetime arithmetic."""
    limit = int(parse_duration(maximum))
    pattern = "'" + DURATION_PATTERN + "'"
    return Field(json_schema_extra=validations(
        cel(f"type(self) == int ? self >= 0 : self.matches({pattern})",
            "must be a number of seconds or a duration such as 30s, 5m or 1h30m"),
        cel(f"type(self) == int ? self <= {limit}"
            f" : (!self.matches({pattern}) || duration(self) <= duration('{maximum}'))",
            f"must be at most {maximum}"),
    ))


def duration_description(what: str, maximum: str) -> str:
    return f"{what}: {DURATION_DESCRIPTION}, at most {maximum}."


# Integer seconds or a string with units, as Argo Rollouts' pause takes both. Strict: a YAML
# true is not one second.
DurationValue = (
    Annotated[int, Strict(), Field(ge=0)]
    | Annotated[str, Field(max_length=32), AfterValidator(_valid_duration)]
)
# A pause can hold a canary for up to a month; timeouts are shorter.
PauseDuration = Annotated[DurationValue, _at_most("720h"), _duration_rules("720h")]
Duration = Annotated[DurationValue, _at_most("24h"), _duration_rules("24h")]
WarmupDuration = Annotated[DurationValue, _at_most("1h"), _duration_rules("1h")]
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0, le=INT32_MAX)] | Annotated[str, Field(pattern=r"^[0-9]{1,3}%$", max_length=4)],
    Field(
        description="A number of pods or a percentage such as 25%.",
        json_schema_extra=validations(
            cel("type(self) == int ? (self >= 0 && self <= 2147483647) : self.matches('^[0-9]{1,3}%$')",
                "must be a number of pods or a percentage such as 25%")
        ),
    ),
]
# Kubernetes refuses a Deployment whose maxUnavailable is over 100 % (maxSurge may be more).
MaxUnavailable = Annotated[
    Annotated[int, Field(ge=0, le=INT32_MAX)] | Annotated[str, Field(pattern=r"^([0-9]{1,2}|100)%$", max_length=4)],
    Field(
        description="A number of pods or a percentage up to 100% such as 25%.",
        json_schema_extra=validations(
            cel("type(self) == int ? (self >= 0 && self <= 2147483647) : self.matches('^([0-9]{1,2}|100)%$')",
                "must be a number of pods or a percentage up to 100% such as 25%")
        ),
    ),
]
_ZERO = "(type({f}) == int ? {f} == 0 : ({f}.matches('^[0-9]+%$') && int({f}.replace('%', '')) == 0))"


def _is_zero(value: int | str) -> bool:
    return (value if isinstance(value, int) else int(value.rstrip("%") or 0)) == 0


class RollingStrategy(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!(" + _ZERO.format(f="self.maxSurge") + " && " + _ZERO.format(f="self.maxUnavailable") + ")",
                "maxSurge and maxUnavailable cannot both be 0: the update could never start"),
        )
    }

    max_surge: IntOrPercent = "25%"
    max_unavailable: MaxUnavailable = "25%"

    @model_validator(mode="after")
    def _can_progress(self) -> RollingStrategy:
        if _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: the update could never start")
        return self


class RecreateStrategy(ApiModel):
    pass


class Pause(ApiModel):
    duration: PauseDuration | None = Field(
        None, description=duration_description("Resume by itself after this long; without it, wait for promote", "720h")
    )

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else duration_seconds(self.duration)


_STEP_MESSAGE = "each step needs exactly one of setWeight, pause, analysis"


class CanaryStep(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(exactly_one(("setWeight", "pause", "analysis"), _STEP_MESSAGE))
    }

    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    pause: Pause | None = None
    analysis: AnalysisRef | None = Field(
        None, description="Measure the templates' metrics; Successful moves on, Failed aborts, Inconclusive pauses.")

    @model_validator(mode="after")
    def _one_action(self) -> CanaryStep:
        check_exactly_one(self, ("set_weight", "pause", "analysis"), _STEP_MESSAGE)
        return self


_WEIGHTS = "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight)"


class HeaderMatch(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$")]
    value: Annotated[str, Field(min_length=1, max_length=4096)]


class ParentRef(ApiModel):
    """A Gateway (or another parent) the HTTPRoute attaches to."""

    name: DnsSubdomain
    namespace: DnsLabel | None = None
    section_name: DnsSubdomain | None = None
    group: Annotated[str, Field(max_length=253, pattern=rf"^$|^{DNS_SUBDOMAIN}$")] | None = None
    kind: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")] | None = None

    def parent(self) -> tuple[str, str, str, str]:
        """Which parent this is, with Gateway API's defaults for group and kind."""
        return (self.group if self.group is not None else "gateway.networking.k8s.io",
                self.kind or "Gateway", self.name, self.namespace or "")


def _same_parent(a: str, b: str) -> str:
    def field(ref: str, name: str, default: str) -> str:
        return f"(has({ref}.{name}) ? {ref}.{name} : '{default}')"

    # "namespace" is a CEL reserved word: rules name the property __namespace__.
    return " && ".join(
        f"{field(a, name, default)} == {field(b, name, default)}"
        for name, default in (("group", "gateway.networking.k8s.io"), ("kind", "Gateway"), ("__namespace__", ""))
    ) + f" && {a}.name == {b}.name"


# Gateway API's own rules on an HTTPRoute's parentRefs.
_SECTION_NAMES_SET = "sectionName must be set on every reference to a parent listed more than once"
_SECTION_NAMES_UNIQUE = "sectionName must differ between references to the same parent"
_PARENT_REFS = validations(
    cel(f"self.all(a, self.all(b, !({_same_parent('a', 'b')}) || has(a.sectionName) == has(b.sectionName)))",
        _SECTION_NAMES_SET),
    cel(f"self.all(a, self.exists_one(b, {_same_parent('a', 'b')}"
        " && (has(a.sectionName) ? a.sectionName : '') == (has(b.sectionName) ? b.sectionName : '')))",
        _SECTION_NAMES_UNIQUE),
)


class GatewayRoute(ApiModel):
    """The HTTPRoute the operator writes (and owns): its backendRefs carry the weights."""

    http_route: DnsSubdomain = Field(description="Name of the HTTPRoute (in the AppRelease's namespace).")
    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=32, json_schema_extra=_PARENT_REFS)]
    hostnames: Annotated[list[Annotated[str, Field(max_length=253, pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]], Field(max_length=16)] = Field(default_factory=list)
    path: GatewayPath = "/"
    canary_header: HeaderMatch | None = Field(
        None, description="Requests with this header go to the canary whatever the weight (gray routing by header)."
    )

    @model_validator(mode="after")
    def _parents(self) -> GatewayRoute:
        by_parent: dict[tuple[str, str, str, str], list[str | None]] = {}
        for ref in self.parent_refs:
            by_parent.setdefault(ref.parent(), []).append(ref.section_name)
        for sections in by_parent.values():
            if len(sections) > 1 and None in sections:
                raise ValueError(f"parentRefs: {_SECTION_NAMES_SET}")
            if len(set(sections)) != len(sections):
                raise ValueError(f"parentRefs: {_SECTION_NAMES_UNIQUE}")
        return self


class CanaryStrategy(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.trafficRouting) || self.trafficRouting != 'gatewayAPI' || has(self.gatewayAPI)",
                "trafficRouting gatewayAPI needs gatewayAPI (the HTTPRoute to write)", field_path=".gatewayAPI"),
            cel(f"!has(self.steps) || {_WEIGHTS}.isSorted()",
                "setWeight must not decrease from one step to the next", field_path=".steps"),
            cel(f"!has(self.steps) || size({_WEIGHTS}) == 0 || {_WEIGHTS}.exists(w, w > 0)",
                "the steps set no weight above 0: the canary would never get traffic"
                " (for a manual gate before the rollout, use a pause step alone)",
                field_path=".steps"),
        )
    }

    steps: Annotated[list[CanaryStep], Field(max_length=64)] = Field(default_factory=list)
    traffic_routing: Literal["replicas", "nginx", "nacos", "gatewayAPI"] = Field(
        "replicas",
        description=(
            "replicas: the Service selects stable and canary pods, so the replica ratio is the"
            " weight. nginx: stable/canary Services and an nginx canary Ingress with the exact"
            " weight. nacos: Nacos instance weights give the canary exactly the step's share"
            " of a weighted-random Nacos client's picks (needs registry.nacos). gatewayAPI:"
            " stable/canary Services and an HTTPRoute whose backendRefs carry the weight (needs"
            " gatewayAPI)."
        ),
    )
    gateway_api: GatewayRoute | None = Field(None, alias="gatewayAPI")
    max_restarts: Annotated[int, Field(ge=0, le=1000)] = Field(
        3, description="Abort when a canary container restarts more often than this."
    )
    analysis: BackgroundAnalysis | None = Field(
        None, description="Background analysis from startingStep until promotion: Failed aborts at any step.")

    @model_validator(mode="after")
    def _route(self) -> CanaryStrategy:
        if self.traffic_routing == "gatewayAPI" and self.gateway_api is None:
            raise ValueError("trafficRouting gatewayAPI needs gatewayAPI (the HTTPRoute to write)")
        return self

    @model_validator(mode="after")
    def _weights(self) -> CanaryStrategy:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if weights != sorted(weights):
            raise ValueError("setWeight must not decrease from one step to the next")
        if weights and not any(weights):
            raise ValueError(
                "the steps set no weight above 0: the canary would never get traffic"
                " (for a manual gate before the rollout, use a pause step alone)"
            )
        return self


class BlueGreenStrategy(ApiModel):
    """The new revision runs at full size beside the active one (the preview), without
    traffic; promotion switches the traffic at once; the old pods stay for an instant
    rollback until scaleDownDelaySeconds have passed."""

    auto_promotion_seconds: Annotated[int, Field(ge=0, le=86400)] | None = Field(
        None, description="Switch by itself this long after the preview is fully ready; absent: wait for promote."
    )
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        30, description="Keep the old revision's pods this long after the switch (rollback is instant meanwhile)."
    )
    preview_ingress: PreviewIngress | None = Field(
        None, description="An Ingress for the preview Service, e.g. to test the new revision before the switch."
    )
    pre_promotion_analysis: AnalysisRef | None = Field(
        None, description="Run once the preview is ready, before any switch: Successful lets it switch (by"
        " autoPromotionSeconds or promote), Failed aborts, Inconclusive pauses; promote switches regardless.")
    post_promotion_analysis: AnalysisRef | None = Field(
        None, description="Run after the switch, while the old pods stay: the old revision is scaled down only once"
        " it passed; Failed switches traffic back (aborts), Inconclusive holds (promote --full finishes).")


class Strategy(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("[has(self.rolling), has(self.recreate), has(self.canary), has(self.blueGreen)]"
                ".filter(x, x).size() <= 1",
                "set only one of rolling, recreate, canary, blueGreen"),
        )
    }

    rolling: RollingStrategy | None = None
    recreate: RecreateStrategy | None = None
    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Strategy:
        if sum(x is not None for x in (self.rolling, self.recreate, self.canary, self.blue_green)) > 1:
            raise ValueError("set only one of rolling, recreate, canary, blueGreen")
        return self

    @property
    def kind(self) -> Literal["rolling", "recreate", "canary", "blueGreen"]:
        if self.canary is not None:
            return "canary"
        if self.blue_green is not None:
            return "blueGreen"
        if self.recreate is not None:
            return "recreate"
        return "rolling"
