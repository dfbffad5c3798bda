"""The HTTPRoute document transformations of the gatewayAPI provider, and its router against an in-memory store."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.buckets import sticky_match
from modelrollout.traffic.gateway_api import (
    GatewayAPIRouter,
    GatewayTarget,
    MirrorSupport,
    current_routing,
    render_rules,
)
from modelrollout.traffic.patching import Conflict, Routing, RoutingTargetError, UnsupportedField, merge_patched
from tests.unit.modelrollout.traffic.ab_verbs import BY_COOKIE, check_ab_verbs

TARGET = GatewayTarget(
    name="pricing", stable_service="pricing-stable", canary_service="pricing-canary", rule_name="model"
)
HOME = {
    "name": "home",
    "matches": [{"path": {"type": "PathPrefix", "value": "/home"}}],
    "backendRefs": [{"name": "web", "port": 8080}],
}
MODEL = {
    "name": "model",
    "matches": [
        {
            "path": {"type": "PathPrefix", "value": "/predict"},
            "headers": [{"type": "Exact", "name": "x-team", "value": "a"}],
        }
    ],
    "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-from", "value": "gw"}]}}
    ],
    "backendRefs": [{"name": "pricing", "port": 80}],
    "timeouts": {"request": "5s"},
}


def _rules() -> list[dict[str, Any]]:
    return copy.deepcopy([HOME, MODEL])


def _ref(name: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 80, "weight": weight}


def test_weights_go_to_the_managed_rule_only() -> None:
    rules = render_rules(_rules(), Routing(stable=80, canary=20), TARGET)
    assert rules[0] == HOME
    assert rules[1]["backendRefs"] == [_ref("pricing-stable", 80), _ref("pricing-canary", 20)]
    assert {k: v for k, v in rules[1].items() if k != "backendRefs"} == {
        k: v for k, v in MODEL.items() if k != "backendRefs"
    }
    assert current_routing(rules, TARGET) == Routing(stable=80, canary=20)


def test_without_rule_name_the_first_rule_is_managed() -> None:
    target = GatewayTarget(name="pricing", stable_service="pricing-stable", canary_service="pricing-canary")
    rules = render_rules([copy.deepcopy(MODEL), copy.deepcopy(HOME)], Routing(stable=50, canary=50), target)
    assert rules[0]["backendRefs"] == [_ref("pricing-stable", 50), _ref("pricing-canary", 50)]
    assert rules[1] == HOME


def test_existing_ref_fields_are_kept() -> None:
    rules = _rules()
    rules[1]["backendRefs"] = [{"name": "pricing-stable", "port": 80, "filters": [{"type": "RequestHeaderModifier"}]}]
    out = render_rules(rules, Routing(stable=90, canary=10), TARGET)
    assert out[1]["backendRefs"][0]["filters"] == [{"type": "RequestHeaderModifier"}]


def test_missing_rule_is_an_error() -> None:
    with pytest.raises(RoutingTargetError, match="no rule named 'model'"):
        render_rules([copy.deepcopy(HOME)], Routing(), TARGET)
    with pytest.raises(RoutingTargetError, match="no rules"):
        render_rules([], Routing(), GatewayTarget(name="p", stable_service="p-stable", canary_service="p-canary"))


@pytest.mark.parametrize(
    ("percent", "supported", "expected"),
    [
        (
            10,
            True,
            {"backendRef": {"group": "", "kind": "Service", "name": "pricing-canary", "port": 80}, "percent": 10},
        ),
        (100, True, {"backendRef": {"group": "", "kind": "Service", "name": "pricing-canary", "port": 80}}),
        (10, False, {"backendRef": {"group": "", "kind": "Service", "name": "pricing-canary", "port": 80}}),
    ],
)
def test_mirror_filter(percent: int, supported: bool, expected: dict[str, Any]) -> None:
    rules = render_rules(_rules(), Routing(mirror=percent), TARGET, mirror_percent=supported)
    assert rules[1]["filters"] == [*MODEL["filters"], {"type": "RequestMirror", "requestMirror": expected}]
    assert current_routing(rules, TARGET).mirror == (percent if supported else 100)
    removed = render_rules(rules, Routing(mirror=0), TARGET)
    assert removed[1]["filters"] == MODEL["filters"]


def test_a_mirror_to_another_backend_is_the_users() -> None:
    rules = _rules()
    theirs = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit", "port": 80}}}
    rules[1]["filters"] = [theirs]
    assert render_rules(rules, Routing(), TARGET)[1]["filters"] == [theirs]
    assert current_routing(rules, TARGET).mirror == 0


@pytest.mark.parametrize(
    ("match", "entry"),
    [
        (HeaderMatch(header="x-canary", exact="yes"), {"type": "Exact", "name": "x-canary", "value": "yes"}),
        (
            HeaderMatch(header="x-canary", regex="^b.*"),
            {"type": "RegularExpression", "name": "x-canary", "value": "^b.*"},
        ),
        (HeaderMatch(header="x-canary"), {"type": "RegularExpression", "name": "x-canary", "value": ".*"}),
    ],
)
def test_header_route_adds_one_rule_after_the_managed_one(match: HeaderMatch, entry: dict[str, Any]) -> None:
    rules = render_rules(_rules(), Routing(stable=90, canary=10, mirror=5, header=match), TARGET)
    assert [r.get("name") for r in rules] == ["home", "model", "model-modelrollout-header"]
    header = rules[2]
    assert header["matches"] == [{**MODEL["matches"][0], "headers": [*MODEL["matches"][0]["headers"], entry]}]
    assert header["backendRefs"] == [_ref("pricing-canary", 1)]
    assert header["filters"] == MODEL["filters"], "the user's filters apply, our mirror does not"
    assert header["timeouts"] == MODEL["timeouts"]
    assert current_routing(rules, TARGET) == Routing(stable=90, canary=10, mirror=5, header=match)
    # Rendering again changes nothing; removing the route removes the rule.
    assert render_rules(rules, current_routing(rules, TARGET), TARGET) == rules
    assert render_rules(rules, Routing(stable=90, canary=10, mirror=5), TARGET)[2:] == []


def test_header_rule_without_matches_matches_every_path() -> None:
    rule = {"backendRefs": [{"name": "pricing", "port": 80}]}
    target = GatewayTarget(name="pricing", stable_service="pricing-stable", canary_service="pricing-canary")
    rules = render_rules([rule], Routing(header=HeaderMatch(header="x-c", exact="1")), target)
    assert rules[1]["name"] == "pricing-modelrollout-header"
    assert rules[1]["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "x-c", "value": "1"}]}
    ]


def test_reset_removes_what_we_added() -> None:
    busy = render_rules(_rules(), Routing(stable=20, canary=80, mirror=50, header=HeaderMatch(header="x-c")), TARGET)
    rules = render_rules(busy, Routing(), TARGET)
    assert rules == render_rules(_rules(), Routing(), TARGET)
    assert rules[1]["filters"] == MODEL["filters"]
    assert current_routing(rules, TARGET) == Routing()


# --- the router against an in-memory API server -------------------------------------------------------------


class Store:
    """One HTTPRoute with resourceVersions and conditional writes, as the API server keeps it."""

    def __init__(self, rules: list[dict[str, Any]], *, percent: bool = True) -> None:
        self.obj: dict[str, Any] = {"metadata": {"resourceVersion": "1"}, "spec": {"rules": rules}}
        self.percent = percent
        self.writes = 0
        self.before_write: list[dict[str, Any]] = []  # rules someone else writes just before our next write

    async def read(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    def _bump(self, patch: dict[str, Any]) -> None:
        version = int(self.obj["metadata"]["resourceVersion"]) + 1
        self.obj = merge_patched(self.obj, copy.deepcopy(patch))
        self.obj["metadata"]["resourceVersion"] = str(version)

    async def write(self, patch: dict[str, Any], version: str) -> dict[str, Any]:
        if self.before_write:
            self._bump({"spec": {"rules": self.before_write}})
            self.before_write = []
        if version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        if not self.percent and "'percent'" in repr(patch):
            raise UnsupportedField("percent", 'unknown field "percent"')
        self.writes += 1
        self._bump(patch)
        return copy.deepcopy(self.obj)


async def test_router_steps_and_converge() -> None:
    store = Store(_rules())
    router = GatewayAPIRouter(target=TARGET, read=store.read, write=store.write)
    assert await router.verify()
    await router.set_weights(80, 20)
    await router.set_header_route(HeaderMatch(header="x-canary", exact="yes"))
    await router.set_mirror(30)
    assert current_routing(store.obj["spec"]["rules"], TARGET) == Routing(
        stable=80, canary=20, mirror=30, header=HeaderMatch(header="x-canary", exact="yes")
    )
    assert await router.verify()
    writes = store.writes
    assert not await router.converge(stable=80, canary=20, mirror=30), "nothing to change"
    assert store.writes == writes
    assert await router.converge(stable=100, canary=0, mirror=0)
    assert current_routing(store.obj["spec"]["rules"], TARGET).header is not None, "converge keeps the header route"
    await router.reset()
    assert current_routing(store.obj["spec"]["rules"], TARGET) == Routing()
    store.obj["spec"]["rules"][1]["backendRefs"][0]["weight"] = 7
    assert not await router.verify(), "a hand edit is seen"


async def test_a_concurrent_edit_survives_and_the_write_is_retried() -> None:
    store = Store(_rules())
    router = GatewayAPIRouter(target=TARGET, read=store.read, write=store.write)
    edited = _rules()
    edited[0]["backendRefs"] = [{"name": "web-v2", "port": 8080}]
    store.before_write = edited
    await router.set_weights(50, 50)
    assert store.obj["spec"]["rules"][0]["backendRefs"] == [{"name": "web-v2", "port": 8080}]
    assert current_routing(store.obj["spec"]["rules"], TARGET) == Routing(stable=50, canary=50)


async def test_a_crd_without_mirror_percent_mirrors_everything() -> None:
    store = Store(_rules(), percent=False)
    support = MirrorSupport()
    router = GatewayAPIRouter(target=TARGET, read=store.read, write=store.write, mirror_support=support)
    await router.set_mirror(25)
    assert not support.percent
    assert current_routing(store.obj["spec"]["rules"], TARGET).mirror == 100
    assert not await router.converge(stable=100, canary=0, mirror=25), "learnt: no rewrite on every pass"


async def test_a_missing_route_is_reported() -> None:
    async def missing() -> dict[str, Any] | None:
        return None

    router = GatewayAPIRouter(target=TARGET, read=missing, write=Store([]).write, what="HTTPRoute ns/pricing")
    assert not await router.verify()
    with pytest.raises(RoutingTargetError, match="HTTPRoute ns/pricing does not exist"):
        await router.set_weights(90, 10)
    # Nothing for the canary: no route is needed (a first revision comes up before its route exists).
    assert not await router.converge(stable=100, canary=0, mirror=0)
    await router.set_weights(100, 0)
    await router.set_header_route(None)
    await router.reset()
    with pytest.raises(RoutingTargetError):
        await router.converge(stable=100, canary=0, mirror=10)


# --- A/B: a sticky assignment -------------------------------------------------------------------------------

BY_USER = StickyBy(header="X-User-Id")


@pytest.mark.parametrize("by", [BY_USER, BY_COOKIE], ids=["header", "cookie"])
@pytest.mark.parametrize("percent", [1, 20, 50, 99])
def test_sticky_renders_weights_100_0_and_a_bucket_rule(by: StickyBy, percent: int) -> None:
    routing = Routing(stable=100 - percent, canary=percent, mirror=5, sticky=by)
    rules = render_rules(_rules(), routing, TARGET)
    assert [r.get("name") for r in rules] == ["home", "model", "model-modelrollout-header"]
    assert rules[1]["backendRefs"] == [_ref("pricing-stable", 100), _ref("pricing-canary", 0)]
    match = sticky_match(by, percent)
    entry = {"type": "RegularExpression", "name": match.header, "value": match.regex}
    assert rules[2]["matches"] == [{**MODEL["matches"][0], "headers": [*MODEL["matches"][0]["headers"], entry]}]
    assert rules[2]["backendRefs"] == [_ref("pricing-canary", 1)]
    # Read back, the rule is the assignment again, and rendering that changes nothing.
    assert current_routing(rules, TARGET) == routing
    assert render_rules(rules, current_routing(rules, TARGET), TARGET) == rules
    assert rules == render_rules(_rules(), Routing(mirror=5, header=match), TARGET), "what it expresses"


@pytest.mark.parametrize("canary", [0, 100])
def test_sticky_at_0_or_100_percent_is_weights_alone(canary: int) -> None:
    rules = render_rules(_rules(), Routing(stable=100 - canary, canary=canary, sticky=BY_USER), TARGET)
    assert rules == render_rules(_rules(), Routing(stable=100 - canary, canary=canary), TARGET)
    assert [r.get("name") for r in rules] == ["home", "model"]


def test_a_users_header_route_is_not_an_assignment() -> None:
    # Lower-case hex only: not our spelling. (A user's route spelt exactly as ours would read as an assignment.)
    match = HeaderMatch(header="x-user-id", regex="^.*(0[0-9a-f])$")
    rules = render_rules(_rules(), Routing(stable=90, canary=10, header=match), TARGET)
    assert current_routing(rules, TARGET) == Routing(stable=90, canary=10, header=match)


async def test_ab_verbs_are_idempotent() -> None:
    store = Store(_rules())
    router = GatewayAPIRouter(target=TARGET, read=store.read, write=store.write)

    await check_ab_verbs(
        router,
        by_user=BY_USER,
        set_as=BY_USER,
        routing=lambda: current_routing(store.obj["spec"]["rules"], TARGET),
        stored=lambda: store.obj["spec"]["rules"],
        writes=lambda: store.writes,
    )
    assert store.obj["spec"]["rules"] == render_rules(_rules(), Routing(), TARGET)
    # Nothing to split at canary 0%: no route is needed yet, so a missing one is no error.
    missing = GatewayAPIRouter(target=TARGET, read=Store([]).read, write=store.write)
    assert not await missing.converge(stable=100, canary=0, mirror=0, sticky=BY_USER)
    with pytest.raises(RoutingTargetError):
        await missing.converge(stable=90, canary=10, mirror=0, sticky=BY_USER)
