"""What the pods run: ports, env, config files, resources, probes.

Field names follow Kubernetes' own (``containerPort``, ``secretKeyRef``, ``httpGet``) so the
YAML reads like the five hand-written manifests it replaces.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from kubernetes.utils import parse_quantity
from pydantic import AfterValidator, Field, field_validator, model_validator

from .base import (
    CONFIGMAP_KEY_PATTERN,
    DNS_LABEL_PATTERN,
    ENV_NAME_PATTERN,
    INT32_MAX,
    PORT_NAME_PATTERN,
    QUANTITY_PATTERN,
    ApiModel,
    cel,
    check_exactly_one,
    exactly_one,
    validations,
)

PortNumber = Annotated[int, Field(ge=1, le=65535)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
EnvName = Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)]
_IANA_RULE = "self.matches('[a-z]') && !self.contains('--')"
_IANA_MESSAGE = "must contain a letter and no '--' (an IANA service name)"


def _iana_name(name: str) -> str:
    if not re.search("[a-z]", name) or "--" in name:
        raise ValueError(_IANA_MESSAGE)
    return name


PortName = Annotated[
    str,
    AfterValidator(_iana_name),
    Field(min_length=1, max_length=15, pattern=PORT_NAME_PATTERN,
          json_schema_extra=validations(cel(_IANA_RULE, _IANA_MESSAGE))),
]
Seconds = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
# A port given by number or by the name of one of spec.ports.
PortRef = Annotated[
    Annotated[int, Field(ge=1, le=65535)] | PortName,
    Field(
        json_schema_extra=validations(
            cel("type(self) == int ? (self >= 1 && self <= 65535) : (self.matches('"
                + PORT_NAME_PATTERN + "') && " + _IANA_RULE + ")",
                "must be a port number 1-65535 or a port name")
        )
    ),
]
# int-or-string like Kubernetes' own Quantity fields; write fractions as strings ("500m", "0.5").
Quantity = int | Annotated[str, Field(max_length=32)]


class ContainerPort(ApiModel):
    """One named container port; the Service exposes every port listed."""

    name: PortName
    container_port: PortNumber
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    service_port: PortNumber | None = Field(
        None, description="Port on the Service; defaults to containerPort."
    )
    node_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Fixed nodePort when the Service type is NodePort or LoadBalancer."
    )


class SecretKeySelector(ApiModel):
    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=CONFIGMAP_KEY_PATTERN)]
    optional: bool | None = None


class ConfigMapKeySelector(SecretKeySelector):
    pass


class FieldSelector(ApiModel):
    field_path: Annotated[str, Field(min_length=1, max_length=256)]
    api_version: str | None = None


class ResourceFieldSelector(ApiModel):
    resource: Annotated[str, Field(min_length=1, max_length=64)]
    container_name: str | None = None
    divisor: Quantity | None = None


_ENV_SOURCES = ("secret_key_ref", "config_map_key_ref", "field_ref", "resource_field_ref")
_ENV_SOURCES_MESSAGE = (
    "valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"
)


class EnvVarSource(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            exactly_one(("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"),
                        _ENV_SOURCES_MESSAGE)
        )
    }

    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    field_ref: FieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        check_exactly_one(self, _ENV_SOURCES, _ENV_SOURCES_MESSAGE)
        return self


class EnvVar(ApiModel):
    """A literal value or a reference; Secret values never live in the AppRelease."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both")
        )
    }

    name: EnvName
    value: Annotated[str, Field(max_length=32768)] | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _value_or_ref(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class NamedRef(ApiModel):
    name: ObjectName
    optional: bool | None = None


class EnvFromSource(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            exactly_one(("secretRef", "configMapRef"), "envFrom needs exactly one of secretRef, configMapRef")
        )
    }

    prefix: Annotated[str, Field(max_length=64)] | None = None
    secret_ref: NamedRef | None = None
    config_map_ref: NamedRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        check_exactly_one(self, ("secret_ref", "config_map_ref"),
                          "envFrom needs exactly one of secretRef, configMapRef")
        return self


_KEY_RULE = (
    "self.all(k, k.size() <= 253 && k != '.' && k != '..' && k.matches('"
    + CONFIGMAP_KEY_PATTERN
    + "'))"
)
_KEY_MESSAGE = (
    "keys must be valid ConfigMap keys: letters, digits, '-', '_' or '.', at most 253 characters"
)


class ConfigFiles(ApiModel):
    """Config files and values, stored in an immutable ConfigMap named by content hash.

    A change of any file is a new revision, and a rollback mounts the old revision's
    ConfigMap again (it is kept while the revision is in history).
    """

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.files) || self.files.size() == 0 || has(self.mountPath)",
                "mountPath is required when files are given", field_path=".mountPath"),
        )
    }

    mount_path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")] | None = None
    files: Annotated[
        dict[str, str],
        Field(json_schema_extra=validations(cel(_KEY_RULE, _KEY_MESSAGE), maxProperties=256)),
    ] = Field(default_factory=dict)
    sub_path: bool = Field(
        False,
        description="Mount each file on its own with subPath (keeps other files in mountPath).",
    )
    env: Annotated[
        dict[str, str],
        Field(json_schema_extra=validations(
            cel("self.all(k, k.matches('" + ENV_NAME_PATTERN + "'))",
                "keys must be valid environment variable names"),
            maxProperties=256,
        )),
    ] = Field(default_factory=dict, description="Config values exposed to the container as env.")

    @model_validator(mode="after")
    def _check(self) -> ConfigFiles:
        for key in self.files:
            if len(key) > 253 or key in (".", "..") or not re.fullmatch(CONFIGMAP_KEY_PATTERN, key):
                raise ValueError(f"files: {key!r}: {_KEY_MESSAGE}")
        for key in self.env:
            if not re.fullmatch(ENV_NAME_PATTERN, key):
                raise ValueError(f"env: {key!r}: keys must be valid environment variable names")
        overlap = set(self.files) & set(self.env)
        if overlap:
            raise ValueError(f"files and env share keys {sorted(overlap)}")
        if self.files and not self.mount_path:
            raise ValueError("mountPath is required when files are given")
        return self


_QUANTITY_RULE = "self.all(k, isQuantity(string(self[k])))"


def _quantities() -> object:
    return Field(
        default_factory=dict,
        json_schema_extra=validations(
            cel(_QUANTITY_RULE, "values must be Kubernetes quantities such as 250m, 1, 512Mi"),
            maxProperties=8,
        ),
    )


_REQUESTS_WITHIN_LIMITS = (
    "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits)"
    " || !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k]))"
    " || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)"
)


class Resources(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(_REQUESTS_WITHIN_LIMITS, "each request must be at most its limit", field_path=".requests"),
        )
    }

    requests: dict[str, Quantity] = _quantities()  # type: ignore[assignment]
    limits: dict[str, Quantity] = _quantities()  # type: ignore[assignment]

    @field_validator("requests", "limits")
    @classmethod
    def _quantities_valid(cls, value: dict[str, Quantity]) -> dict[str, Quantity]:
        for name, quantity in value.items():
            if not re.fullmatch(QUANTITY_PATTERN, str(quantity)):
                raise ValueError(f"{name}: {quantity!r} is not a Kubernetes quantity such as 250m or 512Mi")
        return value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name, request in self.requests.items():
            if name in self.limits and parse_quantity(request) > parse_quantity(self.limits[name]):
                raise ValueError("each request must be at most its limit")
        return self


class HttpHeader(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(max_length=4096)]


class HttpGetAction(ApiModel):
    path: Annotated[str, Field(max_length=2048)] = "/"
    port: PortRef
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: Annotated[list[HttpHeader], Field(max_length=16)] | None = None


class TcpSocketAction(ApiModel):
    port: PortRef


class ExecAction(ApiModel):
    command: Annotated[list[str], Field(min_length=1, max_length=64)]


class GrpcAction(ApiModel):
    port: PortNumber
    service: str | None = None


_PROBE_HANDLERS = ("http_get", "tcp_socket", "exec", "grpc")
_PROBE_MESSAGE = "a probe needs exactly one of httpGet, tcpSocket, exec, grpc"


class Probe(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            exactly_one(("httpGet", "tcpSocket", "exec", "grpc"), _PROBE_MESSAGE)
        )
    }

    http_get: HttpGetAction | None = None
    tcp_socket: TcpSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GrpcAction | None = None
    initial_delay_seconds: Seconds | None = None
    period_seconds: PositiveInt32 | None = None
    timeout_seconds: PositiveInt32 | None = None
    success_threshold: PositiveInt32 | None = None
    failure_threshold: PositiveInt32 | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        check_exactly_one(self, _PROBE_HANDLERS, _PROBE_MESSAGE)
        return self


__all__ = [
    "DNS_LABEL_PATTERN",
    "ConfigFiles",
    "ContainerPort",
    "EnvFromSource",
    "EnvVar",
    "PortNumber",
    "PortRef",
    "Probe",
    "Resources",
]
