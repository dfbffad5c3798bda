"""The `istio` provider: weights, mirroring and a header route on the user's Istio VirtualService, and the
`stable`/`canary` subsets of a DestinationRule when one is named.

We manage the HTTP routes named in `routes`, else every HTTP route with a destination on one of our Services
(`<name>`, `<name>-stable`, `<name>-canary`, or the DestinationRule's host). In each we own
- `route`: exactly two destinations, stable and canary, with the weights: the `<name>-stable` and
  `<name>-canary` Services, or with a DestinationRule its host and the subsets `stable` and `canary`;
- `mirror` + `mirrorPercentage` while mirroring (removed after, if they point at the canary);
and while a header route is set we insert, right BEFORE each managed route (Istio takes the first route that
matches), a copy of it named `<route name>-modelrollout-header` whose matches also require the header and whose
only destination is the canary. Every other route and field is the user's and is written back as read.

While an A/B test runs (a sticky assignment, see traffic.buckets) each managed route's weights are 100/0 and
the header route before it is the one above with a `regex` match on the key's header (`cookie` for a cookie)
that holds the canary's users: the canary's share is then a share of users. Reading the VirtualService back,
such a header route is the assignment again (`Routing.sticky`, with the canary's percent), not a header route.

In the DestinationRule we own the subsets named `stable` and `canary` (their labels select the revision behind
each role; other fields of those subsets and every other subset stay the user's). Its `host` must be a Service
that selects the pods of every revision, since a subset only narrows the host's endpoints.

Each write also records, in the object's annotation `routing.modelrollout.dev/<name>` (traffic.marks), what the
parts we took over held before our first write (each managed route's destinations and mirror, the two subsets);
`release_http` and `release_subsets` give them back and drop our header routes when the ModelDeployment is gone.

Pure document functions (`current_routing`, `render_http`, `render_subsets`, `record_*`, `release_*`) plus
`IstioRouter`, which takes its reads and writes as callables (see traffic.patching).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modelrollout.traffic.base import HeaderMatch
from modelrollout.traffic.marks import (
    DestinationRuleMark,
    RouteRecord,
    SubsetRecord,
    VirtualServiceMark,
    mark_patch,
)
from modelrollout.traffic.patching import (
    HEADER_SUFFIX,
    PRESENCE_REGEX,
    Object,
    ReadObject,
    Routing,
    RoutingChanges,
    RoutingTargetError,
    WritePatch,
    percentages,
    read_modify_write,
)

logger = logging.getLogger(__name__)
Route = dict[str, Any]
STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True, slots=True)
class IstioTarget:
    """Which HTTP routes we manage and where their traffic goes."""

    name: str  # the ModelDeployment; `<name>` is also its main Service
    namespace: str
    stable_service: str
    canary_service: str
    port: int = 80
    routes: tuple[str, ...] | None = None
    subset_host: str | None = None  # the DestinationRule's host: then destinations are host + subset

    def our_host(self, host: str) -> bool:
        """`host` names one of our Services (short, `<svc>.<ns>`, `<svc>.<ns>.svc[.<domain>]`) or the subset host."""
        if self.subset_host is not None and host == self.subset_host:
            return True
        service, _, rest = host.partition(".")
        ours = service in (self.name, self.stable_service, self.canary_service)
        return ours and (rest in ("", self.namespace) or rest.startswith(f"{self.namespace}.svc"))

    def destination(self, role: str) -> dict[str, Any]:
        if self.subset_host is not None:
            return {"host": self.subset_host, "subset": role}
        service = self.stable_service if role == STABLE else self.canary_service
        return {"host": service, "port": {"number": self.port}}

    def role_of(self, destination: Mapping[str, Any]) -> str | None:
        host = str(destination.get("host", ""))
        if self.subset_host is not None and host == self.subset_host:
            subset = destination.get("subset")
            return subset if subset in (STABLE, CANARY) else None
        service = host.partition(".")[0]
        if self.our_host(host) and service in (self.stable_service, self.canary_service):
            return STABLE if service == self.stable_service else CANARY
        return None


# --- pure document functions --------------------------------------------------------------------------------


def _is_header_route(route: Route) -> bool:
    return str(route.get("name", "")).endswith(HEADER_SUFFIX)


def header_route_name(managed: Route, target: IstioTarget) -> str:
    return f"{managed.get('name') or target.name}{HEADER_SUFFIX}"


def _is_managed(route: Route, target: IstioTarget) -> bool:
    if target.routes is not None:
        return route.get("name") in target.routes
    return any(target.our_host(str((d.get("destination") or {}).get("host", ""))) for d in route.get("route") or [])


def _managed(http: list[Route], target: IstioTarget) -> list[Route]:
    base = [route for route in http if not _is_header_route(route)]
    found = [route for route in base if _is_managed(route, target)]
    if target.routes is not None:
        missing = sorted(set(target.routes) - {str(route.get("name")) for route in found})
        if missing:
            raise RoutingTargetError(f"the VirtualService has no HTTP route named {', '.join(missing)}")
    if not found:
        raise RoutingTargetError(f"the VirtualService has no HTTP route to {target.name} (set istio.routes)")
    return found


def _string_match(match: HeaderMatch) -> dict[str, str]:
    if match.exact is not None:
        return {"exact": match.exact}
    return {"regex": match.regex or PRESENCE_REGEX}


def _parse_header(name: str, matcher: Mapping[str, Any]) -> HeaderMatch:
    if "exact" in matcher:
        return HeaderMatch(header=name, exact=matcher["exact"])
    regex = matcher.get("regex")
    return HeaderMatch(header=name, regex=None if regex in (None, PRESENCE_REGEX) else regex)


def _with_header(matches: list[dict[str, Any]], match: HeaderMatch) -> list[dict[str, Any]]:
    # Istio wants header names in lower case.
    name = match.header.lower()
    return [{**m, "headers": {**(m.get("headers") or {}), name: _string_match(match)}} for m in matches or [{}]]


def _our_mirror(route: Route, target: IstioTarget) -> bool:
    mirror = route.get("mirror")
    return isinstance(mirror, dict) and target.role_of(mirror) == CANARY


def current_routing(http: list[Route], target: IstioTarget) -> Routing:
    """The routing the (first) managed route expresses now (all to stable where it says nothing)."""
    managed = _managed(http, target)[0]
    weights = {STABLE: 0, CANARY: 0}
    destinations = managed.get("route") or []
    for entry in destinations:
        role = target.role_of(entry.get("destination") or {})
        if role is not None:
            # A lone destination without a weight takes everything.
            weights[role] += int(entry.get("weight", 100 if len(destinations) == 1 else 0))
    stable, canary = percentages(weights[STABLE], weights[CANARY])
    mirror = 0
    if _our_mirror(managed, target):
        mirror = int(float((managed.get("mirrorPercentage") or {}).get("value", 100)) + 0.5)
    header = None
    name = header_route_name(managed, target)
    for route in http:
        if route.get("name") == name and route.get("match"):
            theirs = (managed.get("match") or [{}])[0].get("headers") or {}
            added = {k: v for k, v in (route["match"][0].get("headers") or {}).items() if theirs.get(k) != v}
            if added:
                key = sorted(added)[-1]
                header = _parse_header(key, added[key])
    return Routing.read(stable=stable, canary=canary, mirror=mirror, header=header)


def _render_managed(route: Route, routing: Routing, target: IstioTarget) -> Route:
    managed = copy.deepcopy(route)
    kept = {target.role_of(e.get("destination") or {}): e for e in managed.get("route") or []}
    managed["route"] = [
        {**kept.get(role, {}), "destination": target.destination(role), "weight": weight}
        for role, weight in ((STABLE, routing.stable), (CANARY, routing.canary))
    ]
    if routing.mirror > 0:
        managed["mirror"] = target.destination(CANARY)
        managed["mirrorPercentage"] = {"value": float(routing.mirror)}
    elif _our_mirror(managed, target):
        managed.pop("mirror", None)
        managed.pop("mirrorPercentage", None)
    return managed


def render_http(http: list[Route], routing: Routing, target: IstioTarget) -> list[Route]:
    """`http` with every managed route saying `routing` (as rendered: a sticky assignment becomes weights and a
    header route), our header routes (one before each managed route) present exactly when a header route is
    rendered, and every other route as it was."""
    routing = routing.rendered()
    managed_ids = {id(route) for route in _managed(http, target)}
    out: list[Route] = []
    for route in http:
        if _is_header_route(route):
            continue
        if id(route) not in managed_ids:
            out.append(route)
            continue
        managed = _render_managed(route, routing, target)
        if routing.header is not None:
            header_route = {
                key: copy.deepcopy(value)
                for key, value in managed.items()
                if key not in ("mirror", "mirrorPercentage", "mirrors", "name", "match", "route")
            }
            header_route["name"] = header_route_name(managed, target)
            header_route["match"] = _with_header(managed.get("match") or [], routing.header)
            header_route["route"] = [{"destination": target.destination(CANARY), "weight": 100}]
            out.append(header_route)
        out.append(managed)
    return out


def render_subsets(subsets: list[dict[str, Any]], labels: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """`subsets` with `stable` and `canary` selecting `labels[role]` (their other fields kept; added at the
    end when missing), every other subset as it was."""
    out = []
    for subset in subsets:
        role = str(subset.get("name"))
        out.append({**subset, "labels": dict(labels[role])} if role in labels else subset)
    present = {subset.get("name") for subset in subsets}
    out += [{"name": role, "labels": dict(labels[role])} for role in (STABLE, CANARY) if role not in present]
    return out


_MIRROR_FIELDS = {"mirror": "mirror", "mirror_percentage": "mirrorPercentage"}


def record_http(http: list[Route], target: IstioTarget, mark: VirtualServiceMark | None) -> VirtualServiceMark:
    """The mark a write to `http` (as read, before our change) leaves: `mark`, plus each managed route's
    destinations and mirror as they are now when the mark does not hold it yet. Unnamed routes are recorded at
    the first write only (nothing tells a later unnamed route from one recorded before)."""
    managed = _managed(http, target)
    first = mark is None
    mark = mark or VirtualServiceMark(stable=target.stable_service, canary=target.canary_service)
    mark = mark.model_copy(update={"host": target.subset_host})
    known = {record.name for record in mark.routes if record.name}
    added = [
        RouteRecord(
            name=route.get("name"),
            route=copy.deepcopy(route.get("route")),
            **{field: copy.deepcopy(route.get(key)) for field, key in _MIRROR_FIELDS.items()},
        )
        for route in managed
        if (route.get("name") and route.get("name") not in known) or (not route.get("name") and first)
    ]
    return mark.model_copy(update={"routes": [*mark.routes, *added]}) if added else mark


def release_http(http: list[Route], owner: str, namespace: str, mark: VirtualServiceMark) -> list[Route]:
    """`http` without what ModelDeployment `owner` added: each route it managed gets its destinations back while
    they are still ours (and its mirror, unless the user set another since), our header routes go. Every other
    route and field (the user's matches, retries, timeouts, edited since) stays as it is."""
    target = IstioTarget(
        name=owner, namespace=namespace, stable_service=mark.stable, canary_service=mark.canary, subset_host=mark.host
    )

    def ours(route: Route) -> bool:
        return any(target.role_of(entry.get("destination") or {}) is not None for entry in route.get("route") or [])

    named = {record.name: record for record in mark.routes if record.name}
    unnamed = [record for record in mark.routes if not record.name]
    header_names = {f"{record.name or owner}{HEADER_SUFFIX}" for record in mark.routes}
    out: list[Route] = []
    for route in http:
        name = route.get("name")
        destinations = route.get("route") or []
        if (
            name in header_names
            and destinations
            and all(target.role_of(entry.get("destination") or {}) == CANARY for entry in destinations)
        ):
            continue
        if name:
            record = named.get(str(name))
        else:
            record = unnamed.pop(0) if unnamed and (ours(route) or _our_mirror(route, target)) else None
        if record is None:
            out.append(route)
            continue
        restored = copy.deepcopy(route)
        if ours(route):
            if record.route is None:
                restored.pop("route", None)
            else:
                restored["route"] = copy.deepcopy(record.route)
        # Our mirror replaces the user's and is removed when mirroring ends: a route still ours without a mirror
        # lost the user's to us.
        if _our_mirror(route, target) or (ours(route) and "mirror" not in route):
            for field, key in _MIRROR_FIELDS.items():
                value = getattr(record, field)
                if value is None:
                    restored.pop(key, None)
                else:
                    restored[key] = copy.deepcopy(value)
        out.append(restored)
    return out


def record_subsets(subsets: list[dict[str, Any]], mark: DestinationRuleMark | None) -> DestinationRuleMark:
    """The mark a write to `subsets` (as read, before our change) leaves: `mark`, plus the `stable` and `canary`
    subsets as they are now (None: absent) where it holds none yet."""
    mark = mark or DestinationRuleMark()
    present = {str(subset.get("name")): subset for subset in subsets}
    recorded = dict(mark.subsets)
    for role in (STABLE, CANARY):
        if role not in recorded:
            subset = present.get(role)
            recorded[role] = None if subset is None else SubsetRecord(labels=copy.deepcopy(subset.get("labels")))
    return mark if recorded == mark.subsets else mark.model_copy(update={"subsets": recorded})


def release_subsets(subsets: list[dict[str, Any]], mark: DestinationRuleMark) -> list[dict[str, Any]]:
    """`subsets` as before we took `stable` and `canary` over: a subset we added goes, one that was there gets its
    labels back (its other fields, and every other subset, stay as they are)."""
    out = []
    for subset in subsets:
        role = str(subset.get("name"))
        if role not in mark.subsets:
            out.append(subset)
            continue
        before = mark.subsets[role]
        if before is None:
            continue
        if before.labels is None:
            out.append({key: value for key, value in subset.items() if key != "labels"})
        else:
            out.append({**subset, "labels": dict(before.labels)})
    return out


# --- the router ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationRuleAccess:
    """The DestinationRule we keep the subsets of, and the pod labels behind each role."""

    read: ReadObject
    write: WritePatch
    labels: Mapping[str, Mapping[str, str]]  # {"stable": {...}, "canary": {...}}
    what: str = "the DestinationRule"


class IstioRouter(RoutingChanges):
    """TrafficRouter (and ConvergingRouter) on one VirtualService (and DestinationRule). Each change starts from
    the objects as stored, so another pass or a restarted operator keeps what they say beyond the change."""

    def __init__(
        self,
        *,
        target: IstioTarget,
        read: ReadObject,
        write: WritePatch,
        destination_rule: DestinationRuleAccess | None = None,
        what: str = "the VirtualService",
    ) -> None:
        self._target = target
        self._read = read
        self._write = write
        self._rule = destination_rule
        self._what = what
        self._written_http: list[Route] | None = None
        self._written_subsets: list[dict[str, Any]] | None = None

    async def _subsets(self) -> tuple[IstioTarget, bool]:
        """Keep the DestinationRule's subsets on the current revisions; the target with its host."""
        rule = self._rule
        if rule is None:
            return self._target, False

        def render(obj: Object) -> Object:
            subsets = (obj.get("spec") or {}).get("subsets") or []
            mark = mark_patch(obj, self._target.name, DestinationRuleMark, lambda now: record_subsets(subsets, now))
            return {"spec": {"subsets": render_subsets(subsets, rule.labels)}, **mark}

        stored, changed = await read_modify_write(read=rule.read, write=rule.write, render=render, what=rule.what)
        spec = stored.get("spec") or {}
        self._written_subsets = spec.get("subsets") or []
        host = spec.get("host")
        if not host:
            raise RoutingTargetError(f"{rule.what} has no host")
        return replace(self._target, subset_host=str(host)), changed

    async def _rewrite(self, routing_of: Callable[[Routing], Routing]) -> bool:
        target, subsets_changed = await self._subsets()

        def render(obj: Object) -> Object:
            http = (obj.get("spec") or {}).get("http") or []
            rendered = render_http(http, routing_of(current_routing(http, target)), target)
            mark = mark_patch(obj, target.name, VirtualServiceMark, lambda now: record_http(http, target, now))
            return {"spec": {"http": rendered}, **mark}

        stored, changed = await read_modify_write(read=self._read, write=self._write, render=render, what=self._what)
        self._written_http = (stored.get("spec") or {}).get("http") or []
        return changed or subsets_changed

    async def verify(self) -> bool:
        """The objects exist with the routes we manage, and (after a write) say what we wrote."""
        target = self._target
        if self._rule is not None:
            rule = await self._rule.read()
            if rule is None:
                return False
            spec = rule.get("spec") or {}
            if self._written_subsets is not None and (spec.get("subsets") or []) != self._written_subsets:
                return False
            target = replace(target, subset_host=str(spec.get("host", "")))
        obj = await self._read()
        if obj is None:
            return False
        http = (obj.get("spec") or {}).get("http") or []
        try:
            current_routing(http, target)
        except RoutingTargetError:
            return False
        return self._written_http is None or http == self._written_http
