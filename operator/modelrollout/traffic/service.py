"""The `service` provider's arithmetic: weights by replica counts behind one Service.

A plain Service balances over ready pods, so the only knob is how many pods each revision has. That makes the
split COARSE: with `total` pods the achievable canary shares are multiples of 1/total (2 pods: 0%, 50%, 100%),
and the result depends on pods being equally loaded. `split_replicas` says which counts to run and the weight
they actually achieve, which is the weight the operator records in status (never the one asked for).
Use the `router` provider for exact weights, mirroring and header routes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from modelrollout.traffic.base import check_weights

Role = Literal["stable", "canary"]


@dataclass(frozen=True, slots=True)
class ReplicaSplit:
    """Pods per revision and the canary percentage they really give (stable gets the rest)."""

    stable: int
    canary: int
    effective_weight: int


def split_replicas(*, total: int, canary_weight: int) -> ReplicaSplit:
    """Share `total` pods so the canary gets as close to `canary_weight`% as whole pods allow, with two rules
    that override closeness: a canary asked for any traffic gets at least one pod (otherwise analysis sees
    nothing), and stable keeps at least one pod until the canary is asked for 100% (so a small deployment
    never hands everything to the canary early). Those rules may add a pod beyond `total`."""
    if total < 0 or not 0 <= canary_weight <= 100:
        raise ValueError(f"need total >= 0 and 0 <= canary_weight <= 100, got {total=} {canary_weight=}")
    if total == 0:
        return ReplicaSplit(stable=0, canary=0, effective_weight=0)
    # Half-up rounding: Python's round() rounds halves to even, which would make 1 of 2 pods at 25% a coin toss.
    canary = math.floor(total * canary_weight / 100 + 0.5)
    if canary_weight > 0:
        canary = max(canary, 1)
    stable = total - canary
    if canary_weight < 100:
        stable = max(stable, 1)
    effective = math.floor(100 * canary / (stable + canary) + 0.5)
    return ReplicaSplit(stable=stable, canary=canary, effective_weight=effective)


def selected_roles(stable: int, canary: int) -> tuple[Role, ...]:
    """Which roles the `<name>` Service must select for these weights: one role for 0/100 switches (exact,
    instant), both for a split (then the replica counts set the ratio)."""
    check_weights(stable, canary)
    if canary == 0:
        return ("stable",)
    if stable == 0:
        return ("canary",)
    return ("stable", "canary")
