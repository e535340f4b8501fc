"""The AppRelease spec: one object per app."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .base import (
    INT32_MAX,
    LABEL_VALUE_PATTERN,
    PRINTABLE_ASCII_PATTERN,
    ApiModel,
    cel,
    check_qualified_names,
    qualified_name_rule,
    validations,
)
from .exposure import IngressSpec, ServiceSpec
from .nacos_config import NEEDS_A_SERVER_MESSAGE, NEEDS_A_SERVER_RULE
from .notifications import Rules
from .registry import Registry
from .strategy import Strategy
from .workload import (
    ConfigFiles,
    ContainerPort,
    EnvFromSource,
    EnvVar,
    ObjectName,
    PortNumber,
    Probe,
    Resources,
)

GROUP = "apprelease.io"
VERSION = "v1alpha1"
KIND = "AppRelease"
PLURAL = "appreleases"
API_VERSION = f"{GROUP}/{VERSION}"

# Child names append up to "-canary"/"-stable" and Service names are DNS-1035 labels (<= 63).
MAX_NAME_LENGTH = 56
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# The suffixes our children add to the app's name: an app named "web-canary" would share its
# Deployment, Service and Ingress names with app "web"'s canary, and one would take the other's.
RESERVED_SUFFIXES = ("-canary", "-stable", "-preview")
NGINX_NEEDS_INGRESS = "trafficRouting nginx needs spec.ingress (the canary Ingress is made from it)"

_PORT_NAMES_UNIQUE = "self.all(p, self.exists_one(q, q.name == p.name))"
_ENV_NOT_IN_CONFIG = (
    "!has(self.config) || !has(self.config.env) || !has(self.env)"
    " || self.env.all(e, !(e.name in self.config.env))"
)
_SINGLE_SUCCESS = (
    "(!has(self.livenessProbe) || !has(self.livenessProbe.successThreshold)"
    " || self.livenessProbe.successThreshold == 1)"
    " && (!has(self.startupProbe) || !has(self.startupProbe.successThreshold)"
    " || self.startupProbe.successThreshold == 1)"
)
# The free-form podTemplate still has the shape of a pod template where we merge into it.
_NAMED_LIST = {
    "type": "array",
    "maxItems": 64,
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 253}},
        "x-kubernetes-preserve-unknown-fields": True,
    },
}
POD_TEMPLATE_SCHEMA = {
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "spec": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "containers": _NAMED_LIST,
                "initContainers": _NAMED_LIST,
                "volumes": _NAMED_LIST,
            },
        },
    },
}


def _pod_template_shape(value: dict[str, Any]) -> dict[str, Any]:
    for part in ("metadata", "spec"):
        if part in value and not isinstance(value[part], dict):
            raise ValueError(f"{part} must be an object")
    spec = value.get("spec") or {}
    for key in ("containers", "initContainers", "volumes"):
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and i["name"] for i in items
        ):
            raise ValueError(f"spec.{key} must be a list of objects with a name")
    return value


ADOPT_STRATEGIES = "spec.adopt works with the rolling, recreate and canary (trafficRouting replicas) strategies"
_ADOPT_RULE = (
    "!has(self.adopt) || !has(self.strategy) || (!has(self.strategy.blueGreen)"
    " && (!has(self.strategy.canary) || !has(self.strategy.canary.trafficRouting)"
    " || self.strategy.canary.trafficRouting == 'replicas'))"
)


def _label_keys(value: dict[str, str]) -> dict[str, str]:
    check_qualified_names(value, "label")
    return value


class Adoption(ApiModel):
    """A Deployment that ran before its AppRelease, brought in without restarting its pods
    (`apprelease adopt`), the way Argo Rollouts' workloadRef and Kruise's workloadRef name
    the workload they take over. Selectors are immutable: the Deployment keeps ``selector``
    and the Service selects by it. While the revision with ``revisionHash`` runs, its pods
    keep exactly ``podTemplate`` (the live one), so adopting changes no pod; any change of
    the spec is a new revision, rolled out by the strategy with these labels added."""

    deployment: ObjectName = Field(
        description="The adopted Deployment; only one named as the AppRelease is taken over (its stable Deployment)."
    )
    selector: Annotated[
        dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]],
        AfterValidator(_label_keys),
        Field(max_length=32, json_schema_extra=validations(qualified_name_rule("label"), maxProperties=32)),
    ] = Field(
        description="The Deployment's spec.selector.matchLabels at adoption (immutable in Kubernetes)."
    )
    revision_hash: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="The revision whose pods are the adopted ones (the spec's revision at adoption)."
    )
    pod_template: Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})] = Field(
        description="The Deployment's pod template at adoption, kept as it was while that revision runs."
    )


class RevisionTemplate(ApiModel):
    """What the pods run. Any change here is a new revision; history stores exactly this."""

    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    config: ConfigFiles | None = None
    resources: Resources | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    restart_at: str | None = None
    pod_template: dict[str, Any] | None = None


Argument = Annotated[str, Field(max_length=4096)]


class AppReleaseSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!(has(self.port) && has(self.ports) && size(self.ports) > 0)",
                "set port or ports, not both", field_path=".ports"),
            cel("self.progressDeadlineSeconds > self.minReadySeconds",
                "progressDeadlineSeconds must be greater than minReadySeconds",
                field_path=".progressDeadlineSeconds"),
            cel(_ENV_NOT_IN_CONFIG, "env names must differ from the keys of config.env",
                field_path=".env"),
            cel(_SINGLE_SUCCESS, "successThreshold of liveness and startup probes must be 1"),
            cel("!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.trafficRouting)"
                " || self.strategy.canary.trafficRouting != 'nacos'"
                " || (has(self.registry) && has(self.registry.nacos))",
                "trafficRouting nacos needs registry.nacos", field_path=".strategy.canary.trafficRouting"),
            cel("!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.trafficRouting)"
                " || self.strategy.canary.trafficRouting != 'nginx' || has(self.ingress)",
                NGINX_NEEDS_INGRESS, field_path=".strategy.canary.trafficRouting"),
            cel("!has(self.registry) || !has(self.registry.warmup)"
                " || (type(self.registry.warmup) == int ? self.registry.warmup"
                " : duration(self.registry.warmup).getSeconds()) < self.progressDeadlineSeconds",
                "registry.warmup must be shorter than progressDeadlineSeconds", field_path=".registry.warmup"),
            cel(_ADOPT_RULE, ADOPT_STRATEGIES, field_path=".adopt"),
            cel(NEEDS_A_SERVER_RULE, NEEDS_A_SERVER_MESSAGE, field_path=".config.nacos"),
        )
    }

    image: Annotated[str, Field(min_length=1, max_length=1024, pattern=PRINTABLE_ASCII_PATTERN)] = Field(
        description="Container image, e.g. harbor.company.com/order/order-service:20250920v1."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: Annotated[list[Argument], Field(max_length=64)] | None = None
    args: Annotated[list[Argument], Field(max_length=256)] | None = None
    replicas: Annotated[int, Field(ge=0, le=INT32_MAX)] = 1
    port: PortNumber | None = Field(
        None, description="Shorthand for a single container port named http."
    )
    ports: Annotated[
        list[ContainerPort],
        Field(
            max_length=32,
            json_schema_extra=validations(cel(_PORT_NAMES_UNIQUE, "port names must be unique")),
        ),
    ] = Field(default_factory=list)
    env: Annotated[
        list[EnvVar],
        Field(max_length=512, json_schema_extra={
            # Unique names, checked by the apiserver itself ("Duplicate value").
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        }),
    ] = Field(default_factory=list)
    env_from: Annotated[list[EnvFromSource], Field(max_length=64)] = Field(default_factory=list)
    config: ConfigFiles | None = None
    resources: Resources | None = None
    readiness_probe: Probe | None = Field(
        None, description="Default: a TCP probe on the first port (readiness must always be set)."
    )
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    ingress: IngressSpec | None = None
    strategy: Strategy = Field(default_factory=Strategy)
    registry: Registry | None = None
    notifications: Rules = Field(
        default_factory=list,
        description="Who hears about this app's rollouts: sinks of the namespace's Secret apprelease-notifications"
        " and the events each hears (docs/notifications.md).",
    )
    paused: bool = Field(False, description="Stop rolling out: no step advances, no new pods.")
    taken_down: bool = Field(
        False,
        description=(
            "Take the app down: every registry instance offline and drained, then no pods."
            " spec.replicas is kept, so setting it back to false brings the app up as it was."
        ),
    )
    revision_history_limit: Annotated[int, Field(ge=0, le=1000)] = 10
    progress_deadline_seconds: Annotated[int, Field(ge=1, le=INT32_MAX)] = 600
    min_ready_seconds: Annotated[int, Field(ge=0, le=INT32_MAX)] = 0
    restart_at: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="Set (e.g. by `apprelease restart`) to roll every pod of the current revision."
    )
    pod_template: Annotated[
        dict[str, Any],
        AfterValidator(_pod_template_shape),
        Field(json_schema_extra=POD_TEMPLATE_SCHEMA),
    ] | None = Field(
        None,
        description=(
            "A partial pod template merged into the generated one (containers merged by name):"
            " nodeSelector, tolerations, affinity, imagePullSecrets, serviceAccountName,"
            " securityContext, sidecars, volumes."
        ),
    )

    adopt: Adoption | None = Field(
        None, description="Set by `apprelease adopt`: the running Deployment this AppRelease took over."
    )

    @model_validator(mode="after")
    def _ports(self) -> AppReleaseSpec:
        if self.port is not None and self.ports:
            raise ValueError("set port or ports, not both")
        names = [p.name for p in self.ports]
        if len(names) != len(set(names)):
            raise ValueError("port names must be unique")
        return self

    @model_validator(mode="after")
    def _cross_field(self) -> AppReleaseSpec:
        if self.progress_deadline_seconds <= self.min_ready_seconds:
            raise ValueError("progressDeadlineSeconds must be greater than minReadySeconds")
        names = [e.name for e in self.env]
        if len(names) != len(set(names)):
            raise ValueError("env names must be unique")
        if self.config is not None and set(names) & set(self.config.env):
            raise ValueError("env names must differ from the keys of config.env")
        for probe in (self.liveness_probe, self.startup_probe):
            if probe is not None and probe.success_threshold not in (None, 1):
                raise ValueError("successThreshold of liveness and startup probes must be 1")
        canary = self.strategy.canary
        if canary is not None and canary.traffic_routing == "nacos" and not (self.registry and self.registry.nacos):
            raise ValueError("trafficRouting nacos needs registry.nacos")
        if canary is not None and canary.traffic_routing == "nginx" and self.ingress is None:
            raise ValueError(NGINX_NEEDS_INGRESS)
        if self.registry and self.registry.warmup_seconds >= self.progress_deadline_seconds:
            raise ValueError("registry.warmup must be shorter than progressDeadlineSeconds")
        if self.adopt is not None and (self.strategy.blue_green is not None or (
                canary is not None and canary.traffic_routing != "replicas")):
            # Per-track Services and revision selectors need labels the adopted pods lack.
            raise ValueError(ADOPT_STRATEGIES)
        nacos_config = self.config.nacos if self.config is not None else None
        if nacos_config is not None and nacos_config.server_addr is None and not (self.registry and self.registry.nacos):
            raise ValueError(NEEDS_A_SERVER_MESSAGE)
        return self

    def container_ports(self) -> list[ContainerPort]:
        """Ports with the ``port`` shorthand expanded; the first one is the primary port."""
        if self.ports:
            return list(self.ports)
        if self.port is not None:
            return [ContainerPort(name="http", container_port=self.port)]
        return []

    def revision_template(self) -> RevisionTemplate:
        return RevisionTemplate(
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            command=self.command,
            args=self.args,
            ports=self.container_ports(),
            env=list(self.env),
            env_from=list(self.env_from),
            config=self.config,
            resources=self.resources,
            readiness_probe=self.readiness_probe,
            liveness_probe=self.liveness_probe,
            startup_probe=self.startup_probe,
            restart_at=self.restart_at,
            pod_template=self.pod_template,
        )


class AppRelease(ApiModel):
    """The parsed object (metadata kept as a plain dict: we only read a few fields)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any]
    spec: AppReleaseSpec

    @field_validator("metadata")
    @classmethod
    def _name(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        name = str(metadata.get("name") or "")
        if len(name) > MAX_NAME_LENGTH or not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(
                f"name must be a DNS label of at most {MAX_NAME_LENGTH} characters starting with a letter"
            )
        if name.endswith(RESERVED_SUFFIXES):
            raise ValueError(f"name must not end with {', '.join(RESERVED_SUFFIXES)}: those name the children of other apps")
        return metadata

    @model_validator(mode="after")
    def _name_fits_the_preview(self) -> AppRelease:
        if self.spec.strategy.blue_green is not None and len(self.name) > MAX_NAME_LENGTH - 1:
            raise ValueError(
                f"metadata.name must be at most {MAX_NAME_LENGTH - 1} characters with blueGreen"
                " (the preview Service {name}-preview is a DNS label of at most 63)"
            )
        return self

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")

    @property
    def uid(self) -> str | None:
        return self.metadata.get("uid")

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation") or 0)

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.metadata.get("annotations") or {})
