"""The Progressing and Degraded conditions, derived from the phase at the end of every tick (Ready and the per-mode
readiness are the planner's, `modes.report`: it knows whether the serving pods are available)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modelrollout.api.status import Condition, ConditionStatus, ModelDeploymentStatus

_PROGRESSING_REASONS = {
    "Progressing": "RolloutInProgress",
    "Paused": "RolloutPaused",
    "Promoting": "Promoting",
    "Healthy": "RolloutComplete",
    "Degraded": "RolloutAborted",
    "RolledBack": "RolledBack",
    "Pending": "NoRevision",
    "Failed": "RolloutFailed",
}


def transition_time(prev: Sequence[Condition], type_: str, status: ConditionStatus, now: datetime) -> datetime:
    """Kubernetes convention: lastTransitionTime moves only when the condition's status flips."""
    old = next((c for c in prev if c.type == type_), None)
    return old.last_transition_time if old is not None and old.status == status else now


def _set(conditions: list[Condition], new: Condition) -> list[Condition]:
    out, found = [], False
    for old in conditions:
        if old.type != new.type:
            out.append(old)
            continue
        found = True
        since = transition_time([old], new.type, new.status, new.last_transition_time)
        out.append(new.model_copy(update={"last_transition_time": since}))
    return out if found else [*out, new]


def sync_conditions(status: ModelDeploymentStatus, *, now: datetime) -> None:
    phase = status.phase
    in_rollout = status.canary is not None
    progressing: ConditionStatus = "True" if in_rollout else "False"
    degraded: ConditionStatus = "True" if phase in ("Degraded", "RolledBack") else "False"
    message = status.message or ""
    status.conditions = _set(
        status.conditions,
        Condition(
            type="Progressing",
            status=progressing,
            reason=_PROGRESSING_REASONS[phase],
            message=message,
            last_transition_time=now,
        ),
    )
    status.conditions = _set(
        status.conditions,
        Condition(
            type="Degraded",
            status=degraded,
            reason=_PROGRESSING_REASONS[phase] if degraded == "True" else "AsExpected",
            message=message if degraded == "True" else "",
            last_transition_time=now,
        ),
    )


# Degraded's reason while the API server refuses one of our objects (the reconciler's report, not the phase's).
APPLY_FAILED = "ApplyFailed"


def mark_apply_failed(status: ModelDeploymentStatus, message: str, *, now: datetime, generation: int | None) -> None:
    """Say where users look that a child object was refused: `message` and a Degraded condition for the
    generation that was tried. The phase stays what it was: nothing the rollout decided has changed."""
    status.message = message
    status.conditions = _set(
        status.conditions,
        Condition(
            type="Degraded",
            status="True",
            reason=APPLY_FAILED,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        ),
    )


def without_apply_failure(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """The status a pass starts from: a refusal reported by an earlier pass is not a decision to carry on (if
    this pass is refused again it says so again; otherwise sync_conditions recomputes Degraded)."""
    refused = next((c for c in status.conditions if c.type == "Degraded" and c.reason == APPLY_FAILED), None)
    if refused is None:
        return status
    conditions = [c for c in status.conditions if c is not refused]
    message = None if status.message == refused.message else status.message
    return status.model_copy(update={"conditions": conditions, "message": message})
