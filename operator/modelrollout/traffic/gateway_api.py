"""The `gatewayAPI` provider: weights, mirroring and a header route on the user's Gateway API HTTPRoute.

We manage ONE rule of the route: the rule named `ruleName`, else the first rule. In it we own
- `backendRefs`: exactly the `<name>-stable` and `<name>-canary` Services with the weights (other fields of an
  existing ref to one of them, such as its filters, are kept; refs to other backends are replaced);
- one `RequestMirror` filter to the canary Service while mirroring (with `percent` unless the installed CRD
  predates it: then it mirrors everything, the closest the API can say);
and while a header route is set we add one rule right after it, named `<rule name>-modelrollout-header`: a copy
of the managed rule whose matches also require the header and whose only backend is the canary. Gateway API
ranks a match with more header matches above the same match without them, so it wins over the managed rule.
Every other rule, and every other field of the managed rule (matches, the user's filters, timeouts), is the
user's and is written back exactly as read. `reset()` removes the mirror filter and the header rule.

Each write also records, in the route's annotation `routing.modelrollout.dev/<name>` (traffic.marks), the
managed rule's backendRefs as they were before our first write; `release_rules` gives them back and removes the
mirror filter and the header rule when the ModelDeployment is gone.

While an A/B test runs (a sticky assignment, see traffic.buckets) the managed rule's weights are 100/0 and the
header rule is the one above with a `RegularExpression` match on the key's header (`cookie` for a cookie) that
holds the canary's users: the canary's share is then a share of users. Reading the route back, such a header
rule is the assignment again (`Routing.sticky`, with the canary's percent), not a header route. Regular
expression header matches are Extended support in Gateway API: an implementation without them refuses the rule
(or, if it ignores it, keeps everyone on stable).

Pure document functions (`current_routing`, `render_rules`) plus `GatewayAPIRouter`, which takes its read and
write as callables (see traffic.patching for why it writes the rule list back under a resourceVersion).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelrollout.traffic.base import HeaderMatch
from modelrollout.traffic.marks import HTTPRouteMark, RuleRecord, mark_patch
from modelrollout.traffic.patching import (
    HEADER_SUFFIX,
    PRESENCE_REGEX,
    Object,
    ReadObject,
    Routing,
    RoutingChanges,
    RoutingTargetError,
    UnsupportedField,
    WritePatch,
    percentages,
    read_modify_write,
)

logger = logging.getLogger(__name__)
Rule = dict[str, Any]
MIRROR = "RequestMirror"
# HTTPRoute allows 16 rules; the header route needs one of them.
MAX_RULES = 16


@dataclass(frozen=True, slots=True)
class GatewayTarget:
    """Which rule we manage and the Services it sends to."""

    name: str  # the ModelDeployment: names the header rule when the managed rule has no name
    stable_service: str
    canary_service: str
    port: int = 80
    rule_name: str | None = None


@dataclass(slots=True)
class MirrorSupport:
    """Whether the installed HTTPRoute CRD knows `requestMirror.percent` (Gateway API >= 1.3 standard). Learnt
    from the API server's strict field validation and shared by every router of the process."""

    percent: bool = True


# --- pure document functions --------------------------------------------------------------------------------


def _service_ref(name: str, port: int) -> dict[str, Any]:
    # With the CRD's defaults spelled out, so what the API server stores equals what we render.
    return {"group": "", "kind": "Service", "name": name, "port": port}


def _is_service(ref: dict[str, Any], name: str) -> bool:
    return ref.get("name") == name and ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"


def header_rule_name(managed: Rule, target: GatewayTarget) -> str:
    return f"{managed.get('name') or target.name}{HEADER_SUFFIX}"


def _is_header_rule(rule: Rule) -> bool:
    return str(rule.get("name", "")).endswith(HEADER_SUFFIX)


def _managed_index(rules: list[Rule], target: GatewayTarget) -> int:
    """Index of the rule we manage among `rules` (which hold no header rule of ours)."""
    if target.rule_name is None:
        if not rules:
            raise RoutingTargetError("the HTTPRoute has no rules")
        return 0
    for index, rule in enumerate(rules):
        if rule.get("name") == target.rule_name:
            return index
    names = [rule.get("name") for rule in rules]
    raise RoutingTargetError(f"the HTTPRoute has no rule named {target.rule_name!r} (rule names: {names})")


def _is_our_mirror(flt: dict[str, Any], target: GatewayTarget) -> bool:
    return _mirrors_to(flt, target.canary_service)


def _mirrors_to(flt: dict[str, Any], service: str) -> bool:
    backend = (flt.get("requestMirror") or {}).get("backendRef") or {}
    return flt.get("type") == MIRROR and _is_service(backend, service)


def _header_entry(match: HeaderMatch) -> dict[str, Any]:
    if match.exact is not None:
        return {"type": "Exact", "name": match.header, "value": match.exact}
    return {"type": "RegularExpression", "name": match.header, "value": match.regex or PRESENCE_REGEX}


def _parse_header(entry: dict[str, Any]) -> HeaderMatch:
    value = entry.get("value")
    if entry.get("type", "Exact") == "Exact":
        return HeaderMatch(header=entry["name"], exact=value)
    return HeaderMatch(header=entry["name"], regex=None if value == PRESENCE_REGEX else value)


def _with_header(matches: list[dict[str, Any]], match: HeaderMatch) -> list[dict[str, Any]]:
    entry = _header_entry(match)
    out = []
    for m in matches or [{"path": {"type": "PathPrefix", "value": "/"}}]:
        # Header names are case-insensitive and unique within a match: ours replaces one of the same name.
        kept = [h for h in m.get("headers", []) if str(h.get("name", "")).lower() != match.header.lower()]
        out.append({**m, "headers": [*kept, entry]})
    return out


def current_routing(rules: list[Rule], target: GatewayTarget) -> Routing:
    """The routing the HTTPRoute expresses now (all to stable where it says nothing)."""
    base = [rule for rule in rules if not _is_header_rule(rule)]
    managed = base[_managed_index(base, target)]
    weights = {"stable": 0, "canary": 0}
    for ref in managed.get("backendRefs") or []:
        for role, service in (("stable", target.stable_service), ("canary", target.canary_service)):
            if _is_service(ref, service):
                weights[role] += int(ref.get("weight", 1))
    stable, canary = percentages(weights["stable"], weights["canary"])
    mirror = 0
    for flt in managed.get("filters") or []:
        if _is_our_mirror(flt, target):
            spec = flt["requestMirror"]
            fraction = spec.get("fraction")
            if "percent" in spec:
                mirror = int(spec["percent"])
            elif fraction:
                mirror = int(100 * fraction["numerator"] / fraction.get("denominator", 100) + 0.5)
            else:
                mirror = 100
    header = None
    header_name = header_rule_name(managed, target)
    for rule in rules:
        if rule.get("name") == header_name and rule.get("matches"):
            theirs = {str(h.get("name", "")).lower(): h for h in (managed.get("matches") or [{}])[0].get("headers", [])}
            added = [h for h in rule["matches"][0].get("headers", []) if theirs.get(h["name"].lower()) != h]
            if added:
                header = _parse_header(added[-1])
    return Routing.read(stable=stable, canary=canary, mirror=mirror, header=header)


def render_rules(
    rules: list[Rule], routing: Routing, target: GatewayTarget, *, mirror_percent: bool = True
) -> list[Rule]:
    """`rules` with the managed rule saying `routing` (as rendered: a sticky assignment becomes weights and a
    header route), our header rule present exactly when a header route is rendered, and every other rule as
    it was."""
    routing = routing.rendered()
    base = [rule for rule in rules if not _is_header_rule(rule)]
    index = _managed_index(base, target)
    managed = copy.deepcopy(base[index])

    existing = {ref.get("name"): ref for ref in managed.get("backendRefs") or [] if isinstance(ref, dict)}
    managed["backendRefs"] = [
        {**existing.get(service, {}), **_service_ref(service, target.port), "weight": weight}
        for service, weight in ((target.stable_service, routing.stable), (target.canary_service, routing.canary))
    ]
    theirs = [flt for flt in managed.get("filters") or [] if not _is_our_mirror(flt, target)]
    filters = list(theirs)
    if routing.mirror > 0:
        mirror: dict[str, Any] = {"backendRef": _service_ref(target.canary_service, target.port)}
        if routing.mirror < 100 and mirror_percent:
            mirror["percent"] = routing.mirror
        filters.append({"type": MIRROR, "requestMirror": mirror})
    if filters:
        managed["filters"] = filters
    else:
        managed.pop("filters", None)

    added: list[Rule] = []
    if routing.header is not None:
        if len(base) >= MAX_RULES:
            raise RoutingTargetError(f"the HTTPRoute has {len(base)} rules: no room for the header route's rule")
        header_rule = {key: copy.deepcopy(value) for key, value in managed.items() if key not in ("filters", "name")}
        header_rule["name"] = header_rule_name(managed, target)
        header_rule["matches"] = _with_header(managed.get("matches") or [], routing.header)
        header_rule["backendRefs"] = [{**_service_ref(target.canary_service, target.port), "weight": 1}]
        if theirs:
            header_rule["filters"] = copy.deepcopy(theirs)
        added.append(header_rule)
    return [*base[:index], managed, *added, *base[index + 1 :]]


def record_rules(rules: list[Rule], target: GatewayTarget, mark: HTTPRouteMark | None) -> HTTPRouteMark:
    """The mark a write to `rules` (as read, before our change) leaves: `mark`, plus the managed rule's
    backendRefs as they are now when the mark does not hold that rule yet (its first write, or `ruleName` moved
    to another rule)."""
    base = [rule for rule in rules if not _is_header_rule(rule)]
    managed = base[_managed_index(base, target)]
    mark = mark or HTTPRouteMark(stable=target.stable_service, canary=target.canary_service)
    name = managed.get("name")
    if any(record.rule == name for record in mark.rules):
        return mark
    record = RuleRecord(rule=name, backend_refs=copy.deepcopy(managed.get("backendRefs")))
    return mark.model_copy(update={"rules": [*mark.rules, record]})


def release_rules(rules: list[Rule], owner: str, mark: HTTPRouteMark) -> list[Rule]:
    """`rules` without what ModelDeployment `owner` added: each rule it managed gets the backendRefs it had before
    (only while they still name our Services: refs the user rewrote are theirs again) and loses our mirror filter;
    our header rules go. Every other rule, and every other field of a managed rule (the user's matches, filters,
    timeouts, edited since), stays as it is."""

    def ours(ref: dict[str, Any]) -> bool:
        return _is_service(ref, mark.stable) or _is_service(ref, mark.canary)

    def managed_by_us(rule: Rule) -> bool:
        refs = rule.get("backendRefs") or []
        return any(ours(ref) for ref in refs) or any(_mirrors_to(f, mark.canary) for f in rule.get("filters") or [])

    base = [index for index, rule in enumerate(rules) if not _is_header_rule(rule)]
    records: dict[int, RuleRecord] = {}
    for record in mark.rules:
        found = [
            index
            for index in base
            if index not in records
            and (rules[index].get("name") == record.rule if record.rule is not None else not rules[index].get("name"))
            and (record.rule is not None or managed_by_us(rules[index]))
        ]
        if found:
            records[found[0]] = record
    header_names = {f"{record.rule or owner}{HEADER_SUFFIX}" for record in mark.rules}

    out: list[Rule] = []
    for index, rule in enumerate(rules):
        refs = rule.get("backendRefs") or []
        if rule.get("name") in header_names and refs and all(_is_service(ref, mark.canary) for ref in refs):
            continue
        before = records.get(index)
        if before is None:
            out.append(rule)
            continue
        restored = copy.deepcopy(rule)
        if any(ours(ref) for ref in refs):
            if before.backend_refs is None:
                restored.pop("backendRefs", None)
            else:
                restored["backendRefs"] = copy.deepcopy(before.backend_refs)
        filters = rule.get("filters")
        if filters:
            theirs = [f for f in filters if not _mirrors_to(f, mark.canary)]
            if theirs:
                restored["filters"] = theirs
            else:
                restored.pop("filters")
        out.append(restored)
    return out


# --- the router ---------------------------------------------------------------------------------------------


class GatewayAPIRouter(RoutingChanges):
    """TrafficRouter (and ConvergingRouter) on one HTTPRoute. Each change starts from the route as stored, so a
    restarted operator, or another pass, keeps whatever the route says beyond the change."""

    def __init__(
        self,
        *,
        target: GatewayTarget,
        read: ReadObject,
        write: WritePatch,
        mirror_support: MirrorSupport | None = None,
        what: str = "the HTTPRoute",
    ) -> None:
        self._target = target
        self._read = read
        self._write = write
        self._support = mirror_support or MirrorSupport()
        self._what = what
        self._written: list[Rule] | None = None

    async def _rewrite(self, routing_of: Callable[[Routing], Routing]) -> bool:

        def render(obj: Object) -> Object:
            rules = (obj.get("spec") or {}).get("rules") or []
            routing = routing_of(current_routing(rules, self._target))
            rendered = render_rules(rules, routing, self._target, mirror_percent=self._support.percent)
            mark = mark_patch(
                obj, self._target.name, HTTPRouteMark, lambda current: record_rules(rules, self._target, current)
            )
            return {"spec": {"rules": rendered}, **mark}

        try:
            stored, changed = await self._write_rules(render)
        except UnsupportedField as exc:
            if exc.field != "percent" or not self._support.percent:
                raise
            logger.warning("the installed HTTPRoute CRD has no requestMirror.percent: mirroring all requests")
            self._support.percent = False
            stored, changed = await self._write_rules(render)
        self._written = (stored.get("spec") or {}).get("rules") or []
        return changed

    async def _write_rules(self, render: Callable[[Object], Object]) -> tuple[Object, bool]:
        return await read_modify_write(read=self._read, write=self._write, render=render, what=self._what)

    async def verify(self) -> bool:
        """The route exists with the rule we manage, and (after a write) its rules are the ones we wrote."""
        obj = await self._read()
        if obj is None:
            return False
        rules = (obj.get("spec") or {}).get("rules") or []
        try:
            current_routing(rules, self._target)
        except RoutingTargetError:
            return False
        return self._written is None or rules == self._written
