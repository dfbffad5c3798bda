"""The routing document (schemaVersion 1) the operator writes into the ConfigMap `<name>-router`, key
`router.json`, and our router (`modelserver route`) reads: one model, one parser, for both sides.

    {"schemaVersion": 1, "route": "churn",
     "backends": {"stable": "http://churn-stable.ns.svc:80", "canary": "http://churn-canary.ns.svc:80"},
     "versions": {"stable": "1", "canary": "2"},
     "weights": {"stable": 90, "canary": 10}, "mirrorPercent": 0,
     "headerRoute": {"header": "x-canary", "exact": "yes"},
     "stickyBy": {"header": "x-user-id"},
     "timeoutSeconds": 10, "retryOnStable": false}

`route` is the label value the router puts on its metrics (modelrouter_*{route=...}), which the shadow builtins
select on; `versions` are the model versions behind each role (the metrics' `version` label). `stickyBy`
(optional: `{"header": name}` or `{"cookie": name}`, exactly one) makes the canary's weight a share of users
rather than of requests (`sticky` says how a key is assigned). A reader refuses a schemaVersion it does not know
rather than guess at its meaning. `vectors/router/` holds documents both sides accept and documents both refuse.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from modelrollout_contract.sticky import is_cookie_name

SCHEMA_VERSION: Literal[1] = 1
CONFIG_KEY = "router.json"


class RouterConfigError(ValueError):
    """A routing document that cannot be used, with the reason."""


class ContractModel(BaseModel):
    """A document part: immutable, closed to unknown fields, camelCase on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


_M = TypeVar("_M", bound=BaseModel)


class Backends(ContractModel):
    stable: str = Field(pattern=r"^https?://", description="Base URL of the stable Service.")
    canary: str | None = Field(default=None, pattern=r"^https?://", description="Base URL of the canary Service.")


class Versions(ContractModel):
    stable: str = Field(min_length=1, max_length=63, description="Model version the stable role serves.")
    canary: str | None = Field(default=None, min_length=1, max_length=63, description="The canary's.")


def check_weights(stable: int, canary: int) -> None:
    if not (0 <= stable <= 100 and 0 <= canary <= 100) or stable + canary != 100:
        raise ValueError(f"weights must be 0..100 and add up to 100, got stable={stable} canary={canary}")


class Weights(ContractModel):
    stable: int = Field(default=100, ge=0, le=100)
    canary: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _add_up(self) -> Weights:
        check_weights(self.stable, self.canary)
        return self


class HeaderRoute(ContractModel):
    """Requests whose header matches go to the canary: an exact value, a regular expression (matched against the
    whole value), or, with neither set, mere presence of the header. Header names are case-insensitive."""

    header: str = Field(min_length=1, max_length=256, description="Header name (case-insensitive).")
    exact: str | None = Field(default=None, max_length=1024, description="Value that must match exactly.")
    regex: str | None = Field(default=None, max_length=1024, description="Pattern the whole value must match.")

    @model_validator(mode="after")
    def _one_way(self) -> HeaderRoute:
        if self.exact is not None and self.regex is not None:
            raise ValueError("a header route sets at most one of exact or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"headerRoute.regex {self.regex!r} does not compile: {exc}") from None
        return self


class StickyBy(ContractModel):
    """The header or the cookie whose value (a user or session id) decides a request's variant."""

    header: str | None = Field(default=None, min_length=1, max_length=256, description="Header name.")
    cookie: str | None = Field(default=None, min_length=1, max_length=256, description="Cookie name.")

    @model_validator(mode="after")
    def _exactly_one(self) -> StickyBy:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("stickyBy sets exactly one of header or cookie")
        if self.cookie is not None and not is_cookie_name(self.cookie):
            raise ValueError(f"stickyBy.cookie {self.cookie!r} is not a cookie name (an RFC 6265 token)")
        return self


class RouterConfig(ContractModel):
    """Version 1 of the routing document."""

    schema_version: Literal[1] = SCHEMA_VERSION
    route: str = Field(min_length=1, max_length=253)
    backends: Backends
    versions: Versions
    weights: Weights = Weights()
    mirror_percent: int = Field(default=0, ge=0, le=100)
    header_route: HeaderRoute | None = None
    sticky_by: StickyBy | None = Field(default=None, description="Split users by this header or cookie value.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=3600, description="Per upstream call.")
    retry_on_stable: bool = Field(default=False, description="Answer from stable when the canary fails.")

    @model_validator(mode="after")
    def _canary_when_used(self) -> RouterConfig:
        uses_canary = self.weights.canary > 0 or self.mirror_percent > 0 or self.header_route is not None
        if uses_canary and self.backends.canary is None:
            raise ValueError("weights, mirror or a header route send traffic to the canary but it has no backend")
        if (self.backends.canary is None) != (self.versions.canary is None):
            # The router labels every answer with the version behind its role: a backend needs its version.
            raise ValueError("backends.canary and versions.canary are set together or not at all")
        return self


def parse_document(text: str | bytes) -> RouterConfig:
    """The routing document in `text`; RouterConfigError says why it cannot be used."""
    body = json_object(text)
    version = body.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise RouterConfigError(f"{CONFIG_KEY} has schemaVersion {version!r}; this reader knows {SCHEMA_VERSION}")
    return validated(RouterConfig, body)


def json_object(text: str | bytes) -> dict[str, Any]:
    """The JSON object in `text`; RouterConfigError when it is not JSON or not an object."""
    try:
        body: Any = json.loads(text)
    except ValueError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RouterConfigError(f"{CONFIG_KEY} is not a JSON object")
    return body


def validated(model: type[_M], body: dict[str, Any]) -> _M:
    """`body` as `model`; RouterConfigError names every field in the way."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is invalid: {_short(exc)}") from None


def to_document(config: RouterConfig) -> str:
    """The document's text. Sorted keys and no spaces: the same routing is always the same bytes, so re-writing
    it is a no-op for the API server."""
    body = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def route_of(text: str | bytes) -> str | None:
    """The `route` a document names, even an invalid one (to label a failed reload); None if it names none."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    route = body.get("route") if isinstance(body, dict) else None
    return route if isinstance(route, str) and route else None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
