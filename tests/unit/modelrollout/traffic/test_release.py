"""Giving a user's routing object back after its ModelDeployment is gone: the marks the routers write with each
change (traffic.marks) and the patch that removes our additions (traffic.release), for HTTPRoutes,
VirtualServices and DestinationRules.

The objects are made by the routers themselves, against an in-memory API server, in every routing state a rollout
can leave them in; the patch is then applied as the API server applies a merge patch."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.gateway_api import GatewayAPIRouter, GatewayTarget
from modelrollout.traffic.istio import DestinationRuleAccess, IstioRouter, IstioTarget
from modelrollout.traffic.marks import (
    MARK_PREFIX,
    HTTPRouteMark,
    VirtualServiceMark,
    mark_key,
    marks,
    read_mark,
)
from modelrollout.traffic.patching import Conflict, merge_patched
from modelrollout.traffic.release import ROUTING_KINDS, RoutingKind, orphans, release_patch

Obj = dict[str, Any]


class Store:
    """One object with resourceVersions and conditional merge patches, as the API server keeps it."""

    def __init__(self, kind: str, spec: Obj, *, annotations: dict[str, str] | None = None) -> None:
        meta: Obj = {"name": "pricing", "namespace": "ns", "resourceVersion": "1"}
        if annotations:
            meta["annotations"] = dict(annotations)
        self.obj: Obj = {"kind": kind, "metadata": meta, "spec": copy.deepcopy(spec)}
        self.writes = 0

    async def read(self) -> Obj | None:
        return copy.deepcopy(self.obj)

    async def write(self, patch: Obj, version: str) -> Obj:
        if version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.apply(patch)
        self.writes += 1
        return copy.deepcopy(self.obj)

    def apply(self, patch: Obj) -> None:
        version = int(self.obj["metadata"]["resourceVersion"]) + 1
        self.obj = merge_patched(self.obj, copy.deepcopy(patch))
        if not self.obj["metadata"].get("annotations"):
            self.obj["metadata"].pop("annotations", None)  # the API server drops an emptied map
        self.obj["metadata"]["resourceVersion"] = str(version)

    def edit(self, change: Callable[[Obj], None]) -> None:
        """A user's edit (kubectl edit): anything, unconditionally."""
        change(self.obj["spec"])
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)

    def release(self, kind: RoutingKind, live: set[str] | frozenset[str] = frozenset()) -> Obj | None:
        patch = release_patch(kind, copy.deepcopy(self.obj), live)
        if patch is not None:
            self.apply(patch)
        return patch

    @property
    def spec(self) -> Obj:
        return dict(self.obj["spec"])


BY = StickyBy(header="x-user-id")
Step = Callable[[GatewayAPIRouter | IstioRouter], Awaitable[None]]


async def _weights(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.set_weights(70, 30)


async def _all_on_canary(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.set_weights(0, 100)


async def _mirror(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.set_mirror(40)


async def _header(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.set_weights(90, 10)
    await router.set_header_route(HeaderMatch(header="x-canary", exact="yes"))


async def _sticky(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.converge(stable=50, canary=50, mirror=10, sticky=BY)


async def _at_rest(router: GatewayAPIRouter | IstioRouter) -> None:
    await router.converge(stable=100, canary=0, mirror=0)


async def _everything_then_reset(router: GatewayAPIRouter | IstioRouter) -> None:
    await _header(router)
    await _mirror(router)
    await router.reset()


STATES: dict[str, Step] = {
    "at rest": _at_rest,
    "mid-canary": _weights,
    "all on the canary": _all_on_canary,
    "mirroring": _mirror,
    "header route": _header,
    "A/B test": _sticky,
    "after a reset": _everything_then_reset,
}


# --- HTTPRoute ------------------------------------------------------------------------------------------------

TARGET = GatewayTarget(
    name="pricing", stable_service="pricing-stable", canary_service="pricing-canary", rule_name="model"
)
HOME = {
    "name": "home",
    "matches": [{"path": {"type": "PathPrefix", "value": "/home"}}],
    "backendRefs": [{"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": 1}],
}
AUDIT = {"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "audit"}}}
MODEL = {
    "name": "model",
    "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
    "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-from", "value": "gw"}]}},
        AUDIT,
    ],
    "backendRefs": [
        {"group": "", "kind": "Service", "name": "pricing", "port": 80, "weight": 3},
        {"group": "", "kind": "Service", "name": "pricing-legacy", "port": 80, "weight": 1},
    ],
    "timeouts": {"request": "5s"},
}
ROUTE = {"parentRefs": [{"name": "public"}], "rules": [HOME, MODEL]}


def _route(spec: Obj = ROUTE) -> tuple[Store, GatewayAPIRouter]:
    store = Store("HTTPRoute", spec)
    return store, _gateway_router(store, TARGET)


def _gateway_router(store: Store, target: GatewayTarget) -> GatewayAPIRouter:
    return GatewayAPIRouter(target=target, read=store.read, write=store.write)


@pytest.mark.parametrize("state", STATES, ids=list(STATES))
async def test_an_httproute_is_given_back_as_the_user_wrote_it(state: str) -> None:
    store, router = _route()
    await STATES[state](router)
    assert store.obj["metadata"]["annotations"].keys() == {mark_key("pricing")}
    assert store.spec != ROUTE
    assert store.release("HTTPRoute") is not None
    assert store.spec == ROUTE
    assert "annotations" not in store.obj["metadata"]


async def test_the_mark_records_the_rule_before_the_first_write_only() -> None:
    store, router = _route()
    await router.set_weights(70, 30)
    first = store.obj["metadata"]["annotations"][mark_key("pricing")]
    mark = read_mark(store.obj, "pricing", HTTPRouteMark)
    assert mark is not None
    assert (mark.stable, mark.canary) == ("pricing-stable", "pricing-canary")
    assert [(r.rule, r.backend_refs) for r in mark.rules] == [("model", MODEL["backendRefs"])]
    assert json.loads(first)["rules"][0]["backendRefs"] == MODEL["backendRefs"], "camelCase on the wire"
    await router.set_weights(20, 80)
    await router.set_mirror(5)
    assert store.obj["metadata"]["annotations"][mark_key("pricing")] == first, "written once, kept as it is"
    writes = store.writes
    assert not await router.converge(stable=20, canary=80, mirror=5), "a pass that changes nothing writes nothing"
    assert store.writes == writes


async def test_a_route_already_routed_by_an_earlier_version_gets_its_mark() -> None:
    store, router = _route()
    await router.set_weights(100, 0)
    store.obj["metadata"].pop("annotations")  # as an operator without marks left it
    assert await router.converge(stable=100, canary=0, mirror=0), "only the mark is written"
    assert marks(store.obj).keys() == {"pricing"}
    store.release("HTTPRoute")
    assert store.spec["rules"][1]["backendRefs"][0]["name"] == "pricing-stable", "no better original is known"
    assert [r["name"] for r in store.spec["rules"]] == ["home", "model"]


async def test_the_users_edits_during_the_rollout_survive() -> None:
    store, router = _route()
    await _header(router)

    def edit(spec: Obj) -> None:
        spec["rules"][0]["matches"][0]["path"]["value"] = "/home-v2"
        spec["rules"][1]["timeouts"] = {"request": "9s"}
        spec["rules"][1]["filters"].insert(0, {"type": "URLRewrite", "urlRewrite": {"hostname": "x"}})
        spec["rules"].append({"name": "late", "backendRefs": [{"name": "web", "port": 1}]})
        spec["hostnames"] = ["pricing.example.com"]

    store.edit(edit)
    await router.set_mirror(20)
    store.release("HTTPRoute")
    expected = copy.deepcopy(ROUTE)
    edit(expected)
    assert store.spec == expected


async def test_a_live_modeldeployment_keeps_its_additions() -> None:
    store, router = _route()
    await _header(router)
    before = copy.deepcopy(store.obj)
    assert release_patch("HTTPRoute", store.obj, {"pricing"}) is None
    assert orphans(store.obj, {"pricing"}) == []
    assert store.obj == before


async def test_two_modeldeployments_on_one_route_each_give_back_their_own() -> None:
    spec = {"rules": [copy.deepcopy(HOME), copy.deepcopy(MODEL)]}
    store = Store("HTTPRoute", spec)
    web = GatewayTarget(name="web", stable_service="web-stable", canary_service="web-canary", rule_name="home")
    await _gateway_router(store, TARGET).set_weights(60, 40)
    await _gateway_router(store, web).set_weights(10, 90)
    assert marks(store.obj).keys() == {"pricing", "web"}
    store.release("HTTPRoute", live={"web"})
    assert store.spec["rules"][1] == MODEL
    assert [ref["name"] for ref in store.spec["rules"][0]["backendRefs"]] == ["web-stable", "web-canary"]
    assert marks(store.obj).keys() == {"web"}
    store.release("HTTPRoute")
    assert store.spec == spec


async def test_rules_the_user_took_back_or_deleted_stay_theirs() -> None:
    store, router = _route()
    await _mirror(router)
    await router.set_weights(50, 50)
    store.edit(lambda spec: spec["rules"][1].update(backendRefs=[{"name": "pricing-v2", "port": 80}]))
    store.release("HTTPRoute")
    assert store.spec["rules"][1]["backendRefs"] == [{"name": "pricing-v2", "port": 80}]
    assert store.spec["rules"][1]["filters"] == MODEL["filters"], "our mirror filter went all the same"

    store, router = _route()
    await _header(router)
    store.edit(lambda spec: spec.update(rules=[copy.deepcopy(HOME)]))
    assert store.release("HTTPRoute") == {"metadata": {"annotations": {mark_key("pricing"): None}}}
    assert store.spec["rules"] == [HOME]


async def test_the_first_rule_unnamed_is_found_by_our_backends() -> None:
    first = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "pricing"}]}
    spec = {"rules": [copy.deepcopy(first), copy.deepcopy(HOME)]}
    store = Store("HTTPRoute", spec)
    router = _gateway_router(store, GatewayTarget(name="pricing", stable_service="pricing-stable",
                                                  canary_service="pricing-canary"))  # fmt: skip
    await _header(router)
    assert [r.get("name") for r in store.spec["rules"]] == [None, "pricing-modelrollout-header", "home"]
    other = {"name": "new", "matches": [{"path": {"type": "PathPrefix", "value": "/new"}}]}
    store.edit(lambda spec: spec["rules"].insert(0, copy.deepcopy(other)))
    store.release("HTTPRoute")
    assert store.spec["rules"] == [other, first, HOME]


async def test_a_rule_without_backends_gets_none_back() -> None:
    bare = {"name": "model", "matches": [{"path": {"type": "PathPrefix", "value": "/p"}}]}
    store = Store("HTTPRoute", {"rules": [copy.deepcopy(bare)]})
    await _gateway_router(store, TARGET).set_weights(80, 20)
    store.release("HTTPRoute")
    assert store.spec["rules"] == [bare]


async def test_a_rule_name_moved_to_another_rule_gives_both_back() -> None:
    store, router = _route()
    await router.set_weights(70, 30)
    moved = GatewayTarget(
        name="pricing", stable_service="pricing-stable", canary_service="pricing-canary", rule_name="home"
    )
    await _gateway_router(store, moved).set_weights(70, 30)
    mark = read_mark(store.obj, "pricing", HTTPRouteMark)
    assert mark is not None
    assert [r.rule for r in mark.rules] == ["model", "home"]
    store.release("HTTPRoute")
    assert store.spec == ROUTE


async def test_a_header_rule_of_that_name_the_user_owns_stays() -> None:
    mine = {"name": "model-modelrollout-header", "backendRefs": [{"name": "web", "port": 1}]}
    store, router = _route()
    await router.set_weights(70, 30)
    store.edit(lambda spec: spec["rules"].append(copy.deepcopy(mine)))
    store.release("HTTPRoute")
    assert store.spec["rules"] == [HOME, MODEL, mine]


def test_an_unreadable_mark_goes_alone() -> None:
    rules = [copy.deepcopy(HOME)]
    store = Store("HTTPRoute", {"rules": rules}, annotations={mark_key("gone"): "{not json", "other": "x"})
    assert store.release("HTTPRoute") == {"metadata": {"annotations": {mark_key("gone"): None}}}
    assert store.obj["metadata"]["annotations"] == {"other": "x"}
    assert store.spec == {"rules": rules}


def test_an_unmarked_object_needs_nothing() -> None:
    for kind in ROUTING_KINDS:
        assert release_patch(kind, {"metadata": {"annotations": {"a": "b"}}, "spec": {}}, set()) is None
        assert release_patch(kind, {}, set()) is None


def test_mark_keys_hold_the_modeldeployment_name() -> None:
    assert mark_key("pricing") == "routing.modelrollout.dev/pricing"
    assert MARK_PREFIX.endswith("/")
    # The longest name a ModelDeployment may have still fits an annotation key's name part (63 characters).
    assert len(mark_key("p" * 40).split("/", 1)[1]) <= 63


# --- VirtualService and DestinationRule -------------------------------------------------------------------------

DOCS = {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]}
PRIMARY = {
    "name": "primary",
    "match": [{"uri": {"prefix": "/predict"}}],
    "route": [{"destination": {"host": "pricing"}}],
    "mirror": {"host": "audit"},
    "mirrorPercentage": {"value": 5.0},
    "timeout": "5s",
}
VS = {"hosts": ["pricing.example.com"], "gateways": ["public"], "http": [DOCS, PRIMARY]}
DR = {
    "host": "pricing-all",
    "subsets": [
        {"name": "legacy", "labels": {"version": "old"}},
        {"name": "canary", "labels": {"track": "next"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    ],
}
LABELS = {"stable": {"rev": "a"}, "canary": {"rev": "b"}}


def _istio(
    spec: Obj = VS, *, routes: tuple[str, ...] | None = ("primary",), subsets: bool = False, name: str = "pricing"
) -> tuple[Store, Store | None, IstioRouter]:
    vs = Store("VirtualService", spec)
    dr = Store("DestinationRule", DR) if subsets else None
    access = None if dr is None else DestinationRuleAccess(read=dr.read, write=dr.write, labels=LABELS)
    target = IstioTarget(
        name=name, namespace="ns", stable_service=f"{name}-stable", canary_service=f"{name}-canary", routes=routes
    )
    return vs, dr, IstioRouter(target=target, read=vs.read, write=vs.write, destination_rule=access)


@pytest.mark.parametrize("subsets", [False, True], ids=["services", "subsets"])
@pytest.mark.parametrize("state", STATES, ids=list(STATES))
async def test_a_virtual_service_is_given_back_as_the_user_wrote_it(state: str, subsets: bool) -> None:
    spec = copy.deepcopy(VS)
    if subsets:
        spec["http"][1]["route"] = [{"destination": {"host": "pricing-all"}}]
    vs, dr, router = _istio(spec, subsets=subsets)
    await STATES[state](router)
    assert marks(vs.obj).keys() == {"pricing"}
    vs.release("VirtualService")
    assert vs.spec == spec
    assert "annotations" not in vs.obj["metadata"]
    if dr is not None:
        assert marks(dr.obj).keys() == {"pricing"}
        dr.release("DestinationRule")
        assert dr.spec == DR
        assert "annotations" not in dr.obj["metadata"]


async def test_our_mirror_gives_the_users_mirror_back() -> None:
    vs, _, router = _istio()
    await router.set_mirror(30)
    assert vs.spec["http"][1]["mirror"]["host"] == "pricing-canary"
    vs.release("VirtualService")
    assert vs.spec["http"][1]["mirror"] == {"host": "audit"}
    assert vs.spec["http"][1]["mirrorPercentage"] == {"value": 5.0}


async def test_routes_found_by_host_unnamed_ones_included() -> None:
    unnamed = {"match": [{"uri": {"prefix": "/v1"}}], "route": [{"destination": {"host": "pricing.ns.svc"}}]}
    second = {"route": [{"destination": {"host": "pricing-stable", "port": {"number": 80}}, "weight": 100}]}
    spec = {"http": [copy.deepcopy(DOCS), copy.deepcopy(unnamed), copy.deepcopy(PRIMARY), copy.deepcopy(second)]}
    vs, _, router = _istio(spec, routes=None)
    await _header(router)
    await router.set_mirror(10)
    names = [r.get("name") for r in vs.spec["http"]]
    assert names == ["docs", "pricing-modelrollout-header", None, "primary-modelrollout-header", "primary",
                     "pricing-modelrollout-header", None]  # fmt: skip
    mark = read_mark(vs.obj, "pricing", VirtualServiceMark)
    assert mark is not None
    assert [r.name for r in mark.routes] == [None, "primary", None]
    vs.release("VirtualService")
    assert vs.spec == spec


async def test_a_virtual_service_route_the_user_took_back_stays_theirs() -> None:
    vs, _, router = _istio()
    await _weights(router)

    def take_back(spec: Obj) -> None:
        spec["http"][1]["route"] = [{"destination": {"host": "pricing-v2"}}]
        spec["http"][0]["timeout"] = "1s"

    vs.edit(take_back)
    vs.release("VirtualService")
    expected = copy.deepcopy(VS)
    take_back(expected)
    assert vs.spec == expected


async def test_a_live_modeldeployment_keeps_its_routes_and_subsets() -> None:
    vs, dr, router = _istio(subsets=True)
    await _header(router)
    assert dr is not None
    assert release_patch("VirtualService", vs.obj, {"pricing"}) is None
    assert release_patch("DestinationRule", dr.obj, {"pricing", "other"}) is None


async def test_two_modeldeployments_on_one_virtual_service() -> None:
    ranking = {"name": "ranking", "route": [{"destination": {"host": "ranking"}}]}
    spec = {"http": [copy.deepcopy(DOCS), copy.deepcopy(PRIMARY), copy.deepcopy(ranking)]}
    vs, _, pricing = _istio(spec)
    target = IstioTarget(name="ranking", namespace="ns", stable_service="ranking-stable",
                         canary_service="ranking-canary", routes=("ranking",))  # fmt: skip
    other = IstioRouter(target=target, read=vs.read, write=vs.write)
    await pricing.set_weights(50, 50)
    await other.set_weights(80, 20)
    vs.release("VirtualService", live={"ranking"})
    assert vs.spec["http"][:2] == [DOCS, PRIMARY]
    assert vs.spec["http"][2]["route"][1]["destination"]["host"] == "ranking-canary"
    vs.release("VirtualService")
    assert vs.spec == spec


async def test_subsets_the_user_had_get_their_labels_back_ours_go() -> None:
    dr = Store("DestinationRule", DR)
    vs = Store("VirtualService", {"http": [{"name": "primary", "route": [{"destination": {"host": "pricing-all"}}]}]})
    access = DestinationRuleAccess(read=dr.read, write=dr.write, labels=LABELS)
    target = IstioTarget(name="pricing", namespace="ns", stable_service="pricing-stable",
                         canary_service="pricing-canary", routes=("primary",))  # fmt: skip
    await IstioRouter(target=target, read=vs.read, write=vs.write, destination_rule=access).set_weights(60, 40)
    assert [s["name"] for s in dr.spec["subsets"]] == ["legacy", "canary", "stable"]
    assert dr.spec["subsets"][1]["labels"] == {"rev": "b"}

    def edit(spec: Obj) -> None:
        spec["subsets"][0]["labels"]["tier"] = "gold"
        spec["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
        spec["subsets"][1]["trafficPolicy"] = {"tls": {"mode": "DISABLE"}}

    dr.edit(edit)
    dr.release("DestinationRule")
    expected = copy.deepcopy(DR)
    edit(expected)
    assert dr.spec == expected


def test_several_orphans_go_in_one_patch() -> None:
    store = Store("DestinationRule", DR, annotations={mark_key("a"): "{}", mark_key("b"): "{}", mark_key("c"): "{}"})
    assert orphans(store.obj, {"b"}) == ["a", "c"]
    assert store.release("DestinationRule", live={"b"}) == {
        "metadata": {"annotations": {mark_key("a"): None, mark_key("c"): None}}
    }
    assert marks(store.obj) == {"b": "{}"}
