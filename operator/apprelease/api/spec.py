"""The AppRelease spec: one object per app."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import ApiModel, cel, validations
from .exposure import IngressSpec, ServiceSpec
from .registry import Registry
from .strategy import Strategy
from .workload import (
    ConfigFiles,
    ContainerPort,
    EnvFromSource,
    EnvVar,
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

_PORT_NAMES_UNIQUE = "self.all(p, self.exists_one(q, q.name == p.name))"


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


class AppReleaseSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!(has(self.port) && has(self.ports) && size(self.ports) > 0)",
                "set port or ports, not both", field_path=".ports"),
        )
    }

    image: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^\S+$")] = Field(
        description="Container image, e.g. harbor.company.com/order/order-service:20250920v1."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: Annotated[list[str], Field(max_length=64)] | None = None
    args: Annotated[list[str], Field(max_length=256)] | None = None
    replicas: Annotated[int, Field(ge=0)] = 1
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
    env: Annotated[list[EnvVar], Field(max_length=512)] = Field(default_factory=list)
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
    paused: bool = Field(False, description="Stop rolling out: no step advances, no new pods.")
    revision_history_limit: Annotated[int, Field(ge=0, le=1000)] = 10
    progress_deadline_seconds: Annotated[int, Field(ge=1)] = 600
    min_ready_seconds: Annotated[int, Field(ge=0)] = 0
    restart_at: str | None = Field(
        None, description="Set (e.g. by `apprelease restart`) to roll every pod of the current revision."
    )
    pod_template: Annotated[
        dict[str, Any],
        Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
    ] | None = Field(
        None,
        description=(
            "A partial pod template merged into the generated one (containers merged by name):"
            " nodeSelector, tolerations, affinity, imagePullSecrets, serviceAccountName,"
            " securityContext, sidecars, volumes."
        ),
    )

    @model_validator(mode="after")
    def _ports(self) -> AppReleaseSpec:
        if self.port is not None and self.ports:
            raise ValueError("set port or ports, not both")
        names = [p.name for p in self.ports]
        if len(names) != len(set(names)):
            raise ValueError("port names must be unique")
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
        return metadata

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
