"""Where and as whom the operator's pods run: what a platform team sets on every pod (`spec.pod`), in every mode.

The fields mean what they mean in a Pod's spec; objects whose shape Kubernetes defines at length (affinity,
topology spread constraints) are passed through and checked by the API server when it admits the pods'
Deployment. They are not part of the revision: changing them moves the pods of the revision the spec asks for
(a rolling update), and starts no rollout.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from modelrollout.api.base import ApiModel, cel, cel_rules

# A qualified name (label or annotation key): an optional DNS subdomain prefix and a name of 63 characters.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The operator's own keys: its selectors and Services depend on them, so a user's value must never replace them.
RESERVED_PREFIX = "modelrollout.dev/"
RESERVED_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/part-of")
_FREE_FORM: JsonDict = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


def _keys_message(field: str, reserved: tuple[str, ...]) -> str:
    own = ", ".join((f"{RESERVED_PREFIX}*", *reserved))
    return f"pod.{field} keys must be qualified names ([prefix/]name) and not the operator's own ({own})"


def _keys_rule(field: str, reserved: tuple[str, ...]) -> dict[str, str]:
    others = "".join(f" && k != '{key}'" for key in reserved)
    rule = (
        f"!has(self.{field}) || self.{field}.all(k, k.matches(r'{QUALIFIED_NAME}') "
        f"&& !k.startsWith('{RESERVED_PREFIX}'){others})"
    )
    return cel(rule, _keys_message(field, reserved), field_path=f".{field}")


def _check_keys(keys: dict[str, str] | None, field: str, reserved: tuple[str, ...]) -> None:
    for key in keys or {}:
        if not re.fullmatch(QUALIFIED_NAME, key) or key.startswith(RESERVED_PREFIX) or key in reserved:
            raise ValueError(f"{_keys_message(field, reserved)}; got {key!r}")


class Toleration(ApiModel):
    """A Pod toleration: pods may run on nodes with a matching taint."""

    key: str | None = Field(default=None, max_length=316, description="Taint key; empty with Exists: all taints.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty: all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="NoExecute only: how long the pod stays after the taint appears."
    )


class PodSettings(ApiModel):
    """Applied to every pod the operator makes for this ModelDeployment (model servers and, for node placement,
    labels and annotations, its router)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(_keys_rule("labels", RESERVED_LABELS), _keys_rule("annotations", ()))
    )

    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=32, description="Node labels the pods must run on, e.g. {gpu: 'a100'}."
    )
    tolerations: list[Toleration] | None = Field(default=None, max_length=32, description="Taints the pods tolerate.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A Pod's affinity (nodeAffinity, podAffinity, podAntiAffinity), as in a Pod's spec.",
        json_schema_extra=_FREE_FORM,
    )
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=16,
        description="A Pod's topologySpreadConstraints, as in a Pod's spec.",
        json_schema_extra={"type": "array", "maxItems": 16, "items": _FREE_FORM},
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN, description="ServiceAccount the model server pods run as."
    )
    image_pull_secrets: list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]] | None = Field(
        default=None, max_length=16, description="Names of Secrets to pull the images with."
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN, description="PriorityClass of the pods."
    )
    labels: dict[str, LabelValue] | None = Field(
        default=None, max_length=32, description="Extra labels on every pod (not the operator's own keys)."
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=32, description="Extra annotations on every pod (not the operator's own keys)."
    )

    @model_validator(mode="after")
    def _own_keys(self) -> PodSettings:
        _check_keys(self.labels, "labels", RESERVED_LABELS)
        _check_keys(self.annotations, "annotations", ())
        return self
