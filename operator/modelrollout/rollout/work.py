"""The tick's working state: a private copy of status being edited, the inputs, and the actions so far,
with the small operations every transition is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelrollout.analysis.evaluate import clip
from modelrollout.api.gates import GateName
from modelrollout.api.notifications import NotificationKind
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus, PauseReason, RevisionRef, Weights
from modelrollout.rollout.actions import (
    Action,
    EnsureRevision,
    EventType,
    GateAnswer,
    HookRun,
    RecordEvent,
    Role,
    SetMirror,
    SetSticky,
    SetWeights,
)
from modelrollout.rollout.plan import Plan, Step
from modelrollout.rollout.sizing import full_replicas

RUNS_LIMIT = 10
# The notification kinds of the engine's events (api.notifications), named once for the emission sites.
STARTED: frozenset[NotificationKind] = frozenset({"started"})
STEP_REACHED: frozenset[NotificationKind] = frozenset({"stepReached"})
PAUSED: frozenset[NotificationKind] = frozenset({"paused"})
PROMOTED: frozenset[NotificationKind] = frozenset({"promoted"})
ROLLED_BACK: frozenset[NotificationKind] = frozenset({"rolledBack"})
ANALYSIS_FAILED: frozenset[NotificationKind] = frozenset({"analysisFailed"})
AB_DECIDED: frozenset[NotificationKind] = frozenset({"abDecided"})
_WARNING_PAUSES: frozenset[PauseReason] = frozenset({"Inconclusive", "AnalysisMisconfigured"})


def label(ref: RevisionRef) -> str:
    return f"revision {ref.revision} (version {ref.version})"


@dataclass
class Work:
    spec: ModelDeploymentSpec
    target: RevisionRef
    now: datetime
    before: ModelDeploymentStatus  # as given: its replicas describe its stable and canary
    status: ModelDeploymentStatus  # the copy being edited
    plan: Plan
    actions: list[Action] = field(default_factory=list)
    answer: GateAnswer | None = None  # a confirm gate's webhook answer, asked for by an earlier decision
    hook: HookRun | None = None  # the preRollout hook Job, as observed

    # --- reading ----------------------------------------------------------------------------------------

    @property
    def in_rollout(self) -> bool:
        return self.status.canary is not None

    @property
    def canary(self) -> RevisionRef:
        if self.status.canary is None:
            raise RuntimeError("no rollout in progress")  # callers check in_rollout first
        return self.status.canary

    def step(self) -> Step | None:
        index = self.status.current_step or 0
        return self.plan.steps[index] if index < len(self.plan.steps) else None

    def pending_gate(self, names: tuple[GateName, ...]) -> GateName | None:
        """The first of `names` (spec.rollout.gates) this rollout still has to pass. The first revision passes
        none: there is nothing to protect yet."""
        gates = self.spec.rollout.gates
        if gates is None or self.status.stable is None:
            return None
        configured = gates.configured()
        return next((n for n in names if n in configured and n not in self.status.gates_passed), None)

    def step_elapsed(self) -> float:
        started = self.status.step_started_at or self.now
        return (self.now - started).total_seconds()

    def after(self, seconds: float, since: datetime | None = None) -> datetime:
        return (since or self.now) + timedelta(seconds=seconds)

    def ready(self, revision: RevisionRef) -> int:
        """Ready pods of `revision`, from status.replicas as observed for the roles of the status we were given
        (never for a role that changed revision during this tick: those pods were counted for another one)."""
        for role, ref in (("stable", self.before.stable), ("canary", self.before.canary)):
            if ref is not None and ref.revision == revision.revision:
                counts = self.before.replicas.get(role)
                return counts.ready if counts else 0
        return 0

    # --- writing ----------------------------------------------------------------------------------------

    def emit(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def event(
        self, type_: EventType, reason: str, message: str, *, notify: frozenset[NotificationKind] = frozenset()
    ) -> None:
        message = clip(message)
        self.emit(RecordEvent(type=type_, reason=reason, message=message, notify=notify))
        self.status.message = message

    def ensure(self, revision: RevisionRef, role: Role, replicas: int) -> None:
        action = EnsureRevision(revision=revision, role=role, replicas=replicas)
        if action not in self.actions:  # several stages of one tick may want the same pods
            self.emit(action)

    def set_weights(self, stable: int, canary: int) -> None:
        current = self.status.weights
        if (current.stable, current.canary) != (stable, canary):
            self.emit(SetWeights(stable=stable, canary=canary))
            self.status.weights = Weights(stable=stable, canary=canary, mirror=current.mirror)
        self._start_analysis_clock()

    def set_mirror(self, percent: int) -> None:
        if self.status.weights.mirror != percent:
            self.emit(SetMirror(percent=percent))
            self.status.weights = self.status.weights.model_copy(update={"mirror": percent})
        self._start_analysis_clock()

    def _start_analysis_clock(self) -> None:
        """Background analysis runs every interval from the moment the candidate first gets traffic."""
        weights = self.status.weights
        getting_traffic = weights.canary > 0 or weights.mirror > 0
        if getting_traffic and self.plan.background_metrics and self.status.analysis.next_run_at is None:
            self.status.analysis.next_run_at = self.after(self.plan.interval_s)

    def reset_traffic(self) -> None:
        """Everything back to stable, always re-sent (this is the safety path), with stable at full size."""
        stable = self.status.stable
        if self.status.weights.mirror:
            self.emit(SetMirror(percent=0))
        if stable is not None:
            self.emit(SetWeights(stable=100, canary=0))
            self.ensure(stable, "stable", full_replicas(self.spec))
        # After the weights: the routing document written first also re-points the canary role at stable, and
        # while the canary still had users the split must not fall back to random requests even for a moment.
        self.end_split()
        self.status.weights = Weights()
        self.status.analysis.next_run_at = None

    def end_split(self) -> None:
        """Back to splitting requests, once an A/B test's candidate gets no users of its own any more."""
        if self.spec.rollout.strategy == "abTest":
            self.emit(SetSticky(by=None))

    def pause(self, reason: PauseReason, message: str) -> None:
        if self.status.paused and self.status.pause_reason == reason:
            self.status.message = message
            return
        self.status.paused, self.status.pause_reason, self.status.phase = True, reason, "Paused"
        self.event("Warning" if reason in _WARNING_PAUSES else "Normal", reason, message, notify=PAUSED)

    def unpause(self) -> None:
        self.status.paused, self.status.pause_reason = False, None
        self.status.phase = "Progressing"
        self.status.analysis.consecutive_inconclusive = 0
