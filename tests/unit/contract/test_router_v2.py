"""Version 2 of the routing document: our router reads every valid vector as the routing it means and refuses every
invalid one with the reason; a version 1 document is read as the version 2 routing it means; the operator's
version 1 reader refuses version 2 by its schemaVersion (it writes version 1 so far, which a router of the previous
release still reads)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit.vectors import (
    Refused,
    full_document,
    invalid_router_v2_documents,
    valid_router_documents,
    valid_router_v2_documents,
)

from modelrollout_contract.router import RouterConfig, RouterConfigError, StickyBy, parse_document
from modelrollout_contract.router_v2 import (
    BackendV2,
    Ensemble,
    Fallback,
    Mirror,
    Route,
    RouterConfigV2,
    Share,
    downgrade,
    parse_any,
    to_document_v2,
    upgrade,
    with_fallback,
    with_graph,
)
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import APPLIED, INVALID, Routing


def router() -> Routing:
    return Routing(metrics=RouterMetrics(CollectorRegistry()))


@pytest.mark.parametrize("path", valid_router_v2_documents(), ids=lambda p: p.stem)
def test_every_valid_v2_document_is_read_and_written_back_as_the_same_routing(path: Path) -> None:
    config = parse_any(path.read_text())
    assert parse_any(to_document_v2(config)) == config
    written, vector = json.loads(to_document_v2(config)), json.loads(path.read_text())
    assert {key: written[key] for key in vector} == vector  # nothing lost (defaults are written out)
    routing = router()
    assert routing.apply(path.read_text(), origin="vector") == APPLIED
    assert routing.snapshot is not None
    assert routing.snapshot.config == config


@pytest.mark.parametrize("case", invalid_router_v2_documents(), ids=lambda c: c.id)
def test_every_invalid_v2_document_is_refused_with_the_reason(case: Refused, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RouterConfigError) as refused:
        parse_any(case.document)
    assert case.error in str(refused.value)
    with caplog.at_level(logging.ERROR, logger="modelserver.routing.reload"):
        assert router().apply(case.document, origin="vector") == INVALID
    assert any(case.error in record.getMessage() for record in caplog.records), caplog.text


def test_the_v2_vectors_cover_each_rule() -> None:
    assert len(valid_router_v2_documents()) >= 4
    assert len({c.id for c in invalid_router_v2_documents()}) == len(invalid_router_v2_documents()) >= 25


def test_a_v1_document_means_its_v2_routing() -> None:
    full = parse_document(json.dumps(full_document()))
    assert upgrade(full) == RouterConfigV2(
        route="churn",
        control="stable",
        backends={
            "stable": BackendV2(url="http://churn-stable.prod.svc:80", version="1"),
            "canary": BackendV2(url="http://churn-canary.prod.svc:80", version="2"),
        },
        # The canary first: a user's bucket below its weight x 100 is the canary's, as in version 1.
        split=[Share(backend="canary", weight=10), Share(backend="stable", weight=90)],
        sticky_by=full.sticky_by,
        routes=[Route(header="x-canary", exact="yes", to="canary")],
        mirror=Mirror(source="stable", to="canary", percent=5),
        fallbacks={"canary": Fallback(to=["stable"])},  # retryOnStable
        timeout_seconds=2.5,
    )
    for path in valid_router_documents():
        assert parse_any(path.read_text()) == upgrade(parse_document(path.read_text()))


def test_a_v1_document_without_a_canary_or_its_extras_has_only_stable() -> None:
    plain = upgrade(parse_document(json.dumps(full_document() | {"retryOnStable": False, "mirrorPercent": 0})))
    assert (plain.mirror, plain.fallbacks) == (None, {})
    minimal = {"schemaVersion": 1, "route": "r", "backends": {"stable": "http://s"}, "versions": {"stable": "1"}}
    only = parse_any(json.dumps(minimal))
    assert (list(only.backends), only.split, only.routes) == (["stable"], [Share(backend="stable", weight=100)], [])


def test_the_operators_v1_reader_refuses_v2_by_its_version() -> None:
    for path in valid_router_v2_documents():
        with pytest.raises(RouterConfigError, match="schemaVersion 2; this reader knows 1"):
            parse_document(path.read_text())


def test_a_v1_document_upgraded_and_given_a_fallback_downgrades_to_itself() -> None:
    rules = BackendV2(url="http://churn-fallback.prod.svc:80", version="rules-1")
    for path in valid_router_documents():
        v1 = parse_document(path.read_text())
        assert downgrade(upgrade(v1)) == v1
        assert downgrade(with_fallback(upgrade(v1), rules, budget_seconds=None)) == v1
    with pytest.raises(RouterConfigError, match="has no 'stable' backend"):
        downgrade(parse_any((valid_router_v2_documents()[0]).read_text().replace('"stable"', '"primary"')))


MEMBERS = {"b": BackendV2(url="http://churn-b.prod.svc:80", version="b1"),
           "c": BackendV2(url="http://churn-c.prod.svc:80", version="c1")}  # fmt: skip


def test_a_graph_ensemble_answers_in_the_place_of_stable_and_of_the_canary() -> None:
    canary_at_30 = v1_routing(canary=30, retry_on_stable=True)
    rules = BackendV2(url="http://churn-fallback.prod.svc:80", version="rules")
    trio = Ensemble(members=["self", "b", "c"], combine="weighted", weights={"self": 2, "b": 1, "c": 1}, quorum=2)
    to_b = Route(to="b", feature="country", equals="FR")
    routing = with_graph(with_fallback(upgrade(canary_at_30), rules, budget_seconds=0.5), MEMBERS,
                         ensemble=trio, routes=[to_b])  # fmt: skip

    assert routing.control == "ensemble"
    assert [(s.backend, s.weight) for s in routing.split] == [("ensemble-canary", 30), ("ensemble", 70)]
    assert routing.ensembles["ensemble"].members == ["stable", "b", "c"]
    assert routing.ensembles["ensemble"].weights == {"stable": 2, "b": 1, "c": 1}
    assert routing.ensembles["ensemble-canary"].members == ["canary", "b", "c"]
    assert routing.ensembles["ensemble-canary"].quorum == 2
    # The canary's header route pins the canary's ensemble; the graph's own routes come after it.
    routes = [(r.to, r.header or r.feature) for r in routing.routes]
    assert routes == [("ensemble-canary", "x-canary"), ("b", "country")]
    assert routing.fallbacks == {
        "ensemble": Fallback(to=["fallback"], latency_budget_seconds=0.5),
        "ensemble-canary": Fallback(to=["ensemble", "fallback"], latency_budget_seconds=0.5),
    }
    # The rollout's state reads back as it was written.
    assert downgrade(routing) == canary_at_30
    assert downgrade(parse_any(to_document_v2(routing))) == canary_at_30


def test_a_graph_of_routes_only_keeps_the_rollouts_backends_and_adds_the_members() -> None:
    v1 = v1_routing(canary=10, retry_on_stable=False)
    routing = with_graph(upgrade(v1), MEMBERS, ensemble=None, routes=[Route(to="c", header="x-region", exact="eu")])
    assert routing.ensembles == {}
    assert set(routing.backends) == {"stable", "canary", "b", "c"}
    assert routing.routes[-1].to == "c"
    assert downgrade(routing) == v1


def test_a_graph_refuses_what_the_operators_routing_cannot_hold() -> None:
    v1 = v1_routing(canary=10, retry_on_stable=False)
    pair = Ensemble(members=["b", "c"])
    with pytest.raises(ValueError, match="must name 'self'"):
        with_graph(upgrade(v1), MEMBERS, ensemble=pair, routes=[])
    with pytest.raises(ValueError, match="take names the operator's routing uses"):
        with_graph(upgrade(v1), {"canary": MEMBERS["b"]}, ensemble=None, routes=[])
    mirrored = upgrade(v1.model_copy(update={"mirror_percent": 5}))
    with pytest.raises(ValueError, match="stable never answers alone"):
        with_graph(mirrored, MEMBERS, ensemble=Ensemble(members=["self", "b"]), routes=[])
    with pytest.raises(ValueError, match="not in backends or ensembles"):
        with_graph(upgrade(v1), MEMBERS, ensemble=None, routes=[Route(to="d", header="x-region", exact="eu")])


def v1_routing(*, canary: int, retry_on_stable: bool) -> RouterConfig:
    return RouterConfig.model_validate(
        {
            "route": "churn",
            "backends": {"stable": "http://churn-stable.prod.svc:80", "canary": "http://churn-canary.prod.svc:80"},
            "versions": {"stable": "1", "canary": "2"},
            "weights": {"stable": 100 - canary, "canary": canary},
            "header_route": {"header": "x-canary", "exact": "always"},
            "retry_on_stable": retry_on_stable,
        }
    )


def test_a_graphs_ab_n_split_replaces_the_rollouts_and_reads_back_as_stable_alone() -> None:
    direct = v1_routing(canary=0, retry_on_stable=False)
    by_user = StickyBy(header="x-user-id")
    routing = with_graph(upgrade(direct), MEMBERS, ensemble=None, routes=[],
                         variants=[("self", 34), ("b", 33), ("c", 33)], sticky_by=by_user)  # fmt: skip
    assert [(s.backend, s.weight) for s in routing.split] == [("canary", 0), ("stable", 34), ("b", 33), ("c", 33)]
    assert (routing.control, routing.sticky_by) == ("stable", by_user)
    back = downgrade(parse_any(to_document_v2(routing)))
    assert (back.weights.stable, back.weights.canary) == (100, 0)
    with pytest.raises(ValueError, match="no canary weight"):
        with_graph(upgrade(v1_routing(canary=10, retry_on_stable=False)), MEMBERS, ensemble=None, routes=[],
                   variants=[("self", 50), ("b", 50)])  # fmt: skip
    with pytest.raises(ValueError, match="an ensemble asks them all"):
        with_graph(upgrade(direct), MEMBERS, ensemble=Ensemble(members=["self", "b"]), routes=[],
                   variants=[("self", 50), ("b", 50)])  # fmt: skip
