"""The ModelDeployment resource as a whole: identity (group, version, names) plus metadata, spec and status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelrollout.api.base import ApiModel
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus

GROUP = "modelrollout.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("mdep",)
CATEGORIES = ("all", "ml")

# Child Deployments are `<name>-<8-char revision>` and CronJobs carry the same name, which Kubernetes limits to
# 52 characters; stream Deployments add `-stream-`. 40 leaves room for all of them.
NAME_MAX_LENGTH = 40
NAME_TOO_LONG = (
    f"metadata.name must be at most {NAME_MAX_LENGTH} characters: child objects are named "
    "<name>-<revision> and Kubernetes limits CronJob names to 52"
)


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; everything else is kept as it is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(ApiModel):
    """A machine-learning model served online, in batch and/or on a stream, with progressive rollout."""

    api_version: Literal["modelrollout.dev/v1alpha1"] = Field(default="modelrollout.dev/v1alpha1", alias="apiVersion")
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @model_validator(mode="after")
    def _name_fits_children(self) -> ModelDeployment:
        if self.metadata.name and len(self.metadata.name) > NAME_MAX_LENGTH:
            raise ValueError(NAME_TOO_LONG)
        return self

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        body["metadata"] = self.metadata.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        return body
