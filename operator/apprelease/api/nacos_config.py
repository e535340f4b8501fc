"""spec.config.nacos: the Nacos dataIds an app reads, released with its pods.

The operator publishes each revision's content to an immutable copy in group
``<group>.rev-<confighash>`` before any pod of that revision exists, and points the pods at it
by env; the item's own group (the "formal" dataId) carries the stable revision's content for
people and other readers. docs/nacos-config.md says why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import ApiModel, cel, check_exactly_one, exactly_one, validations
from .registry import SERVER_ADDR_PATTERN, CredentialsSecretRef

# What Nacos accepts in a dataId or group (its ParamUtils.isValid).
NACOS_NAME_PATTERN = r"^[a-zA-Z0-9\-_.:]+$"
MAX_DATA_ID = 255
# Nacos allows 127 for a group; ".rev-" plus the 10-hex config hash must still fit.
MAX_GROUP = 100
# The CR is stored in etcd (1.5 MiB per object): inline content is bounded well below Nacos'
# own default maxContent (10 MiB). Counted in characters, as CEL does.
MAX_INLINE_CONTENT = 100 * 1024
MAX_ITEMS = 64
NACOS_FROM_FILE_MESSAGE = "fromFile must name a key of spec.config.files"
_UNIQUE_KEYS = "self.all(a, self.exists_one(b, b.dataId == a.dataId && b.group == a.group))"
_UNIQUE_MESSAGE = "each (group, dataId) may appear only once"

ConfigType = Literal["yaml", "properties", "json", "text"]
NacosConfigName = Annotated[str, Field(min_length=1, pattern=NACOS_NAME_PATTERN)]


class NacosConfigItem(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            exactly_one(("content", "fromFile"), "set exactly one of content and fromFile"),
        )
    }

    data_id: Annotated[NacosConfigName, Field(max_length=MAX_DATA_ID)]
    group: Annotated[NacosConfigName, Field(max_length=MAX_GROUP)] = "DEFAULT_GROUP"
    type: ConfigType = Field("text", description="yaml, json and properties must parse as such.")
    content: Annotated[str, Field(min_length=1, max_length=MAX_INLINE_CONTENT)] | None = Field(
        None, description="The content, inline (at most 100 Ki characters: the AppRelease is kept in etcd)."
    )
    from_file: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        None, description="The content of this key of spec.config.files."
    )

    @model_validator(mode="after")
    def _one_source(self) -> NacosConfigItem:
        check_exactly_one(self, ("content", "from_file"), "set exactly one of content and fromFile")
        return self


class NacosConfig(ApiModel):
    items: Annotated[
        list[NacosConfigItem],
        Field(min_length=1, max_length=MAX_ITEMS,
              json_schema_extra=validations(cel(_UNIQUE_KEYS, _UNIQUE_MESSAGE))),
    ]
    enforce: bool = Field(
        False,
        description=(
            "Put a hand-edited dataId back at once (the edit is first saved to <group>.drift-<md5>);"
            " otherwise at the next revision or promotion."
        ),
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description=(
            "On deleting the AppRelease: Retain leaves the formal dataIds (the operator's .rev-"
            " copies are deleted), Delete removes both."
        ),
    )
    server_addr: Annotated[str, Field(min_length=1, max_length=1024, pattern=SERVER_ADDR_PATTERN)] | None = Field(
        None, description="Default: spec.registry.nacos.serverAddr."
    )
    namespace: Annotated[str, Field(max_length=128)] | None = Field(
        None, description="Default: spec.registry.nacos.namespace."
    )
    credentials_secret: CredentialsSecretRef | None = Field(
        None, description="Default: spec.registry.nacos.credentialsSecret."
    )

    @model_validator(mode="after")
    def _unique(self) -> NacosConfig:
        keys = [(i.group, i.data_id) for i in self.items]
        if len(keys) != len(set(keys)):
            raise ValueError(f"items: {_UNIQUE_MESSAGE}")
        return self


def nacos_config_rules() -> list[dict[str, Any]]:
    """CEL on spec.config: fromFile names one of its files."""
    return [cel(
        "!has(self.nacos) || self.nacos.items.all(i, !has(i.fromFile)"
        " || (has(self.files) && i.fromFile in self.files))",
        NACOS_FROM_FILE_MESSAGE, field_path=".nacos.items",
    )]


# On AppReleaseSpec: where the config lives when config.nacos has no server of its own.
NEEDS_A_SERVER_RULE = (
    "!has(self.config) || !has(self.config.nacos) || has(self.config.nacos.serverAddr)"
    " || (has(self.registry) && has(self.registry.nacos))"
)
NEEDS_A_SERVER_MESSAGE = "config.nacos needs serverAddr or registry.nacos"
