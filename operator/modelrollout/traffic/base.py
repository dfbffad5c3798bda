"""The one interface every traffic router implements (service, router, gatewayAPI, istio).

Weights are per role: `stable` is whatever status.stable names, `canary` whatever status.canary names; a router
never needs to know revisions, because the `<name>-stable` and `<name>-canary` Services follow the roles.
"""

from __future__ import annotations

from typing import Protocol

from modelrollout_contract.router import HeaderRoute, StickyBy, check_weights
from modelrollout_contract.sticky import is_cookie_name

# What a router is told, as the routing document says it (one model for the operator and our router).
HeaderMatch = HeaderRoute

__all__ = ["HeaderMatch", "StickyBy", "TrafficRouter", "check_weights", "is_cookie_name"]


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
