"""The model a ModelDeployment serves: its artifact, runtime, and container settings."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from modelrollout.api.base import (
    DNS_LABEL,
    LABEL_VALUE,
    ApiModel,
    ModelUri,
    cel,
    cel_rules,
)

ModelFormat = Literal["sklearn", "onnx", "xgboost", "lightgbm", "custom"]
# The pattern Kubernetes' own CRDs give resource.Quantity (as controller-gen writes it), less the sign: requests
# and limits cannot be negative. Checked here and by the API server, so `cpu: lots` is refused at admission
# instead of failing every apply of the Deployment later.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_MESSAGE = "must be a Kubernetes quantity: a non-negative number with an optional suffix, e.g. 500m, 2, 1.5Gi"


def _quantity(value: int | str) -> int | str:
    bad = value < 0 if isinstance(value, int) else not re.fullmatch(QUANTITY_PATTERN, value)
    if bad:
        raise ValueError(f"{QUANTITY_MESSAGE} (got {value!r})")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            # Value checks, no CEL: a rule on every entry of two maps costs more than the schema's CEL budget allows.
            # The server applies `pattern` to strings and `minimum` to integers.
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
        }
    ),
]


class EnvVar(ApiModel):
    """An environment variable for the model server container (the Kubernetes EnvVar shape)."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name."
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef), "
        "as in a Pod's env[].valueFrom.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )


class ResourceRequirements(ApiModel):
    """CPU and memory for each model server pod, as in a container's `resources`."""

    requests: dict[str, Quantity] | None = Field(
        default=None, max_length=16, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, max_length=16, description="Maximum resources, e.g. {memory: 2Gi}."
    )


class ModelSpec(ApiModel):
    """The model artifact and the runtime that serves it. A change here starts a new revision and a rollout."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.format != 'custom' || has(self.className)",
                "model.format is custom: set model.className to the import path of the model class, "
                "e.g. mypkg.models:Scorer",
                field_path=".className",
                reason="FieldValueRequired",
            ),
            cel(
                "!has(self.className) || self.format == 'custom'",
                "model.className is only used with model.format: custom; remove it or set format: custom",
                field_path=".className",
            ),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Model name, reported as the `model` label.",
    )
    version: str = Field(
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
        description="Model version, reported as the `version` label of every metric (a Kubernetes label value).",
    )
    uri: ModelUri = Field(
        description="Where the model artifact is: an absolute path, file://, http(s):// or s3:// URI."
    )
    format: ModelFormat = Field(
        description="Runtime that loads the artifact: sklearn (joblib/pickle), onnx, xgboost, lightgbm, "
        "or custom (a Python class named by className)."
    )
    class_name: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="For format custom: `module.path:ClassName` of a class with load() and predict().",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="Expected SHA-256 of the artifact; the server refuses to start on a mismatch.",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Model server image; defaults to the operator's configured image.",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, description="Extra environment for the model server container."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Resources of each model server pod.")

    @model_validator(mode="after")
    def _class_name_matches_format(self) -> ModelSpec:
        if self.format == "custom" and not self.class_name:
            raise ValueError(
                "model.format is custom: set model.className to the import path of the model class, "
                "e.g. mypkg.models:Scorer"
            )
        if self.class_name and self.format != "custom":
            raise ValueError("model.className is only used with model.format: custom; remove it or set format: custom")
        return self
