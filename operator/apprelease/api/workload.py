"""What the pods run: ports, env, config files, resources, probes.

Field names follow Kubernetes' own (``containerPort``, ``secretKeyRef``, ``httpGet``) so the
YAML reads like the five hand-written manifests it replaces.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import (
    CONFIGMAP_KEY_PATTERN,
    DNS_LABEL_PATTERN,
    ENV_NAME,
    ENV_NAME_PATTERN,
    INT32_MAX,
    PORT_NAME_PATTERN,
    QUALIFIED_NAME,
    ApiModel,
    ObjectName,
    cel,
    cel_regex,
    check_exactly_one,
    exactly_one,
    validations,
)
from .nacos_config import NACOS_FROM_FILE_MESSAGE, NacosConfig, nacos_config_rules
from .resources import Quantity, Resources

PortNumber = Annotated[int, Field(ge=1, le=65535)]
EnvName = Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)]
_IANA_RULE = "self.matches('[a-z]') && !self.contains('--')"
_IANA_MESSAGE = "must contain a letter and no '--' (an IANA service name)"


def _iana_name(name: str) -> str:
    if not re.search("[a-z]", name) or "--" in name:
        raise ValueError(_IANA_MESSAGE)
    return name


# Field before the validator: pydantic leaves a constraint after a validator out of the schema.
PortName = Annotated[
    str,
    Field(min_length=1, max_length=15, pattern=PORT_NAME_PATTERN,
          json_schema_extra=validations(cel(_IANA_RULE, _IANA_MESSAGE))),
    AfterValidator(_iana_name),
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


# The downward-API fields Kubernetes lets an env var read (pkg/apis/core/validation).
FIELD_PATH_PATTERN = (
    r"^(metadata\.(name|namespace|uid)|spec\.(nodeName|serviceAccountName)|status\.(hostIPs?|podIPs?)"
    rf"|metadata\.(labels|annotations)\['{QUALIFIED_NAME}'\])$"
)
_FIELD_PATH_MESSAGE = (
    "must be metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'],"
    " metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP,"
    " status.hostIPs, status.podIP or status.podIPs"
)
RESOURCE_FIELD_PATTERN = (
    r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[1-9][0-9]{0,3}(Ki|Mi|Gi))$"
)
_RESOURCE_FIELD_MESSAGE = (
    "must be limits. or requests. followed by cpu, memory, ephemeral-storage or hugepages-<page size>"
)
CPU_DIVISORS = ("1m", "1")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
_DIVISOR_MESSAGE = (
    f"divisor must be {' or '.join(CPU_DIVISORS)} for cpu, and one of {', '.join(BYTE_DIVISORS)}"
    " for memory, ephemeral-storage and hugepages"
)


def _matching(pattern: str, message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class FieldSelector(ApiModel):
    field_path: Annotated[
        str,
        Field(min_length=1, max_length=256, json_schema_extra=validations(
            cel(f"self.matches({cel_regex(FIELD_PATH_PATTERN)})", _FIELD_PATH_MESSAGE))),
        _matching(FIELD_PATH_PATTERN, _FIELD_PATH_MESSAGE),
    ]
    api_version: Literal["v1"] | None = None


class ResourceFieldSelector(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.divisor) || (self.resource.endsWith('.cpu')"
                f" ? string(self.divisor) in {_cel_list(CPU_DIVISORS)}"
                f" : string(self.divisor) in {_cel_list(BYTE_DIVISORS)})",
                _DIVISOR_MESSAGE, field_path=".divisor"),
        )
    }

    resource: Annotated[
        str,
        Field(min_length=1, max_length=64, json_schema_extra=validations(
            cel(f"self.matches({cel_regex(RESOURCE_FIELD_PATTERN)})", _RESOURCE_FIELD_MESSAGE))),
        _matching(RESOURCE_FIELD_PATTERN, _RESOURCE_FIELD_MESSAGE),
    ]
    container_name: str | None = None
    divisor: Quantity | None = None

    @model_validator(mode="after")
    def _divisor(self) -> ResourceFieldSelector:
        allowed = CPU_DIVISORS if self.resource.endswith(".cpu") else BYTE_DIVISORS
        if self.divisor is not None and str(self.divisor) not in allowed:
            raise ValueError(_DIVISOR_MESSAGE)
        return self


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

    prefix: Annotated[str, Field(max_length=64, pattern=f"^({ENV_NAME})?$")] | None = None
    secret_ref: NamedRef | None = None
    config_map_ref: NamedRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        check_exactly_one(self, ("secret_ref", "config_map_ref"),
                          "envFrom needs exactly one of secretRef, configMapRef")
        return self


_KEY_RULE = f"self.all(k, k.size() <= 253 && k.matches({cel_regex(CONFIGMAP_KEY_PATTERN)}))"
_KEY_MESSAGE = (
    "keys must be valid ConfigMap keys: letters, digits, '-', '_' or '.', at most 253 characters,"
    " not '.' and not starting with '..'"
)
_ENV_KEY_RULE = f"self.all(k, k.size() <= 253 && k.matches({cel_regex(ENV_NAME_PATTERN)}))"
_ENV_KEY_MESSAGE = (
    "keys must be environment variable names (letters, digits, '-', '_' or '.', not starting with"
    " a digit or '..') of at most 253 characters: they are ConfigMap keys too"
)
# A ConfigMap holds at most 1 MiB of values. CEL counts characters (a byte count would cost
# more than the apiserver allows for 256 files); the renderer checks the UTF-8 bytes.
CONFIGMAP_MAX_DATA = 1024 * 1024
_CONFIG_SIZE_RULE = (
    "(has(self.files) ? self.files.map(k, size(self.files[k])).sum() : 0)"
    f" + (has(self.env) ? self.env.map(k, size(self.env[k])).sum() : 0) <= {CONFIGMAP_MAX_DATA}"
)
_CONFIG_SIZE_MESSAGE = "files and env values must be at most 1 MiB in total (one ConfigMap holds them)"


class ConfigFiles(ApiModel):
    """Config files and values, stored in an immutable ConfigMap named by content hash.

    A change of any file is a new revision, and a rollback mounts the old revision's
    ConfigMap again (it is kept while the revision is in history).
    """

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.files) || self.files.size() == 0 || has(self.mountPath)",
                "mountPath is required when files are given", field_path=".mountPath"),
            cel("!has(self.files) || !has(self.env) || self.files.all(k, !(k in self.env))",
                "files and env must not share keys (one ConfigMap holds both)", field_path=".env"),
            cel(_CONFIG_SIZE_RULE, _CONFIG_SIZE_MESSAGE),
            *nacos_config_rules(),
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
        Field(json_schema_extra=validations(cel(_ENV_KEY_RULE, _ENV_KEY_MESSAGE), maxProperties=256)),
    ] = Field(default_factory=dict, description="Config values exposed to the container as env.")
    nacos: NacosConfig | None = Field(
        None,
        description=(
            "Nacos dataIds the app reads, released with the pods: each revision reads its own"
            " immutable copy in group <group>.rev-<hash> (see docs/nacos-config.md)."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ConfigFiles:
        for key in self.files:
            if len(key) > 253 or not re.fullmatch(CONFIGMAP_KEY_PATTERN, key):
                raise ValueError(f"files: {key!r}: {_KEY_MESSAGE}")
        for key in self.env:
            if len(key) > 253 or not re.fullmatch(ENV_NAME_PATTERN, key):
                raise ValueError(f"env: {key!r}: {_ENV_KEY_MESSAGE}")
        if sum(map(len, self.files.values())) + sum(map(len, self.env.values())) > CONFIGMAP_MAX_DATA:
            raise ValueError(_CONFIG_SIZE_MESSAGE)
        overlap = set(self.files) & set(self.env)
        if overlap:
            raise ValueError(f"files and env share keys {sorted(overlap)}")
        if self.files and not self.mount_path:
            raise ValueError("mountPath is required when files are given")
        if self.nacos is not None:
            for index, item in enumerate(self.nacos.items):
                if item.from_file is not None and item.from_file not in self.files:
                    raise ValueError(f"nacos.items[{index}].fromFile: {NACOS_FROM_FILE_MESSAGE}")
        return self


class HttpHeader(ApiModel):
    # What Kubernetes accepts as a probe's header name.
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[-A-Za-z0-9]+$")]
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
