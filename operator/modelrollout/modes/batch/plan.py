"""A batch decision made real (pure): the CronJobs of its roles, the Jobs to start, what to delete, the runs and
readiness in status, and an event for every run that ended since the last pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import BatchRun, BatchStatus, ModelDeploymentStatus
from modelrollout.modes.base import ModeName
from modelrollout.modes.batch.machine import RUNS_KEPT, BatchDecision, Role, RunNow, label
from modelrollout.modes.batch.objects import (
    Scoring,
    build_cronjob,
    build_preflight_job,
    cronjob_name,
    preflight_job_name,
    preflight_location,
    shadow_location,
)
from modelrollout.modes.report import Readiness, mode_conditions, readiness_types
from modelrollout.planning.online import Owner
from modelrollout.rollout.actions import RecordEvent


@dataclass(frozen=True)
class RunJob:
    """A Job to create from the CronJob `cronjob` once it is applied (its uid is needed for the owner reference)."""

    cronjob: str
    verb_id: str
    at: datetime


@dataclass
class BatchPlan:
    cronjobs: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # created only when absent (a Job's spec is fixed)
    run_jobs: list[RunJob] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    events: list[RecordEvent] = field(default_factory=list)
    readiness: Readiness | None = None


def scoring_of(spec: ModelDeploymentSpec, role: Role) -> Scoring:
    batch = spec.batch
    assert batch is not None
    if role.role == "shadow":
        output = shadow_location(batch, role.revision.revision)
    elif role.role == "preflight":
        output = preflight_location(batch, role.revision.revision)
    else:
        output = batch.output
    return Scoring(role=role.role, revision=role.revision, model=role.model, output=output, reference=role.reference,
                   keys=role.keys, token_from_schedule=role.keys is not None)  # fmt: skip


def merged_runs(previous: Sequence[BatchRun], observed: Sequence[BatchRun]) -> list[BatchRun]:
    """Status's runs: what the cluster shows now, with the verdicts judged before (a run is judged once); runs
    whose Jobs are gone stay until newer ones push them out. Newest last, RUNS_KEPT at most."""
    judged = {run.job: run for run in previous}
    by_job = {run.job: run for run in previous}
    for seen in observed:
        before = judged.get(seen.job)
        if before is not None and seen.gate is None and before.gate is not None:
            seen = seen.model_copy(update={"gate": before.gate, "gate_message": before.gate_message,  # noqa: PLW2901
                                           "comparison": seen.comparison or before.comparison})  # fmt: skip
        by_job[seen.job] = seen
    return sorted(by_job.values(), key=lambda r: (r.created_at, r.job))[-RUNS_KEPT:]


def _ended_events(previous: Sequence[BatchRun], runs: Sequence[BatchRun]) -> list[RecordEvent]:
    """One event per run that ended since the last pass (a run older than everything status kept is history)."""
    before = {run.job: run for run in previous}
    oldest = min((run.created_at for run in previous), default=None)
    events: list[RecordEvent] = []
    for run in runs:
        old = before.get(run.job)
        if run.phase == "Running" or (old is not None and old.phase != "Running"):
            continue
        if old is None and oldest is not None and run.created_at < oldest:
            continue
        what = f"{run.role} run {run.job} ({label_of(run)})"
        if run.phase == "Succeeded":
            counts = run.counts
            said = f"scored {counts.scored} of {counts.read} records" if counts else "succeeded"
            if counts and counts.rejected:
                said += f", rejected {counts.rejected}"
            where = f"; manifest {run.manifest}" if run.manifest else ""
            events.append(RecordEvent(type="Normal", reason="RunSucceeded", message=f"{what} {said}{where}"))
        else:
            failed = f"{what} failed: {run.reason}: {run.message or ''}".rstrip(": ")
            events.append(RecordEvent(type="Warning", reason="RunFailed", message=failed))
    return events


def label_of(run: BatchRun) -> str:
    return f"version {run.version}, revision {run.revision}"


def batch_readiness(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, runs: Sequence[BatchRun]) -> Readiness:
    """BatchReady: the stable CronJob is in place and the last run that wrote the output did not fail."""
    batch = spec.batch
    assert batch is not None
    if status.stable is None:
        return Readiness("False", "NoRevision", "no revision scores yet")
    writers = [r for r in runs if r.role == "stable" and r.phase != "Running"]
    schedule = f"schedule '{batch.schedule}'" + (f" ({batch.time_zone})" if batch.time_zone else "")
    if writers and writers[-1].phase == "Failed":
        last = writers[-1]
        return Readiness("False", "RunFailed", f"the last run {last.job} failed: {last.reason}: {last.message or ''}")
    if batch.suspend:
        return Readiness("False", "Suspended", f"spec.batch.suspend is true: no run is scheduled ({schedule})")
    if writers:
        last = writers[-1]
        scored = f"; it scored {last.counts.scored} records" if last.counts else ""
        return Readiness("True", "LastRunSucceeded", f"{label(status.stable)} on {schedule}; the last run {last.job} "
                         f"succeeded{scored}")  # fmt: skip
    return Readiness("True", "Scheduled", f"{label(status.stable)} on {schedule}; no run has ended yet")


def plan_batch(
    spec: ModelDeploymentSpec,
    owner: Owner,
    decision: BatchDecision,
    *,
    previous: ModelDeploymentStatus | None,
    observed_runs: Sequence[BatchRun],
    cronjobs: Mapping[str, dict[str, Any]],
    jobs: Mapping[str, dict[str, Any]],
) -> BatchPlan:
    """`cronjobs` and `jobs`: ours that exist now (by name); a CronJob no role wants is deleted (its Jobs and
    pods go with it), a pre-flight Job too once its rollout is over."""
    plan = BatchPlan()
    status = decision.status
    for role in decision.roles:
        plan.cronjobs.append(build_cronjob(spec, owner, scoring_of(spec, role)))
    wanted = {body["metadata"]["name"] for body in plan.cronjobs}
    plan.delete += [("CronJob", name) for name in sorted(cronjobs) if name not in wanted]
    preflight_name = None
    if decision.preflight is not None and decision.preflight_at is not None:
        started = status.rollout_started_at or decision.preflight_at
        preflight_name = preflight_job_name(owner.name, decision.preflight.revision.revision, started)
        if preflight_name not in jobs:
            scoring = scoring_of(spec, decision.preflight)
            plan.jobs.append(build_preflight_job(spec, owner, scoring, at=decision.preflight_at, name=preflight_name))
    batch = status.batch or BatchStatus()
    batch.preflight_job = preflight_name
    plan.delete += [("Job", name) for name in sorted(jobs) if name != preflight_name]
    plan.run_jobs = [_run_job(owner, run) for run in decision.run_now]
    previous_runs = previous.batch.runs if previous is not None and previous.batch is not None else []
    judged = {run.job: run for run in observed_runs}  # the decision set verdicts on these objects
    batch.runs = merged_runs(previous_runs, list(judged.values()))
    status.batch = batch
    plan.events = decision.events + _ended_events(previous_runs, batch.runs)
    plan.readiness = batch_readiness(spec, status, batch.runs) if decision.roles else _waiting(status)
    return plan


def _waiting(status: ModelDeploymentStatus) -> Readiness:
    """Batch beside online, added while a revision whose model only its online Deployment knows is stable: it
    starts scoring with the next revision online promotes."""
    stable = label(status.stable) if status.stable else "the stable revision"
    return Readiness("False", "WaitingForPromotion", f"batch was added while {stable} serves online, and its model "
                     "is no longer in the spec: batch starts with the next revision online promotes")  # fmt: skip


def _run_job(owner: Owner, run: RunNow) -> RunJob:
    return RunJob(cronjob=cronjob_name(owner.name, run.role), verb_id=run.verb_id, at=run.at)


def pass_status(
    spec: ModelDeploymentSpec, decision: BatchDecision, plan: BatchPlan, *, prev: ModelDeploymentStatus,
    generation: int | None, now: datetime,
) -> ModelDeploymentStatus:  # fmt: skip
    """The status a batch-led pass writes: the decision's, with Ready and BatchReady laid over it."""
    status = decision.status.model_copy(deep=True)
    ready: dict[ModeName, Readiness] = {"batch": plan.readiness} if plan.readiness else {}
    said = mode_conditions(spec, ready=ready, prev=prev.conditions, generation=generation, now=now)
    status.conditions = [*said, *(c for c in status.conditions if c.type not in readiness_types())]
    status.observed_generation = generation
    status.modes = ",".join(spec.modes)
    return status
