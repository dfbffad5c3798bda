"""What status says of each declared mode (pure): a `<Mode>Ready` condition per mode, `Ready` only when every
declared mode is served, and a phase that is never Healthy while one of them is not.

The engine decides the rollout of the leading mode and knows nothing of the others; this report is laid over
its status at the end of a pass, and taken off again (`without_mode_report`) before the next tick, so the
engine always reads back the phase it wrote itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import Condition, ConditionStatus, ModelDeploymentStatus
from modelrollout.modes import MODES, declared
from modelrollout.modes.base import Mode, ModeName
from modelrollout.rollout.conditions import transition_time

# Degraded's reason while a declared mode is not served (and what marks the phase as ours, not the engine's).
MODES_NOT_SERVED = "ModesNotServed"
NOT_SUPPORTED = "NotSupported"
_DOES = {"online": "serves", "batch": "scores files", "stream": "consumes the topic"}
_RUNS = {"online": "online serving", "batch": "batch scoring", "stream": "stream inference"}


@dataclass(frozen=True, slots=True)
class Readiness:
    """One mode's readiness, as its `<Mode>Ready` condition says it."""

    status: ConditionStatus
    reason: str
    message: str


def condition_type(mode: Mode) -> str:
    return f"{mode.name.capitalize()}Ready"


def readiness_types() -> frozenset[str]:
    """Every condition type this report writes, for any mode: a mode no longer declared loses its condition."""
    return frozenset({"Ready", *(condition_type(mode) for mode in MODES.values())})


def unserved(spec: ModelDeploymentSpec) -> list[Mode]:
    return [mode for mode in declared(spec) if not mode.runnable]


def unserved_message(spec: ModelDeploymentSpec) -> str | None:
    """Why some declared modes do nothing, or None when every one runs."""
    missing = unserved(spec)
    if not missing:
        return None
    fields = ", ".join(f"spec.{m.name}" for m in missing)
    nobody = "; ".join(f"nothing {_DOES[m.name]} for spec.{m.name}" for m in missing)
    runs = " and ".join(_RUNS[m.name] for m in MODES.values() if m.runnable)
    return f"{fields} declared, but this operator version runs {runs} only: {nobody}"


def _condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    prev: Sequence[Condition],
    generation: int | None,
    now: datetime,
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition_time(prev, type_, status, now),
        observed_generation=generation,
    )


def mode_conditions(
    spec: ModelDeploymentSpec,
    *,
    ready: Mapping[ModeName, Readiness],
    prev: Sequence[Condition],
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """`Ready` (every declared mode served) first, then one `<Mode>Ready` per declared mode. `ready` holds the
    readiness of each mode this pass ran (online: its serving revision available; batch: its CronJob in place and
    its last run not failed); a declared mode without one is not run by this operator version."""
    per_mode: list[Condition] = []
    for mode in declared(spec):
        readiness = ready.get(mode.name)
        if readiness is not None:
            status, reason, message = readiness.status, readiness.reason, readiness.message
        else:
            status, reason = "False", NOT_SUPPORTED
            message = f"spec.{mode.name} is declared, but this operator version does not run {mode.name} yet"
        per_mode.append(
            _condition(condition_type(mode), status, reason, message, prev=prev, generation=generation, now=now)
        )
    first_down = next((c for c in per_mode if c.status != "True"), None)
    if first_down is None:
        overall = _condition("Ready", "True", per_mode[0].reason, per_mode[0].message, prev=prev,
                             generation=generation, now=now)  # fmt: skip
    else:
        reason = MODES_NOT_SERVED if first_down.reason == NOT_SUPPORTED else first_down.reason
        said = unserved_message(spec) if reason == MODES_NOT_SERVED else first_down.message
        overall = _condition("Ready", "False", reason, said or "", prev=prev, generation=generation, now=now)
    return [overall, *per_mode]


def with_mode_report(
    status: ModelDeploymentStatus, spec: ModelDeploymentSpec, *, prev: Sequence[Condition], now: datetime
) -> ModelDeploymentStatus:
    """The engine's status with the modes it does not serve said: a Healthy leading mode becomes Degraded (reason
    ModesNotServed) while another declared mode is not served. Other phases (a rollout under way, a rollback)
    say more about what is happening and stay."""
    message = unserved_message(spec)
    if message is None or status.phase != "Healthy":
        return status
    degraded = _condition(
        "Degraded", "True", MODES_NOT_SERVED, message, prev=prev, generation=status.observed_generation, now=now
    )
    conditions = [c for c in status.conditions if c.type != "Degraded"] + [degraded]
    return status.model_copy(update={"phase": "Degraded", "message": message, "conditions": conditions})


def _report(status: ModelDeploymentStatus) -> Condition | None:
    return next((c for c in status.conditions if c.type == "Degraded" and c.reason == MODES_NOT_SERVED), None)


def reported(status: ModelDeploymentStatus) -> bool:
    """Whether `status` carries the report laid over a Healthy phase."""
    return _report(status) is not None


def without_mode_report(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """The status the engine wrote: Healthy again where only the report made it Degraded, and without the
    report's message (the engine would carry it into its own conditions)."""
    report = _report(status)
    if report is None or status.phase != "Degraded":
        return status
    message = None if status.message == report.message else status.message
    return status.model_copy(update={"phase": "Healthy", "message": message})
