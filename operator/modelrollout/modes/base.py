"""The seam between the operator and a workload mode (online serving, batch scoring, stream inference).

A mode says which kinds it owns (and so the RBAC, the API client's table and the child watches), which other
access it needs, which rollout strategies it can carry out when it leads a rollout, and whether this operator
version runs it at all. docs/architecture.md says where each mode's planning lives and how a new one slots in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from modelrollout.api.rollout import Strategy
from modelrollout.kube.kinds import OWNED_VERBS, Grant, Kind

ModeName = Literal["online", "batch", "stream"]


@dataclass(frozen=True, slots=True)
class OwnedKind:
    """A kind a mode creates, owns (owner reference, labels) and prunes when the plan no longer wants it."""

    kind: Kind
    why: str
    # Any change of these children (their status too: pods turning ready, a run ending) triggers a pass of their
    # ModelDeployment; of the others, only a deletion or an edit beyond status does (every kind is watched).
    watched: bool = False

    @property
    def grant(self) -> Grant:
        return Grant(self.kind, OWNED_VERBS, self.why)


class Mode(Protocol):
    @property
    def name(self) -> ModeName: ...

    @property
    def owned(self) -> tuple[OwnedKind, ...]:
        """The kinds whose objects this mode creates for a ModelDeployment, in the order a pass observes them."""
        ...

    @property
    def grants(self) -> tuple[Grant, ...]:
        """Access beyond its own kinds: pods it reads, objects of users it patches."""
        ...

    @property
    def strategies(self) -> frozenset[Strategy]:
        """The strategies it can carry out when it leads a rollout (admission refuses the others)."""
        ...

    @property
    def runnable(self) -> bool:
        """Whether this operator version runs the mode; a declared mode that is not is reported, never ignored."""
        ...
