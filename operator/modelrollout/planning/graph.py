"""A ModelDeployment's serving graph (`spec.online.graph`), pure: where each member stands (status.graph), and the
routing the router's document gets for it (modelrollout_contract.router_v2.with_graph).

A member is read from its own ModelDeployment as found (its stable revision, canary and phase); the router calls
its `<name>` Service, where its own rollout splits the requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modelrollout.analysis import abn_test
from modelrollout.analysis.ab_test import Arm
from modelrollout.api.base import duration_seconds
from modelrollout.api.graph import SELF, GraphAbn, GraphMember, ServingGraph
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import (
    AbnVariantResult,
    AbnVerdict,
    GraphAbnStatus,
    GraphMemberStatus,
    GraphStatus,
    ModelDeploymentStatus,
    RevisionRef,
)
from modelrollout.planning.names import service_name
from modelrollout.planning.online import SERVICE_PORT
from modelrollout.traffic.router import GraphRouting
from modelrollout_contract.router import StickyBy
from modelrollout_contract.router_v2 import BackendV2, Ensemble, Route

# The version label of a member whose ModelDeployment has no stable revision (yet): the router's metrics and
# answer headers need one.
UNKNOWN_VERSION = "unknown"


def member_url(namespace: str, model_deployment: str) -> str:
    return f"http://{service_name(model_deployment, 'main')}.{namespace}.svc:{SERVICE_PORT}"


def graph_member_names(body: Mapping[str, Any]) -> set[str]:
    """The ModelDeployments a stored ModelDeployment's serving graph names (read leniently: any stored object)."""
    graph = ((body.get("spec") or {}).get("online") or {}).get("graph") or {}
    members = graph.get("members") or []
    return {m["modelDeployment"] for m in members if isinstance(m, dict) and isinstance(m.get("modelDeployment"), str)}


def graph_status(spec: ModelDeploymentSpec, name: str, status: ModelDeploymentStatus,
                 found: Mapping[str, Mapping[str, Any] | None]) -> GraphStatus | None:  # fmt: skip
    """status.graph: `self` from this pass's status, each other member from its ModelDeployment in `found` (by
    name; None or absent when there is none)."""
    graph = spec.online.graph if spec.online else None
    if graph is None:
        return None
    own = GraphMemberStatus(
        name=SELF,
        model_deployment=name,
        phase=status.phase,
        stable=status.stable,
        canary=status.canary,
        canary_weight=status.weights.canary if status.canary else 0,
    )
    others = [_member_status(m, found.get(m.model_deployment), spec.model.name) for m in graph.members]
    return GraphStatus(members=[own, *others])


def _member_status(member: GraphMember, found: Mapping[str, Any] | None, model: str) -> GraphMemberStatus:
    base = GraphMemberStatus(name=member.name, model_deployment=member.model_deployment, phase="Missing")
    if found is None:
        return base
    spec = found.get("spec") or {}
    if spec.get("online") is None:
        return base.model_copy(update={"phase": "NotServing"})
    if (spec.get("model") or {}).get("name") != model:
        return base.model_copy(update={"phase": "OtherModel"})
    try:
        status = ModelDeploymentStatus.model_validate(found.get("status") or {})
    except ValidationError:
        status = ModelDeploymentStatus()  # written by another operator version: its phase is unknown
    return base.model_copy(
        update={
            "phase": status.phase,
            "stable": status.stable,
            "canary": status.canary,
            "canary_weight": status.weights.canary if status.canary else 0,
        }
    )


def graph_routing(graph: ServingGraph, namespace: str, members: GraphStatus | None) -> GraphRouting:
    """What the router's document says of the graph: each member's Service and stable version, the ensemble
    (member timeout in seconds), the routes."""
    versions = {m.name: m.stable.version for m in (members.members if members else []) if m.stable is not None}
    backends = {
        m.name: BackendV2(url=member_url(namespace, m.model_deployment), version=versions.get(m.name, UNKNOWN_VERSION))
        for m in graph.members
    }
    ensemble = None
    if graph.ensemble is not None:
        wanted = graph.ensemble
        ensemble = Ensemble(
            members=list(wanted.members),
            combine=wanted.combine,
            weights=wanted.weights,
            quorum=wanted.quorum,
            member_timeout_seconds=duration_seconds(wanted.member_timeout) if wanted.member_timeout else None,
        )
    routes = tuple(
        Route.model_validate(route.model_dump(by_alias=True, exclude_none=True)) for route in graph.routes or []
    )
    abn = graph.abn
    return GraphRouting(
        members=backends,
        ensemble=ensemble,
        routes=routes,
        variants=None if abn is None else abn_split(abn, members.abn if members is not None else None),
        sticky_by=None if abn is None else StickyBy.model_validate(abn.route_by.model_dump(exclude_none=True)),
    )


# --- the A/B/n test (online.graph.abn) ----------------------------------------------------------------------------


def abn_split(abn: GraphAbn, test: GraphAbnStatus | None) -> tuple[tuple[str, int], ...]:
    """The users' split between the variants, in the spec's order: the spec's weights, or, with onWinner route and
    a winner decided, every user on the winner (the others keep their places in the order, at 0%)."""
    winner = test.winner if test is not None and abn.routes_winner else None
    if winner is None:
        return tuple((v.name, v.weight) for v in abn.variants)
    return tuple((v.name, 100 if v.name == winner else 0) for v in abn.variants)


@dataclass(frozen=True)
class AbnRound:
    """Where an A/B/n test stands before this pass: its status (restarted when what is split changed), each
    variant's stable revision, whether an evaluation is due now, and when the next one is."""

    status: GraphAbnStatus
    revisions: Mapping[str, RevisionRef]  # variant -> the revision answering for it
    due: bool
    next_at: datetime | None  # None: the test has ended (onWinner route, with its winner routed)


def abn_round(abn: GraphAbn, graph: GraphStatus, prev: GraphAbnStatus | None, now: datetime) -> AbnRound | None:
    """None while a variant has no stable revision (a member missing or not serving yet): nothing to compare."""
    found = {m.name: m.stable for m in graph.members}
    revisions = {v.name: found.get(v.name) for v in abn.variants}
    if any(ref is None for ref in revisions.values()):
        return None
    known = {name: ref for name, ref in revisions.items() if ref is not None}
    what = [(v.name, v.weight, known[v.name].version) for v in abn.variants]
    key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]
    interval = timedelta(seconds=duration_seconds(abn.interval))
    if prev is None or prev.key != key:
        started = GraphAbnStatus(
            started_at=now,
            key=key,
            variants=[AbnVariantResult(name=name, version=known[name].version) for name, _, _ in what],
        )
        return AbnRound(status=started, revisions=known, due=False, next_at=now + interval)
    if prev.winner is not None and abn.routes_winner:
        return AbnRound(status=prev, revisions=known, due=False, next_at=None)
    last = prev.evaluated_at or prev.started_at
    due = now >= last + interval
    return AbnRound(status=prev, revisions=known, due=due, next_at=(now if due else last) + interval)


def abn_evaluated(
    abn: GraphAbn, round_: AbnRound, counts: Mapping[str, tuple[int, int]], now: datetime
) -> GraphAbnStatus:
    """The test's status after an evaluation on `counts` (variant -> successes, trials since the start)."""
    arms = {name: Arm(min(successes, trials), trials) for name, (successes, trials) in counts.items()}
    result = abn_test.evaluate(SELF, arms, abn)
    by_variant = {c.variant: c for c in result.comparisons}

    def row(name: str) -> AbnVariantResult:
        arm, compared = arms[name], by_variant.get(name)
        return AbnVariantResult(
            name=name,
            version=round_.revisions[name].version,
            successes=arm.successes,
            trials=arm.trials,
            statistic=None if compared is None else compared.statistic,
            threshold=None if compared is None else compared.threshold,
            verdict=_verdict(compared),
        )

    message = abn_test.describe(result, arms, abn)
    if result.winner is not None and abn.routes_winner:
        message += f"; every user is routed to {result.winner} now (onWinner: route), and the test has ended"
    return round_.status.model_copy(
        update={
            "evaluated_at": now,
            "winner": result.winner,
            "message": message[:4096],
            "variants": [row(v.name) for v in abn.variants],
        }
    )


def _verdict(compared: abn_test.Comparison | None) -> AbnVerdict:
    if compared is None:
        return "Control"
    if compared.better:
        return "Better"
    return "Worse" if compared.worse else "Undecided"
