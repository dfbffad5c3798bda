"""How many pods each role runs for a given traffic split."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.traffic.service import split_replicas


def full_replicas(spec: ModelDeploymentSpec) -> int:
    """Pods a revision runs when it serves everything: online replicas (the autoscaler's floor when it scales),
    else the stream consumers; a batch-only model has no pods to wait for."""
    if spec.online is not None:
        return spec.online.autoscaling.min_replicas if spec.online.autoscaling else spec.online.replicas
    if spec.stream is not None:
        return spec.stream.autoscaling.min_replicas if spec.stream.autoscaling else spec.stream.replicas
    return 0


@dataclass(frozen=True, slots=True)
class Sizing:
    """Pods per role and the weights they serve. `stable` None: stable stays at full size."""

    canary: int
    stable: int | None
    stable_weight: int
    canary_weight: int


def _share(full: int, percent: int) -> int:
    # At least one pod once the candidate gets any traffic (or is merely warming up at 0%), never more than full.
    return 0 if full == 0 else min(full, max(1, math.ceil(full * percent / 100)))


def for_weight(spec: ModelDeploymentSpec, weight: int) -> Sizing:
    """A canary step at `weight`%. Routers that weight requests get the exact weight and a canary sized to its
    share; the `service` provider weights by pod counts, so it gets the coarse weight those counts achieve."""
    full = full_replicas(spec)
    if spec.rollout.provider == "service":
        split = split_replicas(total=full, canary_weight=weight)
        return Sizing(split.canary, split.stable, 100 - split.effective_weight, split.effective_weight)
    return Sizing(_share(full, weight), None, 100 - weight, weight)


def for_mirror(spec: ModelDeploymentSpec, percent: int) -> int:
    """Canary pods for a mirrored share of the load."""
    return _share(full_replicas(spec), percent)


@dataclass(frozen=True, slots=True)
class RoleSizes:
    """Pods each role needs for the traffic it has now, at the spec's full size. None: whatever the current step
    asked for stands (a candidate warming up before it gets traffic). `canary_weight` is the weight those pods
    give: the status's, except with the `service` provider, whose weights are pod ratios."""

    stable: int | None
    canary: int | None
    canary_weight: int


def for_traffic(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, *, canary_running: bool) -> RoleSizes:
    """The sizes of the roles as the spec's size and the traffic in `status` want them now, so that a change of
    replicas (or of the autoscaler's floor) reaches what already serves, mid-rollout too: each step's share is of
    the new total. `canary_running`: the candidate has pods (a blue-green preview runs at full size)."""
    full = full_replicas(spec)
    weights = status.weights
    if status.canary is None:
        return RoleSizes(full, None, 0)
    if spec.rollout.provider == "service" and 0 < weights.canary < 100:
        split = split_replicas(total=full, canary_weight=weights.canary)
        return RoleSizes(split.stable, split.canary, split.effective_weight)
    if weights.canary > 0 or weights.mirror > 0:
        canary = max(_share(full, weights.canary) if weights.canary else 0, _share(full, weights.mirror))
    elif spec.rollout.strategy == "blueGreen" and canary_running:
        canary = full
    else:
        canary = None
    return RoleSizes(full, canary, weights.canary)
