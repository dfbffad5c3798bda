"""Batch scoring and stream inference, as far as this operator version knows them: declared in the API, refused
at admission where a strategy cannot apply to them, and reported in status as not served (never ignored)."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.rollout import RECORD_STRATEGIES, Strategy
from modelrollout.kube.kinds import Grant
from modelrollout.modes.base import ModeName, OwnedKind


@dataclass(frozen=True, slots=True)
class DeferredMode:
    name: ModeName
    owned: tuple[OwnedKind, ...] = ()
    grants: tuple[Grant, ...] = ()
    strategies: frozenset[Strategy] = frozenset(RECORD_STRATEGIES)
    runnable: bool = False
