"""Online serving: a Deployment per revision behind Services, with autoscaling and a traffic router."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.rollout import Strategy
from modelrollout.kube import kinds
from modelrollout.kube.kinds import Grant
from modelrollout.modes.base import ModeName, OwnedKind


@dataclass(frozen=True, slots=True)
class OnlineMode:
    name: ModeName = "online"
    owned: tuple[OwnedKind, ...] = (
        OwnedKind(kinds.DEPLOYMENT, "Per-revision Deployments of the model server (and the router's).", watched=True),
        OwnedKind(kinds.SERVICE, "<name>, <name>-stable, <name>-canary, <name>-preview.", watched=True),
        OwnedKind(kinds.HPA, "A HorizontalPodAutoscaler per running revision under spec.online.autoscaling."),
        OwnedKind(kinds.PDB, "A PodDisruptionBudget when more than one pod is guaranteed."),
        OwnedKind(kinds.CONFIG_MAP, "<name>-router: the routing document of provider router."),
        OwnedKind(kinds.SERVICE_ACCOUNT, "The router of provider router runs as <name>-router."),
        OwnedKind(kinds.ROLE, "<name>-router may read its namespace's ConfigMaps."),
        OwnedKind(kinds.ROLE_BINDING, "<name>-router may read its namespace's ConfigMaps."),
        OwnedKind(
            kinds.JOB,
            "The preRollout hook Job of spec.rollout.gates (and batch's pre-flight and runs), watched: one that ends "
            "moves the rollout on at once.",
            watched=True,
        ),
    )
    grants: tuple[Grant, ...] = (
        Grant(
            kinds.CONFIG_MAP,
            ("get", "watch"),
            "The routing document is read back before each change; and the router's Role grants get/list/watch on "
            "ConfigMaps, which RBAC lets us grant only while we hold them.",
        ),
        Grant(
            kinds.HTTP_ROUTE,
            ("get", "list", "patch"),
            "Provider gatewayAPI: the user's HTTPRoute, read and then merge-patched (only the rule we manage; "
            "conditional on the resourceVersion read); listed to give back what a deleted ModelDeployment added.",
        ),
        Grant(
            kinds.VIRTUAL_SERVICE,
            ("get", "list", "patch"),
            "Provider istio: the user's VirtualService, read and then merge-patched (only the routes we manage); "
            "listed to give back what a deleted ModelDeployment added.",
        ),
        Grant(
            kinds.DESTINATION_RULE,
            ("get", "list", "patch"),
            "Provider istio: the stable/canary subsets of the user's DestinationRule; listed to give back what a "
            "deleted ModelDeployment added.",
        ),
    )
    strategies: frozenset[Strategy] = frozenset({"direct", "canary", "blueGreen", "shadow", "abTest"})
    runnable: bool = True
