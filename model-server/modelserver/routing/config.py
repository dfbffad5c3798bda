"""The routing document (schemaVersion 1) the operator writes into the ConfigMap `<name>-router`, key `router.json`.

This is the router's own parser: the model-server image never imports the operator. Both parsers accept the
shared test vector tests/fixtures/router/config-v1.json, and both refuse a schemaVersion they do not know
rather than guess at its meaning.

    {"schemaVersion": 1, "route": "churn",
     "backends": {"stable": "http://churn-stable.ns.svc:80", "canary": "http://churn-canary.ns.svc:80"},
     "versions": {"stable": "1", "canary": "2"},
     "weights": {"stable": 90, "canary": 10}, "mirrorPercent": 0,
     "headerRoute": {"header": "x-canary", "exact": "yes"},
     "stickyBy": {"header": "x-user-id"},
     "timeoutSeconds": 10, "retryOnStable": false}

`stickyBy` is optional: `{"header": name}` or `{"cookie": name}` (exactly one), the key that assigns each user to
a variant so the canary's weight becomes a share of users (snapshot.py says how).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

SCHEMA_VERSION: Literal[1] = 1
CONFIG_KEY = "router.json"
# RFC 6265 cookie-name = token: a name outside it can be neither read from a Cookie header nor set.
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class RouterConfigError(ValueError):
    """A routing document the router cannot use, with the reason."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Backends(_Model):
    stable: str = Field(pattern=r"^https?://")
    canary: str | None = Field(default=None, pattern=r"^https?://")


class Versions(_Model):
    stable: str = Field(min_length=1, max_length=63)
    canary: str | None = Field(default=None, min_length=1, max_length=63)


class Weights(_Model):
    stable: int = Field(default=100, ge=0, le=100)
    canary: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _add_up(self) -> Weights:
        if self.stable + self.canary != 100:
            raise ValueError(f"weights must add up to 100, got stable={self.stable} canary={self.canary}")
        return self


class HeaderRoute(_Model):
    """Requests whose header matches go to the canary: an exact value, a regular expression (matched against
    the whole value), or, with neither set, mere presence of the header. Header names are case-insensitive."""

    header: str = Field(min_length=1, max_length=256)
    exact: str | None = Field(default=None, max_length=1024)
    regex: str | None = Field(default=None, max_length=1024)

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


class StickyBy(_Model):
    """The header or the cookie whose value (a user or session id) decides a request's variant."""

    header: str | None = Field(default=None, min_length=1, max_length=256)
    cookie: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _exactly_one(self) -> StickyBy:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("stickyBy sets exactly one of header or cookie")
        if self.cookie is not None and not COOKIE_NAME.fullmatch(self.cookie):
            raise ValueError(f"stickyBy.cookie {self.cookie!r} is not a cookie name (an RFC 6265 token)")
        return self


class RouterConfig(_Model):
    """Version 1 of the routing document."""

    schema_version: Literal[1] = SCHEMA_VERSION
    route: str = Field(min_length=1, max_length=253)
    backends: Backends
    versions: Versions
    weights: Weights = Weights()
    mirror_percent: int = Field(default=0, ge=0, le=100)
    header_route: HeaderRoute | None = None
    sticky_by: StickyBy | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    retry_on_stable: bool = False

    @model_validator(mode="after")
    def _canary_when_used(self) -> RouterConfig:
        uses_canary = self.weights.canary > 0 or self.mirror_percent > 0 or self.header_route is not None
        if uses_canary and self.backends.canary is None:
            raise ValueError("weights, mirror or a header route send traffic to the canary but it has no backend")
        if self.backends.canary is not None and self.versions.canary is None:
            raise ValueError("backends.canary is set but versions.canary is not")
        return self


def parse_document(text: str | bytes) -> RouterConfig:
    """The routing document in `text`; RouterConfigError says why it cannot be used."""
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RouterConfigError(f"{CONFIG_KEY} is not a JSON object")
    version = body.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise RouterConfigError(f"{CONFIG_KEY} has schemaVersion {version!r}; this router reads {SCHEMA_VERSION}")
    try:
        return RouterConfig.model_validate(body)
    except ValidationError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is invalid: {_short(exc)}") from None


def route_of(text: str | bytes) -> str | None:
    """The `route` a document names, even an invalid one, for labelling the failed reload; None if none."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    route = body.get("route") if isinstance(body, dict) else None
    return route if isinstance(route, str) and route else None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
