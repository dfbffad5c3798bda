"""Every strategy compiled into one list of steps, so one interpreter runs them all.

    canary     the user's steps (setWeight, pause, analysis)
    blueGreen  Preview (full size) -> Analysis (pre-promotion) -> Pause (unless autoPromote) -> Switch -> Window
    shadow     Mirror -> Shadow (periodic runs, then a final verdict over the whole duration)
    direct     nothing: straight to promotion, which waits until the candidate is available
    abTest     Split (weight% of users, sticky by header or cookie) -> Experiment (the success metric per
               variant, tested every interval until a winner, or undecided at maxDuration)

After the last step comes promotion (phase Promoting): the candidate at full size, then it becomes stable.
status.currentStep indexes these steps; for canary they are exactly spec.rollout.canary.steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.analysis import AnalysisMetric, AnalysisSettings, MetricBound
from modelrollout.api.base import duration_seconds
from modelrollout.api.rollout import AbTestSettings, CanaryStep, RolloutSpec, ShadowSettings

# Strategies without a scaleDownDelay of their own keep the old revision this long after the switch: routers
# and endpoints take a moment to converge, and a fast undo needs the old pods.
DEFAULT_SCALE_DOWN_DELAY_S = 30.0
# Shadow must also show the candidate is not slower; without a latency metric of the user's, this one applies.
SHADOW_DEFAULT_LATENCY_INCREASE = 0.10
_LATENCY_BUILTINS = ("latencyP95", "latencyP99")


@dataclass(frozen=True, slots=True)
class WeightStep:
    weight: int

    def describe(self) -> str:
        return f"setWeight {self.weight}"


@dataclass(frozen=True, slots=True)
class PauseStep:
    seconds: float | None  # None: until promoted

    def describe(self) -> str:
        return "pause until promoted" if self.seconds is None else f"pause {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class AnalysisStep:
    metrics: tuple[str, ...] | None  # None: all of rollout.analysis.metrics
    seconds: float

    def describe(self) -> str:
        names = ", ".join(self.metrics) if self.metrics else "all metrics"
        return f"analysis of {names} over {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class PreviewStep:
    """Blue-green: the candidate at full size behind `<name>-preview`, no user traffic."""

    def describe(self) -> str:
        return "preview at full size"


@dataclass(frozen=True, slots=True)
class SwitchStep:
    """Blue-green: all traffic to the candidate at once."""

    def describe(self) -> str:
        return "switch all traffic"


@dataclass(frozen=True, slots=True)
class WindowStep:
    """Blue-green post-promotion window: background analysis goes on; a failure switches back."""

    seconds: float

    def describe(self) -> str:
        return f"post-promotion window {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class MirrorStep:
    percent: int

    def describe(self) -> str:
        return f"mirror {self.percent}%"


@dataclass(frozen=True, slots=True)
class ShadowStep:
    seconds: float

    def describe(self) -> str:
        return f"shadow comparison for {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class SplitStep:
    """A/B: `weight`% of users to the candidate, each user sticking to one variant."""

    weight: int

    def describe(self) -> str:
        return f"split users {100 - self.weight}/{self.weight}"


@dataclass(frozen=True, slots=True)
class ExperimentStep:
    """A/B: test the success metric every interval until a variant wins, or stop undecided after `seconds`."""

    settings: AbTestSettings
    seconds: float

    def describe(self) -> str:
        ab = self.settings
        return f"A/B test ({ab.test}, alpha {ab.alpha:g}) for at most {ab.max_duration}"


Step = (
    WeightStep
    | PauseStep
    | AnalysisStep
    | PreviewStep
    | SwitchStep
    | WindowStep
    | MirrorStep
    | ShadowStep
    | SplitStep
    | ExperimentStep
)


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    analysis: AnalysisSettings  # rollout.analysis, or its defaults when unset
    background_metrics: tuple[AnalysisMetric, ...]  # what periodic runs check (shadow adds its own)
    min_comparisons: int
    scale_down_delay_s: float

    @property
    def interval_s(self) -> float:
        return duration_seconds(self.analysis.interval)

    def resolve(self, names: tuple[str, ...] | None) -> tuple[AnalysisMetric, ...] | str:
        """The metrics an analysis step names (all when None), or why they cannot be resolved."""
        if names is None:
            return self.background_metrics if self.background_metrics else "rollout.analysis.metrics is empty"
        known = {m.name: m for m in self.background_metrics}
        missing = [n for n in names if n not in known]
        if missing:
            return f"analysis step names unknown metrics {missing}; known: {sorted(known)}"
        return tuple(known[n] for n in names)


def _canary_step(step: CanaryStep, analysis: AnalysisSettings) -> Step:
    if step.set_weight is not None:
        return WeightStep(step.set_weight)
    if step.pause is not None:
        return PauseStep(duration_seconds(step.pause.duration) if step.pause.duration else None)
    assert step.analysis is not None  # CanaryStep's validator: exactly one of the three
    seconds = (
        duration_seconds(step.analysis.duration) if step.analysis.duration else 2 * duration_seconds(analysis.interval)
    )
    return AnalysisStep(tuple(step.analysis.metrics) if step.analysis.metrics is not None else None, seconds)


def shadow_metrics(shadow: ShadowSettings, user: list[AnalysisMetric]) -> tuple[AnalysisMetric, ...]:
    """Agreement for classifiers, or mean absolute difference when maxMeanAbsDiff is set (regressors, whose
    predictions are never identical), plus a latency comparison when the user checks no latency."""
    extra: list[AnalysisMetric] = []
    if shadow.max_mean_abs_diff is not None:
        extra.append(
            AnalysisMetric(name="shadow-mean-abs-diff", builtin="shadowMeanAbsDiff", max=shadow.max_mean_abs_diff)
        )
    else:
        extra.append(AnalysisMetric(name="shadow-agreement", builtin="shadowAgreement", min=shadow.min_agreement))
    if not any(m.builtin in _LATENCY_BUILTINS for m in user):
        extra.append(
            AnalysisMetric(
                name="shadow-latency",
                builtin="latencyP95",
                relative_to_stable=MetricBound(max_increase=SHADOW_DEFAULT_LATENCY_INCREASE),
            )
        )
    taken = {m.name for m in user}
    return (*user, *(m for m in extra if m.name not in taken))


def build_plan(rollout: RolloutSpec) -> Plan:
    analysis = rollout.analysis or AnalysisSettings()
    user = list(analysis.metrics)
    interval = duration_seconds(analysis.interval)
    steps: list[Step] = []
    metrics: tuple[AnalysisMetric, ...] = tuple(user)
    delay = DEFAULT_SCALE_DOWN_DELAY_S
    min_comparisons = analysis.min_requests

    if rollout.strategy == "canary" and rollout.canary is not None:
        steps = [_canary_step(s, analysis) for s in rollout.canary.steps]
        delay = duration_seconds(rollout.canary.scale_down_delay)
    elif rollout.strategy == "blueGreen" and rollout.blue_green is not None:
        bg = rollout.blue_green
        steps.append(PreviewStep())
        if bg.pre_promotion_analysis and user:
            steps.append(AnalysisStep(None, 2 * interval))
        if not bg.auto_promote:
            steps.append(PauseStep(None))
        steps.append(SwitchStep())
        window = duration_seconds(bg.post_promotion_window)
        if window > 0:
            steps.append(WindowStep(window))
        delay = duration_seconds(bg.scale_down_delay)
    elif rollout.strategy == "shadow" and rollout.shadow is not None:
        metrics = shadow_metrics(rollout.shadow, user)
        steps = [MirrorStep(rollout.shadow.mirror_percent), ShadowStep(duration_seconds(rollout.shadow.duration))]
        min_comparisons = rollout.shadow.min_comparisons
    elif rollout.strategy == "abTest" and rollout.ab_test is not None:
        ab = rollout.ab_test
        steps = [SplitStep(ab.weight), ExperimentStep(ab, duration_seconds(ab.max_duration))]
    return Plan(
        steps=tuple(steps),
        analysis=analysis,
        background_metrics=metrics,
        min_comparisons=min_comparisons,
        scale_down_delay_s=delay,
    )
