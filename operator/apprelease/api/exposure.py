"""How the app is reached: Service and Ingress."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import (
    DNS_HOST_PATTERN,
    HTTP_PATH_MESSAGE,
    HTTP_PATH_RULE,
    LABEL_VALUE_PATTERN,
    ApiModel,
    cel,
    check_http_path,
    check_qualified_names,
    qualified_name_rule,
    validations,
)
from .workload import ObjectName, PortNumber, PortRef

Host = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_HOST_PATTERN)]
HttpPath = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=r"^/",
          json_schema_extra=validations(cel(HTTP_PATH_RULE, HTTP_PATH_MESSAGE))),
    AfterValidator(check_http_path),
]
PathType = Literal["Prefix", "Exact", "ImplementationSpecific"]
# Labels we set on every child: selectors, informers and ownership checks rely on them.
RESERVED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")
_NOT_RESERVED = (
    "self.all(k, !(k in [" + ", ".join(f"'{k}'" for k in RESERVED_LABELS) + "])"
    " && !k.startsWith('apprelease.io/'))"
)
_RESERVED_MESSAGE = "must not set app.kubernetes.io/name, instance, managed-by or apprelease.io/ labels"


# Kubernetes allows 256 KiB of annotations (keys and values, in bytes) on an object; the
# operator adds its own (the nginx canary's weight), so the user's get 1 KiB less.
MAX_ANNOTATION_BYTES = 256 * 1024 - 1024
_ANNOTATION_SIZE_RULE = f"self.map(k, size(k) + size(bytes(self[k]))).sum() <= {MAX_ANNOTATION_BYTES}"
_ANNOTATION_SIZE_MESSAGE = (
    f"annotations must be at most {MAX_ANNOTATION_BYTES} bytes in total, keys and values"
    " (Kubernetes allows 256 KiB; the operator adds its own)"
)


def _annotations(value: dict[str, str]) -> dict[str, str]:
    check_qualified_names(value, "annotation")
    if sum(len(k.encode()) + len(v.encode()) for k, v in value.items()) > MAX_ANNOTATION_BYTES:
        raise ValueError(_ANNOTATION_SIZE_MESSAGE)
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    check_qualified_names(value, "label")
    if any(k in RESERVED_LABELS or k.startswith("apprelease.io/") for k in value):
        raise ValueError(_RESERVED_MESSAGE)
    return value


Annotations = Annotated[
    dict[str, Annotated[str, Field(max_length=65536)]],
    AfterValidator(_annotations),
    Field(json_schema_extra=validations(
        qualified_name_rule("annotation"), cel(_ANNOTATION_SIZE_RULE, _ANNOTATION_SIZE_MESSAGE),
        maxProperties=64,
    )),
]
Labels = Annotated[
    dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]],
    AfterValidator(_labels),
    Field(json_schema_extra=validations(
        qualified_name_rule("label"), cel(_NOT_RESERVED, _RESERVED_MESSAGE), maxProperties=64,
    )),
]


class ServiceSpec(ApiModel):
    """The Service selects every pod of the app (stable and canary alike)."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: PortNumber | None = Field(
        None, description="Service port of the first container port (e.g. 80 in front of 5000)."
    )
    node_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="nodePort of the first container port (NodePort/LoadBalancer only)."
    )
    annotations: Annotations = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.nodePort) || self.type != 'ClusterIP'",
                "nodePort needs type NodePort or LoadBalancer", field_path=".nodePort"),
        )
    }

    @model_validator(mode="after")
    def _node_port_needs_type(self) -> ServiceSpec:
        if self.node_port is not None and self.type == "ClusterIP":
            raise ValueError("nodePort needs type NodePort or LoadBalancer")
        return self


class IngressPath(ApiModel):
    path: HttpPath = "/"
    path_type: PathType = "Prefix"
    port: PortRef | None = Field(
        None,
        description="Service port number or container port name to route to; default: the first port.",
    )


class IngressRule(ApiModel):
    host: Host | None = None
    paths: Annotated[list[IngressPath], Field(min_length=1, max_length=32)] = Field(
        default_factory=lambda: [IngressPath()]
    )


class IngressTLS(ApiModel):
    hosts: Annotated[list[Host], Field(max_length=32)] = Field(default_factory=list)
    secret_name: ObjectName | None = None


class IngressSpec(ApiModel):
    """Either the one-host shorthand (host/path) or full rules, not both."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("!(has(self.rules) && size(self.rules) > 0 && (has(self.host) || has(self.path)))",
                "use host/path or rules, not both", field_path=".rules"),
        )
    }

    host: Host | None = None
    path: HttpPath | None = None
    path_type: PathType = "Prefix"
    port: PortRef | None = None
    rules: Annotated[list[IngressRule], Field(max_length=32)] = Field(default_factory=list)
    class_name: ObjectName | None = None
    annotations: Annotations = Field(default_factory=dict)
    tls: Annotated[list[IngressTLS], Field(max_length=32)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shorthand_or_rules(self) -> IngressSpec:
        if self.rules and (self.host is not None or self.path is not None):
            raise ValueError("use host/path or rules, not both")
        return self

    def effective_rules(self) -> list[IngressRule]:
        if self.rules:
            return list(self.rules)
        return [
            IngressRule(
                host=self.host,
                paths=[IngressPath(path=self.path or "/", path_type=self.path_type, port=self.port)],
            )
        ]
