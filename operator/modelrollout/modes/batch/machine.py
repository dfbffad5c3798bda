"""The rollout of a new revision to batch scoring (pure), when batch leads (a spec without online and stream).

Batch runs are events, not a stream: the rollout advances per finished run, and judges each candidate run once,
when it ends (`gates`). Per strategy:
- `shadow`: a second CronJob (`<name>-shadow`, same schedule) runs the candidate on the same input, into the shadow
  location, comparing every record with the stable model in the same pod. The stable CronJob runs as before and
  alone writes the output, so a failing candidate (a crash, an OOM, a schema it cannot read) can never touch that
  night's stable output. `rollout.shadow.runs` passing runs promote; one failing run rolls back with its reason.
- `canary`: the candidate scores a share of the keys (a hash of `spec.batch.key`, the same records every run) and
  stable the rest, into one output committed once; each setWeight step is one run at that weight; a failing part
  rolls back and re-runs that night with stable alone.
- `direct`: a pre-flight Job (schema check and a scored sample of the latest input, written aside) must pass
  before the CronJob switches to the new revision.
All state lives in status (`status.batch`), so a restarted operator resumes where it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelrollout.api.base import duration_seconds
from modelrollout.api.model import ModelSpec
from modelrollout.api.notifications import NotificationKind
from modelrollout.api.rollout import ShadowSettings
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import (
    BatchRole,
    BatchRun,
    BatchStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    Outcome,
    Phase,
    RevisionModel,
    RevisionRef,
)
from modelrollout.modes.batch.gates import Judgement, canary_comparison, judge_canary, judge_shadow
from modelrollout.modes.batch.objects import shadow_location
from modelrollout.rollout.actions import RecordEvent
from modelrollout.rollout.conditions import sync_conditions
from modelrollout.rollout.verbs import Verb
from modelrollout.rollout.work import ANALYSIS_FAILED, PAUSED, PROMOTED, ROLLED_BACK, STARTED, STEP_REACHED

EventType = Literal["Normal", "Warning"]
# Runs kept in status: more than the CronJobs' history limits (at most 10 each), so a run still in the cluster is
# never forgotten and reported again.
RUNS_KEPT = 12
KEY_BUCKETS = 10_000
# Judged candidate Jobs remembered: more than a rollout's runs can leave in the cluster (history limits, at most 10).
JUDGED_KEPT = 50


def label(ref: RevisionRef) -> str:
    return f"version {ref.version} (revision {ref.revision})"


@dataclass(frozen=True)
class Role:
    """A CronJob the plan wants: which role, which revision and model, and for canary the key buckets."""

    role: BatchRole
    revision: RevisionRef
    model: ModelSpec
    reference: ModelSpec | None = None
    keys: tuple[int, int] | None = None


@dataclass(frozen=True)
class RunNow:
    """A Job to start now from the CronJob of `role` (a `run` verb): scoring the data of `at`."""

    role: BatchRole
    verb_id: str
    at: datetime


@dataclass
class BatchDecision:
    status: ModelDeploymentStatus
    roles: list[Role] = field(default_factory=list)
    run_now: list[RunNow] = field(default_factory=list)
    preflight: Role | None = None
    preflight_at: datetime | None = None
    events: list[RecordEvent] = field(default_factory=list)
    wake_at: datetime | None = None  # a timed canary pause ends

    def event(
        self, type_: EventType, reason: str, message: str, *, notify: frozenset[NotificationKind] = frozenset()
    ) -> None:
        """`notify`: the notification kinds of the event, as the online engine's (rollout.work)."""
        self.events.append(RecordEvent(type=type_, reason=reason, message=message, notify=notify))


@dataclass(frozen=True)
class BatchInputs:
    spec: ModelDeploymentSpec
    target: RevisionRef
    target_model: ModelSpec  # the spec's model, its image resolved
    stable_model: ModelSpec | None  # the stable CronJob's recorded model (None before it exists)
    stable_model_revision: str | None  # ... and the revision it was recorded for
    runs: Sequence[BatchRun]  # every Job of ours found, oldest first
    verb: Verb | None
    now: datetime
    history_limit: int


def _record(d: BatchDecision, ref: RevisionRef, outcome: Outcome, message: str, now: datetime) -> None:
    s = d.status
    started = s.rollout_started_at or now
    entry = HistoryEntry(revision=ref.revision, version=ref.version, outcome=outcome, started_at=started,
                         finished_at=now, message=message[:1024])  # fmt: skip
    s.history = [*s.history, entry]


def _end_rollout(d: BatchDecision, phase: Phase, message: str) -> None:
    s = d.status
    s.canary = None
    s.rollout_started_at = None
    s.current_step = None
    s.step_started_at = None
    s.phase = phase
    s.message = message
    s.weights.canary = 0
    s.weights.stable = 100
    batch = _batch(s)
    batch.passed_runs = 0
    batch.preflight_job = None


def _batch(s: ModelDeploymentStatus) -> BatchStatus:
    if s.batch is None:
        s.batch = BatchStatus()
    return s.batch


def _promote(d: BatchDecision, why: str, now: datetime) -> None:
    s = d.status
    assert s.canary is not None
    promoted = s.canary
    message = f"{label(promoted)} promoted: {why}; the next run scores with it"
    _record(d, promoted, "Promoted", message, now)
    s.stable = promoted
    _end_rollout(d, "Healthy", message)
    d.event("Normal", "Promoted", message, notify=PROMOTED)


def _rollback(
    d: BatchDecision,
    *,
    phase: Phase,
    outcome: Outcome,
    reason: str,
    message: str,
    now: datetime,
    also_notify: frozenset[NotificationKind] = frozenset(),
) -> None:
    """`also_notify`: analysisFailed when a judged run decided it (a batch run's gates are its analysis)."""
    s = d.status
    assert s.canary is not None
    _record(d, s.canary, outcome, message, now)
    s.held = s.canary
    _end_rollout(d, phase, message)
    d.event("Warning", reason, message, notify=ROLLED_BACK | also_notify)


def _start(d: BatchDecision, target: RevisionRef, strategy: str, now: datetime) -> None:
    s = d.status
    s.canary = target
    s.rollout_started_at = now
    s.phase = "Progressing"
    batch = _batch(s)
    batch.passed_runs = 0
    # Only runs from the rollout's start on judge this candidate; Kubernetes stamps whole seconds, so the second
    # it began counts.
    batch.judged_since = now.replace(microsecond=0)
    batch.judged = []
    batch.preflight_job = None
    if strategy == "canary":
        s.current_step = 0
        s.step_started_at = now
    stable = label(s.stable) if s.stable else "nothing"
    s.message = f"rolling {label(target)} out to batch ({strategy}); stable stays {stable}"
    d.event("Normal", "RolloutStarted", s.message, notify=STARTED)


def _follow_target(d: BatchDecision, i: BatchInputs) -> None:
    """The spec's revision against the rollout in status: the first revision becomes stable at once; a new one
    starts a rollout (a held one waits for retry); a rollout whose target the spec left is superseded."""
    s, target = d.status, i.target
    if s.stable is None:
        s.stable = target
        s.phase = "Healthy"
        s.message = f"{label(target)} scores on schedule {i.spec.batch.schedule if i.spec.batch else ''}"
        return
    if s.canary is not None and s.canary.revision != target.revision:
        message = f"{label(s.canary)} superseded by the spec: it now asks for {label(target)}"
        _record(d, s.canary, "Superseded", message, i.now)
        d.event("Normal", "Superseded", message)
        _end_rollout(d, "Healthy", message)
    if s.held is not None and s.held.revision != target.revision:
        s.held = None  # the spec moved on from the revision that was stopped
    if s.canary is None and target.revision != s.stable.revision and s.held is None:
        _start(d, target, i.spec.rollout.strategy, i.now)
    if target.revision == s.stable.revision and s.canary is None and s.held is None:
        # Back on stable (or never off it): a rollback or abort stays said only while the spec asks for its target.
        s.phase = "Healthy"


def _apply_verb(d: BatchDecision, i: BatchInputs) -> None:
    verb, s = i.verb, d.status
    if verb is None or (verb.id is not None and verb.id == s.last_verb_id):
        return
    s.last_verb_id = verb.id
    if verb.name == "run":
        at = verb.at or i.now.replace(second=0, microsecond=0)
        verb_id = verb.id or at.strftime("%Y%m%d%H%M")
        d.run_now.append(RunNow("stable", verb_id, at))
        strategy = i.spec.rollout.strategy
        if s.canary is not None and strategy in ("shadow", "canary"):
            # The candidate's run of the same data: beside stable's (shadow), or its share of the keys (canary).
            d.run_now.append(RunNow("shadow" if strategy == "shadow" else "canary", verb_id, at))
        what = "stable" + (f" and the {strategy} candidate" if len(d.run_now) > 1 else "")
        d.event("Normal", "RunRequested", f"run requested by a user: {what} score the data of {at.isoformat()}")
    elif verb.name == "retry":
        if s.canary is not None or s.held is None:
            d.event("Warning", "VerbIgnored", "retry: only an aborted or rolled back rollout can be retried")
            return
        d.event("Normal", "Retry", f"retrying the rollout of {label(s.held)}")
        s.held = None
    elif s.canary is None:
        d.event("Warning", "VerbIgnored", f"{verb.name}: no batch rollout in progress")
    elif verb.name == "promote":
        _promote(d, "promoted by a user", i.now)
    elif verb.name in ("abort", "undo"):
        reason = "Aborted" if verb.name == "abort" else "Undone"
        outcome: Outcome = "Aborted" if verb.name == "abort" else "RolledBack"
        phase: Phase = "Degraded" if verb.name == "abort" else "RolledBack"
        _rollback(d, phase=phase, outcome=outcome, reason=reason,
                  message=f"{verb.name} by a user: {label(s.canary)} stopped; stable scores on", now=i.now)  # fmt: skip
    else:
        d.event("Warning", "VerbIgnored", f"{verb.name}: a batch rollout advances per run; it has no pause")


def _candidate_runs(d: BatchDecision, i: BatchInputs, role: BatchRole) -> list[BatchRun]:
    """The candidate's finished runs of `role` not judged yet, oldest first."""
    s = d.status
    assert s.canary is not None
    batch = _batch(s)
    since, judged = batch.judged_since, set(batch.judged)
    return [
        r for r in i.runs
        if r.role == role and r.revision == s.canary.revision and r.phase != "Running" and r.job not in judged
        and (since is None or r.created_at >= since)
    ]  # fmt: skip


def _judged(d: BatchDecision, run: BatchRun, judgement: Judgement) -> None:
    run.gate = "Passed" if judgement.passed else "Failed"
    run.gate_message = judgement.message[:1024]
    batch = _batch(d.status)
    batch.judged = [*batch.judged, run.job][-JUDGED_KEPT:]


def _shadow(d: BatchDecision, i: BatchInputs, settings: ShadowSettings) -> None:
    s = d.status
    assert s.canary is not None
    assert i.spec.batch is not None
    for run in _candidate_runs(d, i, "shadow"):
        judgement = judge_shadow(run, i.spec.batch.gates, settings)
        _judged(d, run, judgement)
        batch = _batch(s)
        if not judgement.passed:
            message = f"{label(s.canary)} rolled back: shadow run {run.job} {judgement.message}"
            _rollback(d, phase="RolledBack", outcome="RolledBack", reason="RolledBack", message=message, now=i.now,
                      also_notify=ANALYSIS_FAILED)  # fmt: skip
            return
        batch.passed_runs += 1
        d.event("Normal", "ShadowRunPassed", f"shadow run {run.job} of {label(s.canary)}: {judgement.message} "
                f"({batch.passed_runs} of {settings.runs})")  # fmt: skip
        if batch.passed_runs >= settings.runs:
            _promote(d, f"{batch.passed_runs} shadow run(s) passed", i.now)
            return
    s.message = (
        f"shadowing {label(s.canary)}: {_batch(s).passed_runs} of {settings.runs} run(s) passed; it writes to "
        f"{shadow_location(i.spec.batch, s.canary.revision).uri} on schedule {i.spec.batch.schedule}"
    )


def _direct(d: BatchDecision, i: BatchInputs) -> None:
    s = d.status
    assert s.canary is not None
    for run in _candidate_runs(d, i, "preflight"):
        if run.phase == "Failed":
            judgement = Judgement(False, f"pre-flight {run.job} failed ({run.reason}: {run.message})")
        else:
            judgement = Judgement(True, f"pre-flight {run.job} scored {run.counts.scored if run.counts else 0} "
                                  "sample records")  # fmt: skip
        _judged(d, run, judgement)
        if not judgement.passed:
            message = f"{label(s.canary)} rolled back: {judgement.message}"
            _rollback(d, phase="RolledBack", outcome="RolledBack", reason="RolledBack", message=message, now=i.now,
                      also_notify=ANALYSIS_FAILED)  # fmt: skip
            return
        _promote(d, judgement.message, i.now)
        return
    d.preflight = Role("preflight", s.canary, i.target_model)
    d.preflight_at = i.now.replace(second=0, microsecond=0)
    s.message = f"pre-flight of {label(s.canary)}: schema check and a scored sample of the latest input"


def _canary_weight(i: BatchInputs, step: int) -> int:
    canary = i.spec.rollout.canary
    assert canary is not None
    weights = [st.set_weight for st in canary.steps[: step + 1] if st.set_weight is not None]
    return weights[-1] if weights else 0


def _canary(d: BatchDecision, i: BatchInputs) -> None:
    s = d.status
    canary = i.spec.rollout.canary
    assert s.canary is not None
    assert canary is not None
    assert i.spec.batch is not None
    steps = canary.steps
    step = s.current_step or 0
    for run in _candidate_runs(d, i, "canary"):
        partner = next((r for r in i.runs if r.role == "stable" and r.scheduled_time == run.scheduled_time
                        and r.job != run.job), None)  # fmt: skip
        if run.phase == "Succeeded" and (partner is None or partner.phase == "Running"):
            break  # judged once stable's share of the same run has ended too
        if partner is not None and partner.phase == "Failed" and run.phase == "Succeeded":
            # Stable's share failed: the run proves nothing about the candidate; the next run is judged instead.
            _judged(d, run, Judgement(True, f"not counted: stable's share {partner.job} failed ({partner.reason})"))
            run.gate = None
            continue
        run.comparison = canary_comparison(run, partner) if partner is not None else None
        judgement = judge_canary(run, i.spec.batch.gates)
        _judged(d, run, judgement)
        if not judgement.passed:
            message = f"{label(s.canary)} rolled back at {s.weights.canary}% of keys: {judgement.message}"
            _rollback(d, phase="RolledBack", outcome="RolledBack", reason="RolledBack", message=message, now=i.now,
                      also_notify=ANALYSIS_FAILED)  # fmt: skip
            if run.scheduled_time is not None:
                # That run has no commit (its candidate share failed): stable scores all of it again.
                d.run_now.append(RunNow("stable", hashlib.sha256(run.job.encode()).hexdigest(), run.scheduled_time))
                d.event("Normal", "RunRequested", f"stable re-scores the run of {run.scheduled_time.isoformat()} "
                        "whole, after the candidate's share failed")  # fmt: skip
            return
        # The step it completed: batch has no event of its own for the next weight, which takes effect at
        # the next run.
        d.event("Normal", "CanaryRunPassed", f"canary run {run.job} at {s.weights.canary}% of keys: "
                f"{judgement.message}", notify=STEP_REACHED)  # fmt: skip
        step += 1
        s.step_started_at = i.now
    # Pause steps hold the weight until their time is up (or promote); setWeight steps wait for a run each.
    while step < len(steps) and steps[step].pause is not None:
        pause = steps[step].pause
        assert pause is not None
        if pause.duration is None or s.step_started_at is None:
            if not s.paused:  # said once, when the rollout reaches the step (as the online engine's PauseStep)
                d.event("Normal", "PauseStep", f"step {step}: paused until promoted (kubectl modelrollout promote)",
                        notify=PAUSED)  # fmt: skip
            s.paused, s.pause_reason = True, "PauseStep"
            break
        ends = s.step_started_at + timedelta(seconds=duration_seconds(pause.duration))
        if i.now < ends:
            d.wake_at = ends
            break
        step += 1
        s.step_started_at = i.now
    else:
        s.paused, s.pause_reason = False, None
    if step >= len(steps):
        _promote(d, f"{len(steps)} canary step(s) passed", i.now)
        return
    s.current_step = step
    weight = _canary_weight(i, step)
    s.weights.canary, s.weights.stable = weight, 100 - weight
    s.message = f"canary {label(s.canary)}: step {step + 1} of {len(steps)}, {weight}% of keys per run"


def decide_batch(status: ModelDeploymentStatus, i: BatchInputs) -> BatchDecision:
    """One pass of a batch-led ModelDeployment: the rollout's next state, the CronJobs and Jobs that make it
    real, and the events to post."""
    d = BatchDecision(status=status.model_copy(deep=True))
    s = d.status
    _apply_verb(d, i)
    _follow_target(d, i)
    strategy = i.spec.rollout.strategy
    if s.canary is not None:
        if strategy == "shadow":
            _shadow(d, i, i.spec.rollout.shadow or ShadowSettings())
        elif strategy == "canary":
            _canary(d, i)
        else:
            _direct(d, i)
    s.history = s.history[-i.history_limit :]
    _roles(d, i)
    _keep_stable_model(d, i)
    sync_conditions(s, now=i.now)
    return d


def _model_of(d: BatchDecision, i: BatchInputs, ref: RevisionRef) -> ModelSpec | None:
    """The model of revision `ref`: the spec's when it asks for it, else the one status recorded when it last
    did (else the one our stable CronJob recorded, for a status written before that)."""
    if ref.revision == i.target.revision:
        return i.target_model
    kept = _batch(d.status).stable_model
    if kept is not None and kept.revision == ref.revision:
        return kept.model
    return i.stable_model if i.stable_model_revision == ref.revision else None


def _keep_stable_model(d: BatchDecision, i: BatchInputs) -> None:
    """Record the stable revision's model while the spec still describes it: the only copy once it moves on."""
    stable = d.status.stable
    if stable is not None and stable.revision == i.target.revision:
        _batch(d.status).stable_model = RevisionModel(revision=stable.revision, model=i.target_model)


def follow_batch(status: ModelDeploymentStatus, i: BatchInputs) -> BatchDecision:
    """Batch beside online (which leads): it scores with the revision the online rollout has promoted
    (status.stable), switching on the promotion, never earlier; only `run` is a batch verb here."""
    d = BatchDecision(status=status.model_copy(deep=True))
    if i.verb is not None and i.verb.name == "run":
        _apply_verb(d, i)
    stable = d.status.stable
    model = _model_of(d, i, stable) if stable is not None else None
    if stable is not None and model is not None:
        d.roles.append(Role("stable", stable, model))
    _keep_stable_model(d, i)
    return d


def _roles(d: BatchDecision, i: BatchInputs) -> None:
    s = d.status
    assert s.stable is not None
    stable_model = _model_of(d, i, s.stable)
    if stable_model is None:
        # Neither status nor a CronJob knows the stable revision's model (a status written by hand): the spec's
        # revision becomes stable rather than nothing scoring, and the rollout (if any) ends.
        message = f"the model of {label(s.stable)} is not known any more: {label(i.target)} scores now"
        if s.canary is not None:
            _end_rollout(d, "Healthy", message)
        s.stable = i.target
        s.message = message
        d.event("Warning", "StableRecreated", message)
        stable_model = i.target_model
    in_canary = s.canary is not None and i.spec.rollout.strategy == "canary"
    split = KEY_BUCKETS * s.weights.canary // 100
    d.roles.append(Role("stable", s.stable, stable_model, keys=(split, KEY_BUCKETS) if in_canary else None))
    if s.canary is None:
        return
    if i.spec.rollout.strategy == "shadow":
        d.roles.append(Role("shadow", s.canary, i.target_model, reference=stable_model))
    elif in_canary:
        d.roles.append(Role("canary", s.canary, i.target_model, keys=(0, split)))
