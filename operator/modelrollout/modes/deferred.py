"""Batch scoring and stream inference, as far as this operator version knows them: declared in the API, refused
at admission where a strategy cannot apply to them, and reported in status as not served (never ignored)."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.rollout import Strategy
from modelrollout.kube.kinds import Grant
from modelrollout.modes.base import ModeName, OwnedKind

# Runs are events (batch) and records are split by key (stream): neither has a preview to switch to (blueGreen)
# nor users to keep on one variant by an HTTP header or cookie (abTest).
RECORD_STRATEGIES: frozenset[Strategy] = frozenset({"direct", "canary", "shadow"})


@dataclass(frozen=True, slots=True)
class DeferredMode:
    name: ModeName
    owned: tuple[OwnedKind, ...] = ()
    grants: tuple[Grant, ...] = ()
    strategies: frozenset[Strategy] = RECORD_STRATEGIES
    runnable: bool = False
