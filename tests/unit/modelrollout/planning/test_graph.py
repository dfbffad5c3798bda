"""A serving graph, pure: each member's place in status.graph from its ModelDeployment as found, and the routing
the router's document gets (members' Services and stable versions, the ensemble, the routes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelrollout.api.graph import GraphAbn, ServingGraph
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import GraphAbnStatus, GraphStatus, ModelDeploymentStatus
from modelrollout.planning.graph import (
    abn_evaluated,
    abn_round,
    abn_split,
    graph_member_names,
    graph_routing,
    graph_status,
)
from modelrollout_contract.router_v2 import Route

MODEL = {"name": "churn", "version": "1", "uri": "s3://models/churn/1/model.joblib", "format": "sklearn"}
GRAPH = {
    "members": [{"name": "b", "modelDeployment": "churn-b"}, {"name": "c", "modelDeployment": "churn-c"}],
    "ensemble": {"members": ["self", "b", "c"], "combine": "vote", "weights": {"self": 2, "b": 1, "c": 1}},
    "routes": [{"to": "b", "header": "x-region", "regex": "eu-.*"}, {"to": "c", "feature": "n", "in": ["FR", 33]}],
}


def spec(graph: dict[str, Any] | None = GRAPH) -> ModelDeploymentSpec:
    online = {"replicas": 1, **({"graph": graph} if graph else {})}
    return ModelDeploymentSpec.model_validate(
        {"model": MODEL, "online": online, "rollout": {"strategy": "direct", "trafficRouting": {"provider": "router"}}}
    )


def found(*, model: str = "churn", online: bool = True, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"model": {**MODEL, "name": model}}}
    if online:
        body["spec"]["online"] = {"replicas": 1}
    return body | ({"status": status} if status is not None else {})


def test_each_member_is_where_its_own_model_deployment_says() -> None:
    own = ModelDeploymentStatus.model_validate(
        {
            "phase": "Progressing",
            "stable": {"revision": "aa", "version": "1"},
            "canary": {"revision": "bb", "version": "2"},
            "weights": {"stable": 70, "canary": 30},
        }
    )
    rolling = {"phase": "Paused", "stable": {"revision": "cc", "version": "b1"}, "canary": {"revision": "dd",
               "version": "b2"}, "weights": {"stable": 90, "canary": 10}}  # fmt: skip
    graph = graph_status(spec(), "churn", own, {"churn-b": found(status=rolling)})
    assert graph is not None
    by_name = {m.name: m for m in graph.members}
    assert [m.name for m in graph.members] == ["self", "b", "c"]
    assert (by_name["self"].phase, by_name["self"].canary_weight, by_name["self"].model_deployment) == (
        "Progressing", 30, "churn")  # fmt: skip
    assert by_name["b"].phase == "Paused"
    assert by_name["b"].canary_weight == 10
    assert by_name["b"].stable is not None
    assert by_name["b"].stable.version == "b1"
    assert by_name["c"].phase == "Missing"
    assert by_name["c"].stable is None


def test_a_member_that_cannot_answer_for_this_model_says_why() -> None:
    own = ModelDeploymentStatus()
    assert graph_status(spec(None), "churn", own, {}) is None
    cases = {"churn-b": found(online=False), "churn-c": found(model="fraud")}
    graph = graph_status(spec(), "churn", own, cases)
    assert graph is not None
    assert [m.phase for m in graph.members[1:]] == ["NotServing", "OtherModel"]
    # A status this operator cannot read (another version's) leaves the phase unknown, not the pass failed.
    odd = graph_status(spec(), "churn", own, {"churn-b": found(status={"phase": "Sideways"})})
    assert odd is not None
    assert odd.members[1].phase == "Pending"


def test_the_router_calls_each_members_service_under_its_stable_version() -> None:
    own = ModelDeploymentStatus()
    members = graph_status(
        spec(), "churn", own, {"churn-b": found(status={"stable": {"revision": "x", "version": "b1"}})}
    )
    routing = graph_routing(ServingGraph.model_validate(GRAPH), "ml", members)
    assert {n: (b.url, b.version) for n, b in routing.members.items()} == {
        "b": ("http://churn-b.ml.svc:80", "b1"),
        "c": ("http://churn-c.ml.svc:80", "unknown"),
    }
    assert routing.ensemble is not None
    assert routing.ensemble.combine == "vote"
    assert routing.ensemble.weights == {"self": 2, "b": 1, "c": 1}
    assert routing.routes == (Route(to="b", header="x-region", regex="eu-.*"),
                              Route.model_validate({"to": "c", "feature": "n", "in": ["FR", 33]}))  # fmt: skip


def test_the_model_deployments_a_stored_graph_names_are_read_from_any_body() -> None:
    assert graph_member_names({"spec": {"online": {"graph": GRAPH}}}) == {"churn-b", "churn-c"}
    assert graph_member_names({"spec": {"online": {"graph": {"members": [{"name": "x"}, "junk"]}}}}) == set()
    assert graph_member_names({}) == set()


ABN = {
    "variants": [{"name": "self", "weight": 34}, {"name": "b", "weight": 33}, {"name": "c", "weight": 33}],
    "routeBy": {"header": "x-user-id"},
    "successMetric": {
        "successes": 'sum(increase(conv{v="{{version}}"}[{{interval}}]))',
        "trials": 'sum(increase(visits{v="{{version}}"}[{{interval}}]))',
    },
    "minSamples": 500,
    "interval": "1m",
}
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def serving(**versions: str) -> GraphStatus:
    return GraphStatus.model_validate(
        {
            "members": [
                {
                    "name": n,
                    "modelDeployment": f"churn-{n}",
                    "phase": "Healthy",
                    "stable": {"revision": f"r{v}", "version": v},
                }
                for n, v in versions.items()
            ]
        }
    )


def test_an_ab_n_test_starts_once_every_variant_serves_and_restarts_when_what_it_splits_changes() -> None:
    abn = GraphAbn.model_validate(ABN)
    assert abn_round(abn, serving(self="1", b="b1"), None, T0) is None  # c serves nothing yet
    first = abn_round(abn, serving(self="1", b="b1", c="c1"), None, T0)
    assert first is not None
    assert (first.status.started_at, first.due, first.next_at) == (T0, False, T0 + timedelta(minutes=1))
    assert [(v.name, v.version) for v in first.status.variants] == [("self", "1"), ("b", "b1"), ("c", "c1")]
    later = abn_round(abn, serving(self="1", b="b1", c="c1"), first.status, T0 + timedelta(seconds=61))
    assert later is not None
    assert (later.due, later.status.started_at) == (True, T0)
    # b promoted a new version: another test, from now.
    moved = abn_round(abn, serving(self="1", b="b2", c="c1"), first.status, T0 + timedelta(minutes=5))
    assert moved is not None
    assert (moved.due, moved.status.started_at) == (False, T0 + timedelta(minutes=5))


def test_the_best_variant_significantly_better_than_the_control_wins_after_holms_correction() -> None:
    abn = GraphAbn.model_validate(ABN)
    round_ = abn_round(abn, serving(self="1", b="b1", c="c1"), None, T0)
    assert round_ is not None
    counts = {"self": (50, 1000), "b": (55, 1000), "c": (120, 1000)}
    test = abn_evaluated(abn, round_, counts, T0 + timedelta(minutes=1))
    assert test.winner == "c"
    verdicts = {v.name: (v.verdict, v.successes, v.trials) for v in test.variants}
    assert verdicts == {"self": ("Control", 50, 1000), "b": ("Undecided", 55, 1000), "c": ("Better", 120, 1000)}
    c = next(v for v in test.variants if v.name == "c")
    assert c.statistic is not None
    assert c.threshold == pytest.approx(0.05 / 2)  # Holm: the smallest p-value of two is judged at alpha / 2
    assert test.message is not None
    assert "winner c (Holm" in test.message
    # Fewer trials than minSamples: undecided whatever the rates.
    early = abn_evaluated(abn, round_, {"self": (5, 100), "b": (5, 100), "c": (40, 100)}, T0)
    assert early.winner is None


def test_on_winner_report_keeps_the_split_and_goes_on_evaluating() -> None:
    abn = GraphAbn.model_validate(ABN)
    assert (abn.on_winner, abn.routes_winner) == ("report", False)
    round_ = abn_round(abn, serving(self="1", b="b1", c="c1"), None, T0)
    assert round_ is not None
    test = abn_evaluated(abn, round_, {"self": (50, 1000), "b": (55, 1000), "c": (120, 1000)}, T0)
    assert test.winner == "c"
    assert abn_split(abn, test) == (("self", 34), ("b", 33), ("c", 33))
    later = abn_round(abn, serving(self="1", b="b1", c="c1"), test, T0 + timedelta(minutes=1))
    assert later is not None
    assert later.due


def test_on_winner_route_sends_every_user_to_the_winner_and_ends_the_test() -> None:
    abn = GraphAbn.model_validate({**ABN, "onWinner": "route"})
    round_ = abn_round(abn, serving(self="1", b="b1", c="c1"), None, T0)
    assert round_ is not None
    assert abn_split(abn, round_.status) == (("self", 34), ("b", 33), ("c", 33)), "undecided: the spec's split"
    test = abn_evaluated(abn, round_, {"self": (50, 1000), "b": (55, 1000), "c": (120, 1000)}, T0)
    assert abn_split(abn, test) == (("self", 0), ("b", 0), ("c", 100))
    assert test.message is not None
    assert "every user is routed to c" in test.message
    ended = abn_round(abn, serving(self="1", b="b1", c="c1"), test, T0 + timedelta(minutes=10))
    assert ended is not None
    assert (ended.due, ended.next_at, ended.status.winner) == (False, None, "c")
    # A variant's new version is another test, on the spec's split again.
    moved = abn_round(abn, serving(self="1", b="b2", c="c1"), test, T0 + timedelta(minutes=11))
    assert moved is not None
    assert moved.status.winner is None
    assert abn_split(abn, moved.status) == (("self", 34), ("b", 33), ("c", 33))


def test_the_routers_document_follows_a_routed_winner() -> None:
    graph = ServingGraph.model_validate({"members": GRAPH["members"], "abn": {**ABN, "onWinner": "route"}})
    status = serving(self="1", b="b1", c="c1")
    assert graph_routing(graph, "ml", status).variants == (("self", 34), ("b", 33), ("c", 33))
    decided = GraphAbnStatus(started_at=T0, key="k", winner="self")
    routing = graph_routing(graph, "ml", status.model_copy(update={"abn": decided}))
    assert routing.variants == (("self", 100), ("b", 0), ("c", 0))
