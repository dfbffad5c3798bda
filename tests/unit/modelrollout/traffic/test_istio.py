"""The VirtualService and DestinationRule document transformations of the istio provider, and its router
against an in-memory store."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.buckets import sticky_match
from modelrollout.traffic.istio import (
    DestinationRuleAccess,
    IstioRouter,
    IstioTarget,
    current_routing,
    render_http,
    render_subsets,
)
from modelrollout.traffic.patching import Conflict, Routing, RoutingTargetError, merge_patched
from tests.unit.modelrollout.traffic.ab_verbs import BY_COOKIE, check_ab_verbs

TARGET = IstioTarget(name="rank", namespace="ns", stable_service="rank-stable", canary_service="rank-canary")
DOCS = {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]}
PRIMARY = {
    "name": "primary",
    "match": [{"uri": {"prefix": "/rank"}, "headers": {"x-team": {"exact": "a"}}}],
    "route": [{"destination": {"host": "rank.ns.svc.cluster.local"}}],
    "timeout": "5s",
    "retries": {"attempts": 2},
}


def _http() -> list[dict[str, Any]]:
    return copy.deepcopy([DOCS, PRIMARY])


def _dest(service: str, weight: int) -> dict[str, Any]:
    return {"destination": {"host": service, "port": {"number": 80}}, "weight": weight}


def test_weights_go_to_routes_to_our_hosts_only() -> None:
    http = render_http(_http(), Routing(stable=80, canary=20), TARGET)
    assert http[0] == DOCS
    assert http[1]["route"] == [_dest("rank-stable", 80), _dest("rank-canary", 20)]
    assert {k: v for k, v in http[1].items() if k != "route"} == {k: v for k, v in PRIMARY.items() if k != "route"}
    assert current_routing(http, TARGET) == Routing(stable=80, canary=20)
    assert render_http(http, Routing(stable=80, canary=20), TARGET) == http


def test_named_routes_are_managed_even_to_other_hosts() -> None:
    target = IstioTarget(
        name="rank", namespace="ns", stable_service="rank-stable", canary_service="rank-canary", routes=("docs",)
    )
    http = render_http(_http(), Routing(stable=0, canary=100), target)
    assert http[0]["route"] == [_dest("rank-stable", 0), _dest("rank-canary", 100)]
    assert http[1] == PRIMARY
    with pytest.raises(RoutingTargetError, match="no HTTP route named nope"):
        render_http(_http(), Routing(), IstioTarget(**{**_fields(target), "routes": ("nope",)}))


def _fields(target: IstioTarget) -> dict[str, Any]:
    return {k: getattr(target, k) for k in IstioTarget.__slots__}


@pytest.mark.parametrize("host", ["rank", "rank-stable", "rank.ns", "rank-canary.ns.svc", "rank.ns.svc.example.org"])
def test_our_hosts(host: str) -> None:
    assert TARGET.our_host(host)


@pytest.mark.parametrize("host", ["docs", "rank.other", "rank-x", "ranking.ns.svc.cluster.local"])
def test_not_our_hosts(host: str) -> None:
    assert not TARGET.our_host(host)


def test_no_route_to_us_is_an_error() -> None:
    with pytest.raises(RoutingTargetError, match="no HTTP route to rank"):
        render_http([copy.deepcopy(DOCS)], Routing(), TARGET)


def test_mirror_and_its_removal() -> None:
    http = render_http(_http(), Routing(mirror=25), TARGET)
    assert http[1]["mirror"] == {"host": "rank-canary", "port": {"number": 80}}
    assert http[1]["mirrorPercentage"] == {"value": 25.0}
    assert current_routing(http, TARGET).mirror == 25
    cleared = render_http(http, Routing(), TARGET)
    assert "mirror" not in cleared[1]
    assert "mirrorPercentage" not in cleared[1]


def test_a_mirror_to_another_host_is_the_users() -> None:
    http = _http()
    http[1]["mirror"] = {"host": "audit"}
    assert render_http(http, Routing(), TARGET)[1]["mirror"] == {"host": "audit"}


@pytest.mark.parametrize(
    ("match", "matcher"),
    [
        (HeaderMatch(header="X-Canary", exact="yes"), {"exact": "yes"}),
        (HeaderMatch(header="x-canary", regex="^b"), {"regex": "^b"}),
        (HeaderMatch(header="x-canary"), {"regex": ".*"}),
    ],
)
def test_header_route_goes_before_the_managed_route(match: HeaderMatch, matcher: dict[str, str]) -> None:
    http = render_http(_http(), Routing(stable=90, canary=10, mirror=5, header=match), TARGET)
    assert [r["name"] for r in http] == ["docs", "primary-modelrollout-header", "primary"]
    header = http[1]
    assert header["match"] == [{"uri": {"prefix": "/rank"}, "headers": {"x-team": {"exact": "a"}, "x-canary": matcher}}]
    assert header["route"] == [{"destination": {"host": "rank-canary", "port": {"number": 80}}, "weight": 100}]
    assert header["timeout"] == "5s"
    assert "mirror" not in header
    parsed = current_routing(http, TARGET)
    assert parsed.header == HeaderMatch(header="x-canary", exact=match.exact, regex=match.regex)
    assert render_http(http, parsed, TARGET) == http
    assert [r["name"] for r in render_http(http, Routing(stable=90, canary=10), TARGET)] == ["docs", "primary"]


def test_subsets_with_a_destination_rule() -> None:
    target = IstioTarget(**{**_fields(TARGET), "subset_host": "rank-all"})
    http = _http()
    http[1]["route"] = [{"destination": {"host": "rank-all"}}]
    out = render_http(http, Routing(stable=60, canary=40, mirror=10), target)
    assert out[1]["route"] == [
        {"destination": {"host": "rank-all", "subset": "stable"}, "weight": 60},
        {"destination": {"host": "rank-all", "subset": "canary"}, "weight": 40},
    ]
    assert out[1]["mirror"] == {"host": "rank-all", "subset": "canary"}
    assert current_routing(out, target) == Routing(stable=60, canary=40, mirror=10)


def test_render_subsets_keeps_the_users() -> None:
    subsets = [
        {"name": "legacy", "labels": {"v": "1"}},
        {"name": "canary", "labels": {"x": "y"}, "trafficPolicy": {"tls": {}}},
    ]
    labels = {"stable": {"rev": "a"}, "canary": {"rev": "b"}}
    assert render_subsets(subsets, labels) == [
        {"name": "legacy", "labels": {"v": "1"}},
        {"name": "canary", "labels": {"rev": "b"}, "trafficPolicy": {"tls": {}}},
        {"name": "stable", "labels": {"rev": "a"}},
    ]


# --- the router against an in-memory API server -------------------------------------------------------------


class Store:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.obj: dict[str, Any] = {"metadata": {"resourceVersion": "1"}, "spec": spec}
        self.writes = 0
        self.conflicts = 0

    async def read(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    async def write(self, patch: dict[str, Any], version: str) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] += "x"
        if version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.writes += 1
        version = self.obj["metadata"]["resourceVersion"] + "1"
        self.obj = merge_patched(self.obj, copy.deepcopy(patch))
        self.obj["metadata"]["resourceVersion"] = version
        return copy.deepcopy(self.obj)


async def test_router_with_a_destination_rule() -> None:
    vs = Store({"http": [copy.deepcopy(DOCS), {"name": "primary", "route": [{"destination": {"host": "rank-all"}}]}]})
    dr = Store({"host": "rank-all", "subsets": []})
    labels = {"stable": {"rev": "a"}, "canary": {"rev": "b"}}
    target = IstioTarget(**{**_fields(TARGET), "routes": ("primary",)})
    access = DestinationRuleAccess(read=dr.read, write=dr.write, labels=labels)
    router = IstioRouter(target=target, read=vs.read, write=vs.write, destination_rule=access)
    vs.conflicts = 2
    await router.set_weights(50, 50)
    assert dr.obj["spec"]["subsets"] == [
        {"name": "stable", "labels": {"rev": "a"}},
        {"name": "canary", "labels": {"rev": "b"}},
    ]
    http = vs.obj["spec"]["http"]
    assert http[0] == DOCS
    assert http[1]["route"][1] == {"destination": {"host": "rank-all", "subset": "canary"}, "weight": 50}
    assert await router.verify()
    writes = vs.writes + dr.writes
    assert not await router.converge(stable=50, canary=50, mirror=0)
    assert vs.writes + dr.writes == writes
    await router.set_header_route(HeaderMatch(header="x-c", exact="1"))
    await router.reset()
    assert [r["name"] for r in vs.obj["spec"]["http"]] == ["docs", "primary"]
    assert current_routing(vs.obj["spec"]["http"], replace_host(target)) == Routing()
    dr.obj["spec"]["subsets"][0]["labels"] = {"rev": "z"}
    assert not await router.verify()
    assert await router.converge(stable=100, canary=0, mirror=0), "the subset is restored"
    assert dr.obj["spec"]["subsets"][0]["labels"] == {"rev": "a"}


def replace_host(target: IstioTarget) -> IstioTarget:
    return IstioTarget(**{**_fields(target), "subset_host": "rank-all"})


async def test_missing_objects() -> None:
    async def missing() -> dict[str, Any] | None:
        return None

    vs = Store({"http": [copy.deepcopy(DOCS)]})
    router = IstioRouter(target=TARGET, read=missing, write=vs.write, what="VirtualService ns/rank")
    assert not await router.verify()
    with pytest.raises(RoutingTargetError, match="VirtualService ns/rank does not exist"):
        await router.set_mirror(10)
    assert not await router.converge(stable=100, canary=0, mirror=0), "nothing for the canary: no object needed"
    no_route = IstioRouter(target=TARGET, read=vs.read, write=vs.write)
    assert not await no_route.verify()
    assert not await no_route.converge(stable=100, canary=0, mirror=0)
    with pytest.raises(RoutingTargetError, match="no HTTP route to rank"):
        await no_route.converge(stable=90, canary=10, mirror=0)
    dr = DestinationRuleAccess(read=missing, write=vs.write, labels={"stable": {}, "canary": {}})
    with pytest.raises(RoutingTargetError, match="the DestinationRule does not exist"):
        await IstioRouter(target=TARGET, read=vs.read, write=vs.write, destination_rule=dr).set_weights(50, 50)


# --- A/B: a sticky assignment -------------------------------------------------------------------------------

BY_USER = StickyBy(header="x-user-id")


@pytest.mark.parametrize("by", [BY_USER, BY_COOKIE], ids=["header", "cookie"])
@pytest.mark.parametrize("percent", [1, 20, 50, 99])
def test_sticky_renders_weights_100_0_and_a_bucket_route(by: StickyBy, percent: int) -> None:
    routing = Routing(stable=100 - percent, canary=percent, mirror=5, sticky=by)
    http = render_http(_http(), routing, TARGET)
    assert [r["name"] for r in http] == ["docs", "primary-modelrollout-header", "primary"]
    assert http[2]["route"] == [_dest("rank-stable", 100), _dest("rank-canary", 0)]
    assert http[2]["mirrorPercentage"] == {"value": 5.0}
    match = sticky_match(by, percent)
    assert http[1]["match"] == [
        {"uri": {"prefix": "/rank"}, "headers": {"x-team": {"exact": "a"}, match.header: {"regex": match.regex}}}
    ]
    assert http[1]["route"] == [{"destination": {"host": "rank-canary", "port": {"number": 80}}, "weight": 100}]
    assert current_routing(http, TARGET) == routing
    assert render_http(http, current_routing(http, TARGET), TARGET) == http
    assert http == render_http(_http(), Routing(mirror=5, header=match), TARGET), "what it expresses"


@pytest.mark.parametrize("canary", [0, 100])
def test_sticky_at_0_or_100_percent_is_weights_alone(canary: int) -> None:
    http = render_http(_http(), Routing(stable=100 - canary, canary=canary, sticky=BY_USER), TARGET)
    assert http == render_http(_http(), Routing(stable=100 - canary, canary=canary), TARGET)
    assert [r["name"] for r in http] == ["docs", "primary"]


def test_a_sticky_header_name_reads_back_in_lower_case() -> None:
    http = render_http(_http(), Routing(stable=70, canary=30, sticky=StickyBy(header="X-User-Id")), TARGET)
    assert current_routing(http, TARGET) == Routing(stable=70, canary=30, sticky=BY_USER)
    # Header names are case-insensitive: either spelling renders the same VirtualService.
    assert render_http(http, Routing(stable=70, canary=30, sticky=StickyBy(header="X-User-Id")), TARGET) == http


async def test_ab_verbs_are_idempotent() -> None:
    vs = Store({"http": _http()})
    router = IstioRouter(target=TARGET, read=vs.read, write=vs.write)

    await check_ab_verbs(
        router,
        by_user=BY_USER,
        set_as=StickyBy(header="X-User-Id"),
        routing=lambda: current_routing(vs.obj["spec"]["http"], TARGET),
        stored=lambda: vs.obj["spec"]["http"],
        writes=lambda: vs.writes,
    )
    assert vs.obj["spec"]["http"] == render_http(_http(), Routing(), TARGET)
    no_route = IstioRouter(target=TARGET, read=Store({"http": [copy.deepcopy(DOCS)]}).read, write=vs.write)
    assert not await no_route.converge(stable=100, canary=0, mirror=0, sticky=BY_USER), "nothing to split yet"
    with pytest.raises(RoutingTargetError):
        await no_route.converge(stable=90, canary=10, mirror=0, sticky=BY_USER)
