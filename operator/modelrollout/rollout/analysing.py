"""When the rollout needs an analysis, and what a verdict does to it.

Three kinds of run, at most one requested per tick (a step's own run first):
- Step: an analysis step (or blue-green's pre-promotion analysis), once its duration has passed, over that
  duration; repeated every interval while it neither passes nor exhausts a limit.
- Final: shadow's verdict over the whole shadow duration, once it has passed; repeated likewise.
- Experiment: an A/B test's evaluation over everything since the split, every interval (rollout.ab_test).
- Background: every interval while the candidate gets traffic (weight or mirror), over one interval, paused
  or not: a pause keeps the split, so it must not switch off the safety net.

Verdicts (Argo Rollouts semantics): Failed runs are counted and more than failureLimit roll back; more than
inconclusiveLimit consecutive Inconclusive or Error runs pause for a human (while a step has an analysis of its
own, only that analysis' runs count); a passing Step or Final run completes its step. Background runs only
ever stop a rollout, never advance it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from modelrollout.analysis.evaluate import clip
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.analysis import AnalysisMetric
from modelrollout.api.status import AnalysisRun, RunKind
from modelrollout.rollout import ab_test
from modelrollout.rollout.actions import RequestAnalysis
from modelrollout.rollout.lifecycle import next_step, rollback
from modelrollout.rollout.plan import AnalysisStep, ExperimentStep, ShadowStep
from modelrollout.rollout.work import ANALYSIS_FAILED, RUNS_LIMIT, Work, label


@dataclass(frozen=True, slots=True)
class Pending:
    at: datetime
    request: AnalysisRequest


def _request(
    w: Work, kind: RunKind, metrics: tuple[AnalysisMetric, ...], window_s: float, step: ExperimentStep | None = None
) -> AnalysisRequest:
    settings = w.plan.analysis
    return AnalysisRequest(
        kind=kind,
        step=w.status.current_step,
        canary=w.canary,
        stable=w.status.stable,
        metrics=metrics,
        window_seconds=window_s,
        no_data=settings.no_data,
        min_requests=settings.min_requests,
        min_comparisons=w.plan.min_comparisons,
        judge=settings.judge.type,
        judge_settings=settings.judge,
        ab_test=step.settings if step is not None else None,
    )


def _due_at(w: Work, kind: RunKind, seconds: float) -> datetime:
    """A step's run is due once its window has passed, and again one interval after each undecided run."""
    s = w.status
    due = w.after(seconds, s.step_started_at)
    previous = [r.at for r in s.analysis.runs if r.kind == kind and r.step == s.current_step]
    return max(due, w.after(w.plan.interval_s, max(previous))) if previous else due


def pending(w: Work) -> list[Pending]:
    """The analyses the rollout is waiting for, with when each is due; step runs first."""
    s = w.status
    if not w.in_rollout or s.phase == "Promoting":
        return []
    out: list[Pending] = []
    # A paused rollout runs no step analysis, but the candidate still gets traffic: background runs go on.
    step = None if s.paused else w.step()
    if isinstance(step, AnalysisStep):
        metrics = w.plan.resolve(step.metrics)
        if not isinstance(metrics, str):
            out.append(Pending(_due_at(w, "Step", step.seconds), _request(w, "Step", metrics, step.seconds)))
    elif isinstance(step, ShadowStep):
        final = _request(w, "Final", w.plan.background_metrics, step.seconds)
        out.append(Pending(_due_at(w, "Final", step.seconds), final))
    elif isinstance(step, ExperimentStep):
        due = ab_test.due_at(w, step)
        if due is not None:
            out.append(Pending(due, _request(w, "Experiment", (), ab_test.window_s(w), step)))
    weights = s.weights
    if s.analysis.next_run_at is not None and w.plan.background_metrics and (weights.canary or weights.mirror):
        background = _request(w, "Background", w.plan.background_metrics, w.plan.interval_s)
        out.append(Pending(s.analysis.next_run_at, background))
    return out


def request_due(w: Work) -> None:
    due = [p for p in pending(w) if p.at <= w.now]
    if due:
        w.emit(RequestAnalysis(request=due[0].request))


def _summary(run: AnalysisRun) -> str:
    return "; ".join(f"{m.name} {m.verdict}" + (f" ({m.message})" if m.message else "") for m in run.metrics)


def consume(w: Work, outcome: AnalysisOutcome) -> None:
    """Record a run and act on its verdict, if it answers an analysis that is due; a stale outcome (another
    candidate, a step already left) is ignored."""
    if not any(p.at <= w.now and outcome.request.answers(p.request) for p in pending(w)):
        return
    s, settings, kind = w.status, w.plan.analysis, outcome.request.kind
    run = outcome.run.model_copy(update={"kind": kind, "step": outcome.request.step})
    counters = s.analysis
    counters.runs = [*counters.runs, run][-RUNS_LIMIT:]
    if kind == "Background":
        counters.next_run_at = w.after(w.plan.interval_s)
    step = w.step()
    if kind == "Experiment" and isinstance(step, ExperimentStep):
        ab_test.consume(w, run, outcome.experiment, step)
        return
    summary = clip(_summary(run))

    if run.verdict == "Failed":
        counters.failures += 1
        counters.consecutive_failures += 1
        counters.consecutive_inconclusive = 0
        tally = f"{counters.failures} failed run(s), failureLimit {settings.failure_limit}"
        if counters.failures > settings.failure_limit:
            keeps = f"; {label(s.stable)} keeps serving" if s.stable else ""
            message = f"{kind} analysis of {label(w.canary)} failed ({tally}): {summary}{keeps}"
            rollback(w, phase="RolledBack", outcome="RolledBack", reason="AnalysisFailed", message=message,
                     also_notify=ANALYSIS_FAILED)  # fmt: skip
        else:
            w.event("Warning", "AnalysisFailed", f"{kind} analysis failed, tolerated ({tally}): {summary}",
                    notify=ANALYSIS_FAILED)  # fmt: skip
        return
    counters.consecutive_failures = 0
    # While a step waits for its own verdict, only its runs say whether a human is needed: passing background
    # runs must not hide a step analysis that never decides (and loop on it forever).
    streak_counts = kind != "Background" or not isinstance(w.step(), AnalysisStep | ShadowStep)
    if not streak_counts:
        return
    if run.verdict == "Successful":
        counters.consecutive_inconclusive = 0
        if kind != "Background":
            w.event("Normal", "AnalysisPassed", f"{kind} analysis of {label(w.canary)} passed: {summary}")
            next_step(w)
        return
    counters.consecutive_inconclusive += 1
    tally = f"{counters.consecutive_inconclusive} in a row, inconclusiveLimit {settings.inconclusive_limit}"
    if counters.consecutive_inconclusive > settings.inconclusive_limit:
        w.pause(
            "Inconclusive",
            f"analysis could not decide ({tally}): {summary}. resume to keep analysing, promote to go on, or abort",
        )
    else:
        w.event("Warning", "AnalysisInconclusive", f"{kind} analysis could not decide ({tally}): {summary}")
