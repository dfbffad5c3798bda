"""The gatewayAPI and istio routers against the real API server: every step of canary, shadow, blue-green, a
header route and an abort is read back from the HTTPRoute / VirtualService (and DestinationRule) as stored,
while the platform team keeps editing a rule we do not manage, whose edits must survive every change.

The routers are built by the operator's own `router_for` over its KubeClient (field manager `modelrollout`),
so the wiring, the conditional merge patches and the CRDs' defaulting are all real."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from modelrollout.api import API_VERSION, KIND, ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef
from modelrollout.kube.client import KubeClient
from modelrollout.kube.routers import ConvergingRouter, RouterContext, router_for
from modelrollout.planning.names import selector
from modelrollout.traffic import gateway_api, istio
from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.buckets import sticky_match
from modelrollout.traffic.patching import HEADER_SUFFIX, Routing
from tests.integration.traffic.conftest import DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE, Objects

pytestmark = [pytest.mark.integration]

STABLE = RevisionRef(revision="aaaa1111", version="1")
CANARY = RevisionRef(revision="bbbb2222", version="2")

MODEL_FILTERS = [
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-from", "value": "gateway"}]}}
]
HTTP_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "pricing"},
    "spec": {
        "parentRefs": [{"name": "public"}],
        "hostnames": ["pricing.example.com"],
        "rules": [
            {
                "name": "home",
                "matches": [{"path": {"type": "PathPrefix", "value": "/home"}}],
                "backendRefs": [{"name": "web", "port": 8080}],
            },
            {
                "name": "model",
                "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
                "filters": copy.deepcopy(MODEL_FILTERS),
                "backendRefs": [{"name": "pricing", "port": 80}],
                "timeouts": {"request": "5s"},
            },
        ],
    },
}


def _virtual_service(host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "pricing"},
        "spec": {
            "hosts": ["pricing.example.com"],
            "gateways": ["public"],
            "http": [
                {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]},
                {
                    "name": "primary",
                    "match": [{"uri": {"prefix": "/predict"}}],
                    "route": [{"destination": {"host": host}}],
                    "timeout": "5s",
                },
            ],
        },
    }


DESTINATION = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "pricing"},
    "spec": {"host": "pricing-all", "subsets": [{"name": "legacy", "labels": {"version": "old"}}]},
}


@dataclass(frozen=True)
class Case:
    """One provider setup: the user's objects, how to read our routing back, and the platform team's edit."""

    id: str
    routing: dict[str, Any]
    create: Callable[[Objects], Awaitable[None]]
    resource: tuple[str, str, str]
    parse: Callable[[dict[str, Any]], Routing]
    rules_key: str  # spec.rules or spec.http
    user_edit_path: str  # JSON pointer of a field in the rule/route we do not manage
    ours: Callable[[dict[str, Any]], list[dict[str, Any]]]  # the rules/routes we added


async def _create_gateway(objects: Objects) -> None:
    await objects.create(GATEWAY, copy.deepcopy(HTTP_ROUTE))


async def _create_istio(objects: Objects) -> None:
    await objects.create(VIRTUAL_SERVICE, _virtual_service("pricing"))


async def _create_istio_subsets(objects: Objects) -> None:
    await objects.create(DESTINATION_RULE, copy.deepcopy(DESTINATION))
    await objects.create(VIRTUAL_SERVICE, _virtual_service("pricing-all"))


GATEWAY_TARGET = gateway_api.GatewayTarget(
    name="pricing", stable_service="pricing-stable", canary_service="pricing-canary", rule_name="model"
)


def _istio_target(subset_host: str | None) -> istio.IstioTarget:
    return istio.IstioTarget(
        name="pricing",
        namespace="unused",
        stable_service="pricing-stable",
        canary_service="pricing-canary",
        routes=("primary",),
        subset_host=subset_host,
    )


def _added(key: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    return lambda obj: [r for r in obj["spec"][key] if str(r.get("name", "")).endswith(HEADER_SUFFIX)]


CASES = [
    Case(
        id="gatewayAPI",
        routing={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "pricing", "ruleName": "model"}},
        create=_create_gateway,
        resource=GATEWAY,
        parse=lambda obj: gateway_api.current_routing(obj["spec"]["rules"], GATEWAY_TARGET),
        rules_key="rules",
        user_edit_path="/spec/rules/0/matches/0/path/value",
        ours=_added("rules"),
    ),
    Case(
        id="istio",
        routing={"provider": "istio", "istio": {"virtualService": "pricing", "routes": ["primary"]}},
        create=_create_istio,
        resource=VIRTUAL_SERVICE,
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _istio_target(None)),
        rules_key="http",
        user_edit_path="/spec/http/0/match/0/uri/prefix",
        ours=_added("http"),
    ),
    Case(
        id="istio-destinationRule",
        routing={
            "provider": "istio",
            "istio": {"virtualService": "pricing", "routes": ["primary"], "destinationRule": "pricing"},
        },
        create=_create_istio_subsets,
        resource=VIRTUAL_SERVICE,
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _istio_target("pricing-all")),
        rules_key="http",
        user_edit_path="/spec/http/0/match/0/uri/prefix",
        ours=_added("http"),
    ),
]


def _model_deployment(namespace: str, routing: dict[str, Any]) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "pricing", "namespace": namespace, "uid": "0000"},
            "spec": {
                "model": {
                    "name": "pricing",
                    "version": "2",
                    "uri": "s3://m/pricing/2/model.joblib",
                    "format": "sklearn",
                },
                "online": {"replicas": 2},
                "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}]}, "trafficRouting": routing},
            },
        }
    )


class Session:
    """Drives one provider's router step by step, as successive operator passes would (a router per pass)."""

    def __init__(self, case: Case, objects: Objects, kube: KubeClient) -> None:
        self.case = case
        self.objects = objects
        self.md = _model_deployment(objects.ns, case.routing)
        self.kube = kube
        self.edits = 0
        self.status = ModelDeploymentStatus(stable=STABLE, canary=CANARY)

    def router(self) -> ConvergingRouter:
        router = router_for(RouterContext(md=self.md, status=self.status, kube=self.kube))
        assert router is not None
        return router

    async def stored(self) -> dict[str, Any]:
        return await self.objects.get(self.case.resource, "pricing")

    async def user_edits(self) -> str:
        """The platform team changes a rule of theirs between two of our writes."""
        self.edits += 1
        value = f"/theirs-{self.edits}"
        await self.objects.json_patch(
            self.case.resource, "pricing", [{"op": "replace", "path": self.case.user_edit_path, "value": value}]
        )
        return value

    async def step(self, action: Callable[[ConvergingRouter], Awaitable[None]], expected: Routing) -> dict[str, Any]:
        value = await self.user_edits()
        router = self.router()
        await action(router)
        stored = await self.stored()
        assert self.case.parse(stored) == expected
        theirs = stored["spec"][self.case.rules_key][0]
        assert value in str(theirs), f"the user's edit survived: {theirs}"
        assert await router.verify()
        # The next passes find nothing to change: what we render is exactly what the API server stores.
        again = self.router()
        assert not await again.converge(
            stable=expected.stable, canary=expected.canary, mirror=expected.mirror, sticky=expected.sticky
        )
        assert (await self.stored())["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
        return stored


def _weights(stable: int, canary: int) -> Callable[[ConvergingRouter], Awaitable[None]]:
    return lambda router: router.set_weights(stable, canary)


def _mirror(percent: int) -> Callable[[ConvergingRouter], Awaitable[None]]:
    return lambda router: router.set_mirror(percent)


def _header(match: HeaderMatch | None) -> Callable[[ConvergingRouter], Awaitable[None]]:
    return lambda router: router.set_header_route(match)


def _sticky(by: StickyBy | None) -> Callable[[ConvergingRouter], Awaitable[None]]:
    return lambda router: router.set_sticky(by)


def _reset(router: ConvergingRouter) -> Awaitable[None]:
    return router.reset()


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
async def session(request: pytest.FixtureRequest, objects: Objects, kube: KubeClient) -> Session:
    case: Case = request.param
    await case.create(objects)
    return Session(case, objects, kube)


def _managed(session: Session, stored: dict[str, Any]) -> dict[str, Any]:
    rules = stored["spec"][session.case.rules_key]
    name = "model" if session.case.resource == GATEWAY else "primary"
    return next(r for r in rules if r.get("name") == name)


async def test_canary_steps(session: Session) -> None:
    for canary in (20, 50, 80, 0):
        stored = await session.step(_weights(100 - canary, canary), Routing(stable=100 - canary, canary=canary))
        managed = _managed(session, stored)
        if session.case.resource == GATEWAY:
            assert managed["backendRefs"] == [
                {"group": "", "kind": "Service", "name": "pricing-stable", "port": 80, "weight": 100 - canary},
                {"group": "", "kind": "Service", "name": "pricing-canary", "port": 80, "weight": canary},
            ]
            assert managed["filters"] == MODEL_FILTERS, "the user's filter is kept"
            assert managed["timeouts"] == {"request": "5s"}
        else:
            assert [entry["weight"] for entry in managed["route"]] == [100 - canary, canary]
            assert managed["timeout"] == "5s"
        assert session.case.ours(stored) == []


async def test_shadow_mirror_set_and_removed(session: Session) -> None:
    stored = await session.step(_mirror(30), Routing(mirror=30))
    managed = _managed(session, stored)
    if session.case.resource == GATEWAY:
        mirror = [f for f in managed["filters"] if f["type"] == "RequestMirror"]
        assert mirror == [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"group": "", "kind": "Service", "name": "pricing-canary", "port": 80},
                    "percent": 30,
                },
            }
        ]
    else:
        assert managed["mirrorPercentage"] == {"value": 30}
        assert managed["mirror"]["host"] in ("pricing-canary", "pricing-all")
    await session.step(_mirror(100), Routing(mirror=100))
    stored = await session.step(_mirror(0), Routing())
    managed = _managed(session, stored)
    if session.case.resource == GATEWAY:
        assert managed["filters"] == MODEL_FILTERS
    else:
        assert "mirror" not in managed
        assert "mirrorPercentage" not in managed


async def test_blue_green_switch(session: Session) -> None:
    await session.step(_weights(100, 0), Routing())
    await session.step(_weights(0, 100), Routing(stable=0, canary=100))
    # Promoted: the candidate becomes stable (the -stable Service / subset follows it), weights back to stable.
    session.status = ModelDeploymentStatus(stable=CANARY)
    await session.step(lambda router: _converged(router, 100, 0, 0), Routing())


async def _converged(router: ConvergingRouter, stable: int, canary: int, mirror: int) -> None:
    assert await router.converge(stable=stable, canary=canary, mirror=mirror)


async def test_header_route_added_and_removed(session: Session) -> None:
    match = HeaderMatch(header="x-canary", exact="yes")
    stored = await session.step(_header(match), Routing(header=match))
    [added] = session.case.ours(stored)
    if session.case.resource == GATEWAY:
        assert [r["name"] for r in stored["spec"]["rules"]] == ["home", "model", "model-modelrollout-header"]
        assert added["matches"][0]["headers"] == [{"type": "Exact", "name": "x-canary", "value": "yes"}]
        assert [ref["name"] for ref in added["backendRefs"]] == ["pricing-canary"]
    else:
        assert [r["name"] for r in stored["spec"]["http"]] == ["docs", "primary-modelrollout-header", "primary"]
        assert added["match"][0]["headers"] == {"x-canary": {"exact": "yes"}}
        assert added["match"][0]["uri"] == {"prefix": "/predict"}
    # Weights move while the header route stays.
    await session.step(_weights(50, 50), Routing(stable=50, canary=50, header=match))
    stored = await session.step(_header(None), Routing(stable=50, canary=50))
    assert session.case.ours(stored) == []


async def test_abort_resets_everything_we_added(session: Session) -> None:
    presence = HeaderMatch(header="x-canary")
    await session.step(_weights(50, 50), Routing(stable=50, canary=50))
    await session.step(_mirror(20), Routing(stable=50, canary=50, mirror=20))
    await session.step(_header(presence), Routing(stable=50, canary=50, mirror=20, header=presence))
    stored = await session.step(_reset, Routing())
    assert session.case.ours(stored) == []
    managed = _managed(session, stored)
    assert "mirror" not in managed
    if session.case.resource == GATEWAY:
        assert managed["filters"] == MODEL_FILTERS


async def test_a_hand_edit_of_our_rule_is_restored(session: Session) -> None:
    await session.step(_weights(80, 20), Routing(stable=80, canary=20))
    key = session.case.rules_key
    pointer = f"/spec/{key}/1/{'backendRefs' if key == 'rules' else 'route'}/1/weight"
    await session.objects.json_patch(
        session.case.resource, "pricing", [{"op": "replace", "path": pointer, "value": 77}]
    )
    assert session.case.parse(await session.stored()) != Routing(stable=80, canary=20)
    router = session.router()
    assert await router.converge(stable=80, canary=20, mirror=0)
    assert session.case.parse(await session.stored()) == Routing(stable=80, canary=20)


async def test_destination_rule_subsets_follow_the_roles(objects: Objects, kube: KubeClient) -> None:
    session = Session(CASES[2], objects, kube)
    await _create_istio_subsets(objects)
    await session.step(_weights(60, 40), Routing(stable=60, canary=40))
    rule = await objects.get(DESTINATION_RULE, "pricing")
    assert rule["spec"]["subsets"] == [
        {"name": "legacy", "labels": {"version": "old"}},
        {"name": "stable", "labels": selector("pricing", "online", STABLE.revision)},
        {"name": "canary", "labels": selector("pricing", "online", CANARY.revision)},
    ]
    # Promotion: stable's subset now selects the new revision; without a candidate, canary's does too.
    session.status = ModelDeploymentStatus(stable=CANARY)
    await session.step(lambda router: _converged(router, 100, 0, 0), Routing())
    subsets = {s["name"]: s["labels"] for s in (await objects.get(DESTINATION_RULE, "pricing"))["spec"]["subsets"]}
    assert subsets["stable"] == subsets["canary"] == selector("pricing", "online", CANARY.revision)
    assert subsets["legacy"] == {"version": "old"}


def _bucket_rule(session: Session, stored: dict[str, Any], match: HeaderMatch) -> None:
    """The managed rule sends everyone to stable; our one added rule sends the canary's users to the canary."""
    managed = _managed(session, stored)
    [added] = session.case.ours(stored)
    if session.case.resource == GATEWAY:
        assert [ref["weight"] for ref in managed["backendRefs"]] == [100, 0]
        assert [r["name"] for r in stored["spec"]["rules"]][:3] == ["home", "model", "model-modelrollout-header"]
        assert added["matches"][0]["path"] == {"type": "PathPrefix", "value": "/predict"}
        assert added["matches"][0]["headers"] == [
            {"type": "RegularExpression", "name": match.header, "value": match.regex}
        ]
        assert [ref["name"] for ref in added["backendRefs"]] == ["pricing-canary"]
    else:
        assert [entry["weight"] for entry in managed["route"]] == [100, 0]
        assert [r["name"] for r in stored["spec"]["http"]][:3] == ["docs", "primary-modelrollout-header", "primary"]
        assert added["match"][0]["uri"] == {"prefix": "/predict"}
        assert added["match"][0]["headers"] == {match.header: {"regex": match.regex}}
        assert [entry["weight"] for entry in added["route"]] == [100]
        assert added["route"][0]["destination"] in (
            {"host": "pricing-canary", "port": {"number": 80}},
            {"host": "pricing-all", "subset": "canary"},
        )


async def test_ab_sticky_assignment_by_header_then_cookie_then_abort(session: Session) -> None:
    by_user, by_cookie = StickyBy(header="x-user-id"), StickyBy(cookie="session")
    await session.step(_weights(50, 50), Routing(stable=50, canary=50))
    # The canary's 50% becomes a share of users: weights 100/0, and a rule for the users of the canary's buckets.
    stored = await session.step(_sticky(by_user), Routing(stable=50, canary=50, sticky=by_user))
    _bucket_rule(session, stored, sticky_match(by_user, 50))
    # The share of users moves as weights do, the assignment staying.
    stored = await session.step(_weights(80, 20), Routing(stable=80, canary=20, sticky=by_user))
    _bucket_rule(session, stored, sticky_match(by_user, 20))
    # The platform team adds a rule of their own while the test runs; it must outlive every change of ours.
    theirs = {
        "gatewayAPI": {
            "name": "beta",
            "matches": [{"path": {"type": "PathPrefix", "value": "/beta"}}],
            "backendRefs": [{"name": "beta", "port": 80}],
        },
        "istio": {
            "name": "beta",
            "match": [{"uri": {"prefix": "/beta"}}],
            "route": [{"destination": {"host": "beta"}}],
        },
    }["gatewayAPI" if session.case.resource == GATEWAY else "istio"]
    key = session.case.rules_key
    await session.objects.json_patch(
        session.case.resource, "pricing", [{"op": "add", "path": f"/spec/{key}/-", "value": theirs}]
    )
    stored = await session.step(_sticky(by_cookie), Routing(stable=80, canary=20, sticky=by_cookie))
    _bucket_rule(session, stored, sticky_match(by_cookie, 20))
    assert sticky_match(by_cookie, 20).header == "cookie"
    users = [r for r in stored["spec"][key] if r.get("name") in ("home", "docs", "beta")]
    assert [r["name"] for r in users][-1] == "beta"
    # Abort: our rule goes, weights back to stable, and the user's rules are exactly as they were.
    router = session.router()
    await router.reset()
    stored = await session.stored()
    assert session.case.parse(stored) == Routing()
    assert session.case.ours(stored) == []
    assert [r for r in stored["spec"][key] if r.get("name") in ("home", "docs", "beta")] == users
    if session.case.resource == GATEWAY:
        assert _managed(session, stored)["filters"] == MODEL_FILTERS
    assert await router.verify()
    assert not await session.router().converge(stable=100, canary=0, mirror=0, sticky=by_cookie)
