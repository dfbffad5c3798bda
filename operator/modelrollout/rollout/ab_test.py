"""Strategy abTest in the engine: when its evaluations are due, and what their results do to the rollout.

Users are split once (SplitStep, sticky by header or cookie); then an Experiment run is due every interval,
over everything measured since the split, until the test names a winner: the candidate wins -> promotion; stable
wins -> rolled back. At maxDuration a last run is made and, without a winner, the test stops `undecided` and
stable keeps serving (the candidate is held, like a rollback: `retry` runs the test again). Background analysis
(the safety metrics) goes on beside it, so a candidate that errors is rolled back whatever its success rate.
"""

from __future__ import annotations

from datetime import datetime

from modelrollout.analysis import ab_test
from modelrollout.api.rollout import AbTestSettings
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import AbTestResult, AnalysisRun, ModelDeploymentStatus
from modelrollout.rollout.lifecycle import next_step, rollback
from modelrollout.rollout.plan import ExperimentStep
from modelrollout.rollout.work import AB_DECIDED, Work, label
from modelrollout.traffic.base import StickyBy


def sticky_by(ab: AbTestSettings) -> StickyBy:
    return StickyBy(header=ab.route_by.header, cookie=ab.route_by.cookie)


def sticky_for(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> StickyBy | None:
    """The sticky assignment the routing must have: an A/B test's while its candidate gets users, else none."""
    ab = spec.rollout.ab_test
    if spec.rollout.strategy != "abTest" or ab is None or status.canary is None or status.weights.canary == 0:
        return None
    return sticky_by(ab)


def _runs(w: Work) -> list[AnalysisRun]:
    return [r for r in w.status.analysis.runs if r.kind == "Experiment" and r.step == w.status.current_step]


def limit(w: Work, step: ExperimentStep) -> datetime:
    return w.after(step.seconds, w.status.step_started_at)


def due_at(w: Work, step: ExperimentStep) -> datetime | None:
    """Every interval since the split, and once more at maxDuration; None once that last run is in."""
    end = limit(w, step)
    runs = _runs(w)
    if runs and runs[-1].at >= end:
        return None
    last = runs[-1].at if runs else w.status.step_started_at
    return min(w.after(w.plan.interval_s, last), end)


def window_s(w: Work) -> float:
    """What an evaluation now covers: everything since the split."""
    return max(w.step_elapsed(), 1.0)


def run_step(w: Work, step: ExperimentStep, index: int) -> bool:
    """Ends the test undecided once the run at maxDuration brought no winner; never completes on its own (a
    winner, through `consume`, does)."""
    current = w.status.ab_test = w.status.ab_test or AbTestResult()  # nothing measured yet
    if due_at(w, step) is None and w.now >= limit(w, step):
        _undecided(w, step, current)
        return False
    if current.samples_canary == 0:
        w.status.message = f"step {index}: A/B test started; first evaluation after {w.plan.interval_s:g}s"
    return False


def _undecided(w: Work, step: ExperimentStep, current: AbTestResult) -> None:
    w.status.ab_test = current.model_copy(update={"winner": "undecided"})
    message = (
        f"A/B test of {label(w.canary)} ended undecided after maxDuration {step.settings.max_duration}: "
        f"{ab_test.describe(current, step.settings)}; {label(w.status.stable) if w.status.stable else 'stable'} "
        "keeps serving"
    )
    rollback(
        w, phase="RolledBack", outcome="Undecided", reason="AbTestUndecided", message=message, also_notify=AB_DECIDED
    )


def consume(w: Work, run: AnalysisRun, result: AbTestResult | None, step: ExperimentStep) -> None:
    """Act on one evaluation: keep the result in status, and end the test when it names a winner."""
    settings = step.settings
    if result is None:
        w.status.message = "A/B test: the success metric could not be measured: " + "; ".join(
            m.message or m.verdict for m in run.metrics
        )
        return
    w.status.ab_test = result
    summary = ab_test.describe(result, settings)
    if result.winner == "canary":
        w.event("Normal", "AbTestWon", f"A/B test: {label(w.canary)} wins: {summary}", notify=AB_DECIDED)
        next_step(w)
    elif result.winner == "stable":
        keeps = label(w.status.stable) if w.status.stable else "stable"
        message = f"A/B test: {keeps} wins over {label(w.canary)}: {summary}; {keeps} keeps serving"
        rollback(
            w, phase="RolledBack", outcome="RolledBack", reason="AbTestLost", message=message, also_notify=AB_DECIDED
        )
    else:
        w.status.message = f"A/B test running: {summary}"
