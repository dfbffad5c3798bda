"""The one interface every traffic router implements (service, router, gatewayAPI, istio).

Weights are per role: `stable` is whatever status.stable names, `canary` whatever status.canary names; a router
never needs to know revisions, because the `<name>-stable` and `<name>-canary` Services follow the roles.
"""

from __future__ import annotations

import re
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from modelrollout.api.base import COOKIE_NAME

_COOKIE_NAME = re.compile(COOKIE_NAME)


def is_cookie_name(name: str) -> bool:
    """Whether `name` can name a cookie (an RFC 6265 token): no other name can be read or set."""
    return _COOKIE_NAME.match(name) is not None


class HeaderMatch(BaseModel):
    """Requests whose header matches go to the canary: an exact value, a regular expression, or (neither set)
    mere presence of the header."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    header: str = Field(min_length=1, max_length=256, description="Header name (case-insensitive).")
    exact: str | None = Field(default=None, max_length=1024, description="Value that must match exactly.")
    regex: str | None = Field(default=None, max_length=1024, description="RE2 pattern the value must match.")

    @model_validator(mode="after")
    def _one_way(self) -> HeaderMatch:
        if self.exact is not None and self.regex is not None:
            raise ValueError("a header match sets at most one of exact or regex")
        return self


class StickyBy(BaseModel):
    """A/B tests split users, not requests: a request's variant follows the value of this header or cookie (a user
    id, a session id), so one user always sees one variant."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    header: str | None = Field(default=None, min_length=1, max_length=256, description="Header holding the key.")
    cookie: str | None = Field(default=None, min_length=1, max_length=256, description="Cookie holding the key.")

    @model_validator(mode="after")
    def _exactly_one(self) -> StickyBy:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("sticky assignment is by exactly one of header or cookie")
        if self.cookie is not None and not is_cookie_name(self.cookie):
            raise ValueError(f"stickyBy.cookie {self.cookie!r} is not a cookie name (an RFC 6265 token)")
        return self


class TrafficRouter(Protocol):
    """Moves live traffic between the stable and canary roles. Every method is idempotent: the operator may
    repeat a call after a crash, and repeating it must change nothing."""

    async def set_weights(self, stable: int, canary: int) -> None:
        """Send `stable`% of requests to stable and `canary`% to the canary (the two add up to 100)."""
        ...

    async def set_mirror(self, percent: int) -> None:
        """Copy `percent`% of requests to the canary; clients only ever receive stable's answers."""
        ...

    async def set_header_route(self, match: HeaderMatch | None) -> None:
        """Send requests matching `match` to the canary whatever the weights; None removes the route."""
        ...

    async def set_sticky(self, by: StickyBy | None) -> None:
        """While set, the canary's weight is a share of users: each request goes to the variant its `by` value is
        assigned to, so a user stays on one variant. None: back to splitting requests."""
        ...

    async def verify(self) -> bool:
        """Whether the routing last set is the routing in place."""
        ...

    async def reset(self) -> None:
        """Everything to stable: weights 100/0, no mirror, no header route, no sticky assignment."""
        ...


def check_weights(stable: int, canary: int) -> None:
    """The invariant every router relies on; a violation is a bug in the caller, so it raises."""
    if not (0 <= stable <= 100 and 0 <= canary <= 100 and stable + canary == 100):
        raise ValueError(f"weights must be percentages adding up to 100, got stable={stable} canary={canary}")
