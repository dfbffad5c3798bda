"""Workload modes behind one seam (`Mode`): online serving, batch scoring and stream inference.

`MODES` is the registry every derived table reads: the kinds the reconciler observes and prunes, the child
watches, the API client's paths and the RBAC manifest (`modelrollout.rbac`).
"""

from __future__ import annotations

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.kube.kinds import Grant, Kind
from modelrollout.modes.base import Mode, ModeName, OwnedKind
from modelrollout.modes.batch import BatchMode
from modelrollout.modes.online import OnlineMode
from modelrollout.modes.stream import StreamMode

MODES: dict[ModeName, Mode] = {
    "online": OnlineMode(),
    "batch": BatchMode(),
    "stream": StreamMode(),
}
# Which declared mode leads a rollout (its analysis decides; the others follow the revision it promotes): online
# when present, then stream (it scores continuously, so it has evidence first), then batch (runs are rare events).
LEAD_ORDER: tuple[ModeName, ...] = ("online", "stream", "batch")


def declared(spec: ModelDeploymentSpec) -> list[Mode]:
    return [MODES[name] for name in LEAD_ORDER if getattr(spec, name) is not None]


def leading(spec: ModelDeploymentSpec) -> Mode:
    return declared(spec)[0]  # the spec's own validation: at least one mode is set


def owned_kinds() -> list[OwnedKind]:
    """Every kind any mode owns, once, in registry order."""
    seen: dict[str, OwnedKind] = {}
    for mode in MODES.values():
        for owned in mode.owned:
            seen.setdefault(owned.kind.name, owned)
    return list(seen.values())


def watched_kinds() -> list[Kind]:
    return [owned.kind for owned in owned_kinds() if owned.watched]


def mode_grants() -> list[Grant]:
    return [owned.grant for owned in owned_kinds()] + [g for mode in MODES.values() for g in mode.grants]


__all__ = [
    "LEAD_ORDER",
    "MODES",
    "Mode",
    "ModeName",
    "OwnedKind",
    "declared",
    "leading",
    "mode_grants",
    "owned_kinds",
    "watched_kinds",
]
