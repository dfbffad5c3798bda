"""What the Gateway API and Istio routers share: the routing they express, and read-modify-write of a user's
object with a resourceVersion precondition.

Both edit objects the user owns (an HTTPRoute, a VirtualService) whose lists of rules have no merge key
(`x-kubernetes-list-type: atomic` for HTTPRoute rules, no list type at all for VirtualService routes), so
server-side apply cannot own one rule: applying the list would claim all of it. Instead every change reads the
object, rewrites only the rule we manage (plus the rules we add), and writes the list back as a merge patch
carrying the resourceVersion it was read at; when someone wrote in between, the API server answers 409 and we
start again from their version. Users' edits to other rules therefore always survive. The same patch carries the
ModelDeployment's mark (traffic.marks: what the object said before we first changed it), so the two are never
out of step and a cleanup can give the user's object back without the operator having seen the deletion.

An A/B test's sticky assignment (`Routing.sticky`) cannot be said with weights (neither API hashes a header
value): `Routing.rendered()` turns it into weights 100/0 plus a header route on the key's last two hex digits
(traffic.buckets), and the routers read such a header route back as the assignment, so the round trip is
lossless. At canary 0% (or 100%) there is nothing to split: the object then holds no header route and so does
not remember the assignment; `converge(..., sticky=...)` says weights and assignment in one write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from modelrollout.traffic.base import HeaderMatch, StickyBy, check_weights
from modelrollout.traffic.buckets import sticky_from_match, sticky_match

Object = dict[str, Any]
ReadObject = Callable[[], Awaitable[Object | None]]
# (merge patch of the object, resourceVersion read) -> the object as stored; raises Conflict on a stale version.
WritePatch = Callable[[Object, str], Awaitable[Object]]
CONFLICT_RETRIES = 8
# Our own rules and routes are recognised by this suffix on their name.
HEADER_SUFFIX = "-modelrollout-header"
PRESENCE_REGEX = ".*"


logger = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed after we read it (the resourceVersion precondition failed)."""


class UnsupportedField(Exception):
    """The installed CRD does not know a field we sent (strict field validation refused it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RoutingTargetError(RuntimeError):
    """The user's routing object is missing, or lacks the rule or route we were told to manage."""


@dataclass(frozen=True, slots=True)
class Routing:
    """Everything a router expresses: weights per role, the mirrored share, the header route, and the sticky
    assignment of an A/B test (with it, `canary` is a share of users, not of requests)."""

    stable: int = 100
    canary: int = 0
    mirror: int = 0
    header: HeaderMatch | None = None
    sticky: StickyBy | None = None

    def __post_init__(self) -> None:
        check_weights(self.stable, self.canary)
        if not 0 <= self.mirror <= 100:
            raise ValueError(f"mirror percent must be within 0..100, got {self.mirror}")
        if self.header is not None and self.sticky is not None:
            raise ValueError("an A/B test's sticky assignment and a header route cannot be set together")

    def rendered(self) -> Routing:
        """What the routing object says for this routing: without a sticky assignment, this routing; with one,
        weights 100/0 (mirror as is) and a header route sending the canary's users to it. At canary 0% or 100%
        every user is on one variant: weights alone say it, no header route."""
        if self.sticky is None:
            return self
        if self.canary in (0, 100):
            return Routing(stable=self.stable, canary=self.canary, mirror=self.mirror)
        return Routing(mirror=self.mirror, header=sticky_match(self.sticky, self.canary))

    @classmethod
    def read(cls, *, stable: int, canary: int, mirror: int, header: HeaderMatch | None) -> Routing:
        """The routing an object says with these weights, mirror and header route: `rendered` backwards, so a
        header route that is a sticky assignment reads as that assignment (with the canary's share of users)."""
        assignment = sticky_from_match(header) if header is not None else None
        if assignment is not None:
            by, percent = assignment
            return cls(stable=100 - percent, canary=percent, mirror=mirror, sticky=by)
        return cls(stable=stable, canary=canary, mirror=mirror, header=header)


def all_to_stable(routing_of: Callable[[Routing], Routing]) -> bool:
    """Whether a change leaves routing that sends nothing to the canary as it is. A missing routing object (or a
    missing rule in it) routes nothing to the canary, so such a change is no error there: a first revision comes
    up before the platform team has created its route. A change that would send the canary traffic still fails,
    holding the rollout where it is until the object exists."""
    return routing_of(Routing()).rendered() == Routing()


def percentages(stable: float, canary: float) -> tuple[int, int]:
    """Raw backend weights as the stable/canary percentages they give (all to stable when both are 0)."""
    total = stable + canary
    if total <= 0:
        return 100, 0
    share = int(100 * canary / total + 0.5)
    return 100 - share, share


def merge_patched(obj: Object, patch: Object) -> Object:
    """`obj` with a JSON merge patch (RFC 7386) applied, as the API server applies one: objects merge key by key,
    null removes, anything else (lists included) replaces. `obj` is not changed."""
    out = dict(obj)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            below = out.get(key)
            out[key] = merge_patched(below if isinstance(below, dict) else {}, value)
        else:
            out[key] = value
    return out


def changes(obj: Object, patch: Object) -> bool:
    """Whether applying the merge patch `patch` would change `obj`."""
    return merge_patched(obj, patch) != obj


async def read_modify_write(
    *, read: ReadObject, write: WritePatch, render: Callable[[Object], Object], what: str
) -> tuple[Object, bool]:
    """Read the object, let `render(obj)` say the merge patch of the fields it manages (the `spec` fields and our
    mark), write it when it changes something (conditioned on the resourceVersion read), and retry from a fresh
    read on a conflict. Returns the object as stored and whether it was written."""
    for _ in range(CONFLICT_RETRIES):
        obj = await read()
        if obj is None:
            raise RoutingTargetError(f"{what} does not exist")
        wanted = render(obj)
        if not changes(obj, wanted):
            return obj, False
        try:
            return await write(wanted, obj["metadata"]["resourceVersion"]), True
        except Conflict:
            continue
    raise Conflict(f"{what} kept changing while we wrote it ({CONFLICT_RETRIES} attempts)")


class RoutingChanges:
    """The TrafficRouter verbs for routers whose whole routing is one `Routing` value: each verb changes one part
    of what is in place (`_rewrite` reads it, applies the function, writes only if it differs)."""

    async def _rewrite(self, routing_of: Callable[[Routing], Routing]) -> bool:
        """Apply `routing_of(current Routing) -> Routing` to the routing objects; True when one was written."""
        raise NotImplementedError

    async def _change(self, routing_of: Callable[[Routing], Routing]) -> bool:
        try:
            return await self._rewrite(routing_of)
        except RoutingTargetError as exc:
            if not all_to_stable(routing_of):
                raise
            logger.warning("%s; nothing to route while all traffic goes to stable", exc)
            return False

    async def set_weights(self, stable: int, canary: int) -> None:
        check_weights(stable, canary)
        await self._change(lambda current: replace(current, stable=stable, canary=canary))

    async def set_mirror(self, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise ValueError(f"mirror percent must be within 0..100, got {percent}")
        await self._change(lambda current: replace(current, mirror=percent))

    async def set_header_route(self, match: HeaderMatch | None) -> None:
        await self._change(lambda current: replace(current, header=match))

    async def set_sticky(self, by: StickyBy | None) -> None:
        await self._change(lambda current: replace(current, sticky=by))

    async def reset(self) -> None:
        await self._change(lambda _current: Routing())

    async def converge(self, *, stable: int, canary: int, mirror: int, sticky: StickyBy | None = None) -> bool:
        """Make the routing in place say these weights, mirror share and sticky assignment (keeping its header
        route); True when something was written."""
        check_weights(stable, canary)
        return await self._change(
            lambda current: replace(current, stable=stable, canary=canary, mirror=mirror, sticky=sticky)
        )
