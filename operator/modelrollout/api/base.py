"""Building blocks shared by the spec and status models: camelCase aliases, checked strings, CEL rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from modelrollout_contract import sticky

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# RFC 6265 cookie-name = token (the contract's, which our router applies too).
COOKIE_NAME = sticky.COOKIE_NAME
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry. `field_path` points the API server's error at the offending field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    """json_schema_extra for a model whose cross-field rules the API server enforces with CEL."""
    return {"x-kubernetes-validations": list(rules)}


@dataclass(frozen=True)
class Matches:
    """Annotation for a string that must match `pattern`, rejected with `message` rather than a bare regex, by
    pydantic and by the API server alike (which gets the check as a CEL rule)."""

    pattern: str
    message: str
    max_length: int

    def __post_init__(self) -> None:
        if "'" in self.pattern:
            raise ValueError("a Matches pattern cannot contain a single quote (the CEL raw string delimiter)")

    def check(self, value: str) -> str:
        if len(value) > self.max_length or not re.search(self.pattern, value):
            raise ValueError(f"{self.message} (got {value!r})")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # A CEL raw string: backslashes in the pattern reach the regex engine unescaped.
        rule = cel(f"self.matches(r'{self.pattern}')", self.message)
        return {"type": "string", "maxLength": self.max_length, "x-kubernetes-validations": [rule]}


Duration = Annotated[
    str, Matches(DURATION_PATTERN, "must be a duration: a number and a unit (ms, s, m, h), e.g. 30s, 2m or 1h30m", 32)
]
"""A non-negative duration such as `500ms`, `30s`, `2m`, `1h` or `1h30m` (the Kubernetes/Go style)."""

ModelUri = Annotated[
    str,
    Matches(r"^(/|file://|https?://|s3://)", "must be an absolute path or a file://, http(s):// or s3:// URI", 2048),
]

CronSchedule = Annotated[
    str,
    Matches(
        r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$",
        "must be a cron schedule of 5 fields (minute hour day month weekday), e.g. '0 2 * * *', or @daily/@hourly",
        128,
    ),
]


def duration_seconds(value: str) -> float:
    """Seconds in a Duration string; raises ValueError for anything the CRD pattern would reject."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration: use a number and a unit, e.g. 30s, 2m, 1h, 500ms")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(value))


class ApiModel(BaseModel):
    """Base of every CRD data shape: camelCase on the wire, snake_case in Python, unknown fields rejected.

    Unknown fields are errors (not silently dropped) because a typo such as `setweight` must never turn a
    canary step into a no-op.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form the API server stores: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(ApiModel):
    """A key in a Secret in the ModelDeployment's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")
