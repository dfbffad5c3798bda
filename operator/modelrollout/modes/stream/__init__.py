"""Stream inference: consumer Deployments per revision reading a Kafka topic, rolled out by message share with
exact cutovers (modelrollout_contract.stream). objects: what is applied; share: how the share document follows
the engine's decisions with exact hand-overs; plan: a pass's objects, status and readiness."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.rollout import Strategy
from modelrollout.kube import kinds
from modelrollout.kube.kinds import OWNED_VERBS, Grant
from modelrollout.modes.base import ModeName, OwnedKind


@dataclass(frozen=True, slots=True)
class StreamMode:
    name: ModeName = "stream"
    # Deployments, ConfigMaps, ServiceAccounts, Roles, RoleBindings and PDBs are online's kinds too (observed and
    # pruned once); ScaledObjects are listed by the stream pass alone, since KEDA's CRDs may not be installed.
    owned: tuple[OwnedKind, ...] = (
        OwnedKind(kinds.DEPLOYMENT, "<name>-stream-<revision>: the consumers of a revision.", watched=True),
        OwnedKind(kinds.CONFIG_MAP, "<name>-stream: the share document the consumers read."),
        OwnedKind(kinds.SERVICE_ACCOUNT, "The consumers run as <name>-stream."),
        OwnedKind(kinds.ROLE, "<name>-stream may read its namespace's ConfigMaps."),
        OwnedKind(kinds.ROLE_BINDING, "<name>-stream may read its namespace's ConfigMaps."),
        OwnedKind(kinds.PDB, "One consumer of a revision down at a time, when it runs more."),
    )
    grants: tuple[Grant, ...] = (
        Grant(
            kinds.SCALED_OBJECT,
            OWNED_VERBS,
            "stream.autoscaling: a KEDA ScaledObject per running revision, scaling its consumers on lag.",
        ),
    )
    strategies: frozenset[Strategy] = frozenset({"direct", "canary", "shadow"})
    runnable: bool = True
