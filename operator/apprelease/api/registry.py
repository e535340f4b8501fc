"""Service registry settings: Kubernetes EndpointSlices by default, or a Nacos server."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ApiModel, cel, duration_seconds, validations
from .strategy import Duration, WarmupDuration, duration_description
from .workload import ObjectName

# Printable ASCII without space and "@" ("@@" separates group and service in Nacos).
NacosName = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[\x21-\x3f\x41-\x7e]+$")]


class CredentialsSecretRef(ApiModel):
    """A Secret in the AppRelease's namespace holding the Nacos username and password."""

    name: ObjectName
    username_key: str = "username"
    password_key: str = "password"


class NacosTLS(ApiModel):
    enabled: bool = True
    insecure_skip_verify: bool = False
    ca_secret: ObjectName | None = Field(
        None, description="Secret with key ca.crt to verify the Nacos server's certificate."
    )


# host:port or a URL, comma-separated for a Nacos cluster; never user:password@ (credentials
# belong in credentialsSecret: the spec is readable by everyone who can read the AppRelease).
_ADDRESS = r"[\x21-\x2b\x2d-\x3f\x41-\x7e]+"  # printable ASCII without space, "," and "@"
SERVER_ADDR_PATTERN = rf"^{_ADDRESS}(,{_ADDRESS})*$"


class NacosRegistry(ApiModel):
    server_addr: Annotated[
        str,
        Field(
            min_length=1, max_length=1024, pattern=SERVER_ADDR_PATTERN,
            json_schema_extra=validations(
                cel("!self.contains('@')",
                    "must not carry credentials (user:password@): use credentialsSecret"),
            ),
        ),
    ] = Field(
        description=(
            "host:port of the Nacos server (or a URL), e.g. nacos.nacos.svc:8848; a"
            " comma-separated list for a Nacos cluster (tried in turn, as Nacos clients do)."
        )
    )
    namespace: Annotated[str, Field(max_length=128)] = "public"
    group: NacosName = "DEFAULT_GROUP"
    cluster: NacosName = "DEFAULT"
    service_name: NacosName
    credentials_secret: CredentialsSecretRef | None = None
    tls: NacosTLS | None = None


class Registry(ApiModel):
    nacos: NacosRegistry | None = None
    gate_timeout: Duration = Field(
        "5m",
        description=duration_description(
            "A canary step waits this long for its pods to be registered and healthy, then aborts", "24h"),
    )
    drain_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        10, description="Seconds between the registry showing an instance offline and letting its pod go."
    )
    deletion_timeout: Duration = Field(
        "2m",
        description=duration_description(
            "When the AppRelease is deleted and the registry stays unreachable this long,"
            " deletion goes on without taking instances offline (a Warning Event says so)", "24h"),
    )
    cleanup_stale: bool = Field(
        False,
        description="Deregister persistent stale instances and disable ephemeral ones.",
    )
    warmup: WarmupDuration | None = Field(
        None,
        description=duration_description(
            "Ramp a new instance's Nacos weight from a tenth to full over this long after it"
            " starts serving (JVM apps are slow for their first minute), in every strategy", "1h"),
    )

    @property
    def gate_timeout_seconds(self) -> float:
        return duration_seconds(self.gate_timeout)

    @property
    def deletion_timeout_seconds(self) -> float:
        return duration_seconds(self.deletion_timeout)

    @property
    def warmup_seconds(self) -> float:
        return duration_seconds(self.warmup) if self.warmup is not None else 0.0
