"""Runs the current step, and the ones after it, until one has to wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelrollout.rollout import ab_test, gates
from modelrollout.rollout.actions import SetSticky
from modelrollout.rollout.lifecycle import enter_promoting, next_step, promote_when_ready
from modelrollout.rollout.plan import (
    AnalysisStep,
    ExperimentStep,
    MirrorStep,
    PauseStep,
    PreviewStep,
    ShadowStep,
    SplitStep,
    Step,
    SwitchStep,
    WeightStep,
    WindowStep,
)
from modelrollout.rollout.sizing import for_mirror, for_weight, full_replicas
from modelrollout.rollout.work import STEP_REACHED, Work, label


def _until(w: Work, seconds: float, what: str) -> bool:
    if w.step_elapsed() >= seconds:
        return True
    w.status.message = f"{what} until {w.after(seconds, w.status.step_started_at).isoformat(timespec='seconds')}"
    return False


def _pods_ready(w: Work, wanted: int, what: str) -> bool:
    ready = w.ready(w.canary)
    if ready >= wanted:
        return True
    w.status.message = f"{what}: waiting for {label(w.canary)}: {ready} of {wanted} pods ready"
    return False


def _shift(w: Work, weight: int, what: str) -> int | None:
    """The canary sized for `weight`%, then (once its pods are ready) the weights: the effective canary weight,
    or None while waiting for pods."""
    sizing = for_weight(w.spec, weight)
    w.ensure(w.canary, "canary", sizing.canary)
    if not _pods_ready(w, sizing.canary, what):
        return None
    if sizing.stable is not None and w.status.stable is not None:
        # Only once the canary pods are ready: stable gives up capacity when there is somewhere for it to go.
        w.ensure(w.status.stable, "stable", sizing.stable)
    w.set_weights(sizing.stable_weight, sizing.canary_weight)
    return sizing.canary_weight


def _weight(w: Work, step: WeightStep, index: int) -> bool:
    effective = _shift(w, step.weight, f"step {index}: setWeight {step.weight}")
    if effective is None:
        return False
    coarse = f" (asked {step.weight}%; whole pods give {effective}%)" if effective != step.weight else ""
    w.event("Normal", "WeightSet", f"{label(w.canary)} gets {effective}% of requests{coarse}", notify=STEP_REACHED)
    return True


def _split(w: Work, step: SplitStep, index: int) -> bool:
    ab = w.spec.rollout.ab_test
    if ab is None:  # the plan has a SplitStep only for strategy abTest with its settings
        return False
    sizing = for_weight(w.spec, step.weight)
    if w.ready(w.canary) >= sizing.canary and w.status.weights.canary != sizing.canary_weight:
        # Sticky first: not one request of the split may be assigned by chance instead of by its user.
        w.emit(SetSticky(by=ab_test.sticky_by(ab)))
    effective = _shift(w, step.weight, f"step {index}: {step.describe()}")
    if effective is None:
        return False
    key = f"header {ab.route_by.header}" if ab.route_by.header else f"cookie {ab.route_by.cookie}"
    w.event("Normal", "UsersSplit", f"{effective}% of users (by {key}) go to {label(w.canary)}", notify=STEP_REACHED)
    return True


def _pause(w: Work, step: PauseStep, index: int) -> bool:
    if step.seconds is None:
        w.pause("PauseStep", f"step {index}: paused until promoted (kubectl modelrollout promote)")
        return False
    return _until(w, step.seconds, f"step {index}: paused")


def _analysis(w: Work, step: AnalysisStep, index: int) -> bool:
    resolved = w.plan.resolve(step.metrics)
    if isinstance(resolved, str):
        w.pause("AnalysisMisconfigured", f"step {index}: {resolved}; fix the spec, or promote to skip the step")
    else:
        w.status.message = f"step {index}: {step.describe()}"
    return False  # only an outcome of this step's analysis moves the rollout on (analysing.consume)


def _preview(w: Work, step: PreviewStep, index: int) -> bool:
    full = full_replicas(w.spec)
    w.ensure(w.canary, "canary", full)
    return _pods_ready(w, full, "preview")


def _switch(w: Work, step: SwitchStep, index: int) -> bool:
    full = full_replicas(w.spec)
    w.ensure(w.canary, "canary", full)
    if not _pods_ready(w, full, "switch"):
        return False
    w.set_weights(0, 100)
    w.event("Normal", "Switched", f"all requests go to {label(w.canary)}", notify=STEP_REACHED)
    return True


def _window(w: Work, step: WindowStep, index: int) -> bool:
    return _until(w, step.seconds, "post-promotion analysis window")


def _mirror(w: Work, step: MirrorStep, index: int) -> bool:
    pods = for_mirror(w.spec, step.percent)
    w.ensure(w.canary, "canary", pods)
    if not _pods_ready(w, pods, f"mirror {step.percent}%"):
        return False
    w.set_mirror(step.percent)
    w.event("Normal", "Mirroring", f"{step.percent}% of requests are mirrored to {label(w.canary)}",
            notify=STEP_REACHED)  # fmt: skip
    return True


def _shadow(w: Work, step: ShadowStep, index: int) -> bool:
    if _until(w, step.seconds, "comparing shadow answers"):
        w.status.message = "shadow duration reached: waiting for the final verdict over the whole duration"
    return False  # only the Final analysis outcome moves the rollout on


# Each runner says whether its step is complete, so the next one may start in the same tick.
_RUNNERS: dict[type[Step], Callable[[Work, Any, int], bool]] = {
    WeightStep: _weight,
    PauseStep: _pause,
    AnalysisStep: _analysis,
    PreviewStep: _preview,
    SwitchStep: _switch,
    WindowStep: _window,
    MirrorStep: _mirror,
    ShadowStep: _shadow,
    SplitStep: _split,
    ExperimentStep: ab_test.run_step,
}


def _promotion_allowed(w: Work) -> bool:
    """Steps done on time alone must not promote on missing or bad data: once background analysis has run, its
    latest run must have passed (a run that could not decide holds the promotion until one passes, or the
    inconclusiveLimit pauses the rollout for a human)."""
    runs = [r for r in w.status.analysis.runs if r.kind == "Background"]
    if not runs or runs[-1].verdict == "Successful":
        return True
    w.status.message = f"all steps done: promotion waits for a passing analysis run (latest: {runs[-1].verdict})"
    return False


def run_steps(w: Work) -> None:
    # Bounded: each pass either completes a step (at most one per step) or returns.
    for _ in range(len(w.plan.steps) + 2):
        s = w.status
        if not w.in_rollout or s.paused:
            return
        if s.phase == "Promoting":
            promote_when_ready(w)
            return
        if not gates.passed(w, gates.BEFORE_STEPS):
            return
        index = s.current_step or 0
        step = w.step()
        if step is None:
            if not gates.passed(w, gates.BEFORE_PROMOTION):
                return
            enter_promoting(w, "all steps done")
            continue
        if not _RUNNERS[type(step)](w, step, index):
            return
        if index == len(w.plan.steps) - 1 and not _promotion_allowed(w):
            return
        next_step(w)
