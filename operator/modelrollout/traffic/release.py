"""Giving a user's routing object back once the ModelDeployments that changed it are gone (pure).

`release_patch(kind, obj, live)` is the merge patch that removes from one HTTPRoute, VirtualService or
DestinationRule what every ModelDeployment that marked it (traffic.marks) and is not in `live` added, and their
marks: the parts each took over get what they held before its first write, its own rules, routes and mirror go,
and everything else (the user's rules, matches, other backends, edits made during the rollout) is written back as
read. The caller writes it under the resourceVersion it read `obj` at, so a concurrent edit is never lost.

What the object ends as is what the user wrote, not "stable gets 100%": the Services we route to
(`<name>-stable`, `<name>-canary`) are owned by the ModelDeployment and garbage-collected with it, so a route
left on them would send every request to a Service that no longer exists.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, Literal

from modelrollout.traffic import gateway_api, istio
from modelrollout.traffic.marks import (
    DestinationRuleMark,
    HTTPRouteMark,
    Object,
    VirtualServiceMark,
    marks,
    read_mark,
    unmark_patch,
)

RoutingKind = Literal["HTTPRoute", "VirtualService", "DestinationRule"]
# The kinds the routers mark, in the order a cleanup visits them: a VirtualService stops naming the subsets
# before the DestinationRule loses them.
ROUTING_KINDS: tuple[RoutingKind, ...] = ("HTTPRoute", "VirtualService", "DestinationRule")
# The `spec` list each kind's routers rewrite.
FIELD: dict[RoutingKind, str] = {"HTTPRoute": "rules", "VirtualService": "http", "DestinationRule": "subsets"}

Items = list[dict[str, Any]]


def _releaser(kind: RoutingKind, obj: Object, owner: str) -> Callable[[Items], Items] | None:
    """How to take `owner`'s additions out of the kind's list; None when its record is unreadable (nothing is
    known of what the object held before: the mark alone goes)."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    if kind == "HTTPRoute":
        route_mark = read_mark(obj, owner, HTTPRouteMark)
        return None if route_mark is None else lambda items: gateway_api.release_rules(items, owner, route_mark)
    if kind == "VirtualService":
        vs_mark = read_mark(obj, owner, VirtualServiceMark)
        return None if vs_mark is None else lambda items: istio.release_http(items, owner, namespace, vs_mark)
    rule_mark = read_mark(obj, owner, DestinationRuleMark)
    return None if rule_mark is None else lambda items: istio.release_subsets(items, rule_mark)


def orphans(obj: Object, live: Container[str]) -> list[str]:
    """The ModelDeployments that marked `obj` and are not in `live`, sorted."""
    return sorted(owner for owner in marks(obj) if owner not in live)


def release_patch(kind: RoutingKind, obj: Object, live: Container[str]) -> Object | None:
    """The merge patch (without a resourceVersion) removing the additions and marks of the ModelDeployments that
    marked `obj` and are not in `live` (names in the object's namespace); None when there are none."""
    gone = orphans(obj, live)
    if not gone:
        return None
    field = FIELD[kind]
    before: Items = list((obj.get("spec") or {}).get(field) or [])
    items = before
    for owner in gone:
        release = _releaser(kind, obj, owner)
        if release is not None:
            items = release(items)
    patch = unmark_patch(gone)
    if items != before:
        patch["spec"] = {field: items}
    return patch
