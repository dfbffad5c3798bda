"""A rollout tick's latency, from what the bench saw of one canary rollout (pure).

A timed pause at step i ends at `status.stepStartedAt + duration` (the operator's own clock, the bench's machine).
Its tick is observed
- in status: the first ModelDeployment event (as the bench's watch received it) that shows the rollout past step
  i (`status.currentStep` > i, or no current step: promoted);
- in routing: the first event of the router's ConfigMap, half the pause after the first status that showed step
  i, whose canary weight differs from the weight the ConfigMap had then (half a pause: the routing that status
  records is written by then, whichever the operator writes first, status or routing).
Each latency is that event's arrival minus the pause's end (negative would mean the operator moved early)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StatusSeen:
    at: float  # wall clock (epoch seconds) when the watch event arrived
    step: int | None  # status.currentStep
    step_started_at: float | None  # status.stepStartedAt, epoch seconds
    phase: str | None


@dataclass(frozen=True)
class RouteSeen:
    at: float
    canary_weight: int | None


@dataclass(frozen=True)
class TickSample:
    step: int
    pause_end: float
    status_s: float | None
    routing_s: float | None


def ticks(statuses: Sequence[StatusSeen], routes: Sequence[RouteSeen], pauses: Mapping[int, float]) -> list[TickSample]:
    """One sample per timed pause (step index -> seconds) that the statuses show; pauses never seen are left out."""
    samples = []
    for step in sorted(pauses):
        first = next(
            (i for i, seen in enumerate(statuses) if seen.step == step and seen.step_started_at is not None), None
        )
        if first is None:
            continue
        shown = statuses[first]
        assert shown.step_started_at is not None
        pause_end = shown.step_started_at + pauses[step]
        moved = next((seen for seen in statuses[first + 1 :] if seen.step is None or seen.step > step), None)
        settled = shown.at + pauses[step] / 2
        weight = weight_at(routes, settled)
        changed = next((r for r in routes if r.at > settled and r.canary_weight != weight), None)
        samples.append(
            TickSample(
                step=step,
                pause_end=pause_end,
                status_s=None if moved is None else moved.at - pause_end,
                routing_s=None if changed is None else changed.at - pause_end,
            )
        )
    return samples


def weight_at(routes: Sequence[RouteSeen], at: float) -> int | None:
    """The canary weight of the last route event at or before `at`."""
    weight = None
    for route in routes:
        if route.at > at:
            break
        weight = route.canary_weight
    return weight
