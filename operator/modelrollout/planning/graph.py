"""A ModelDeployment's serving graph (`spec.online.graph`), pure: where each member stands (status.graph), and the
routing the router's document gets for it (modelrollout_contract.router_v2.with_graph).

A member is read from its own ModelDeployment as found (its stable revision, canary and phase); the router calls
its `<name>` Service, where its own rollout splits the requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelrollout.api.base import duration_seconds
from modelrollout.api.graph import SELF, GraphMember, ServingGraph
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import GraphMemberStatus, GraphStatus, ModelDeploymentStatus
from modelrollout.planning.names import service_name
from modelrollout.planning.online import SERVICE_PORT
from modelrollout.traffic.router import GraphRouting
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
    return GraphRouting(members=backends, ensemble=ensemble, routes=routes)
