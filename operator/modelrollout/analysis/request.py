"""What the rollout asks the analysis for, and what comes back.

The rollout engine decides *when* an analysis runs and over which metrics and window (a `RequestAnalysis`
action carries an `AnalysisRequest`); the operator runs it against a provider (`run_analysis`) and hands the
`AnalysisOutcome` to the next tick, which matches it to the request it is still waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.analysis import AnalysisMetric, Judge, JudgeType, NoDataPolicy
from modelrollout.api.rollout import AbTestSettings
from modelrollout.api.status import AbTestResult, AnalysisRun, RevisionRef, RunKind


@dataclass(frozen=True, kw_only=True, slots=True)
class AnalysisRequest:
    """One analysis run to perform: `metrics` of `canary` (and of `stable` for relative bounds) over the last
    `window_seconds`, judged with the noData policy and sample minimums given here."""

    kind: RunKind
    step: int | None
    canary: RevisionRef
    stable: RevisionRef | None
    metrics: tuple[AnalysisMetric, ...]
    window_seconds: float
    no_data: NoDataPolicy
    min_requests: int
    min_comparisons: int
    judge: JudgeType = "threshold"
    # alpha, tolerance and scores of the statistical judges (spec.rollout.analysis.judge); None: the defaults
    judge_settings: Judge | None = None
    # kind Experiment: the A/B test to evaluate over `window_seconds` (the time since users were split)
    ab_test: AbTestSettings | None = None

    @property
    def settings(self) -> Judge:
        return self.judge_settings if self.judge_settings is not None else Judge(type=self.judge)

    def answers(self, other: AnalysisRequest) -> bool:
        """Whether a result for `self` settles `other`: same candidate and kind (and step for step runs);
        time is left out so a request stays answerable until it is answered."""
        same_step = self.kind == "Background" or self.step == other.step
        return self.kind == other.kind and self.canary.revision == other.canary.revision and same_step


@dataclass(frozen=True, kw_only=True, slots=True)
class AnalysisOutcome:
    """The run performed for `request`."""

    request: AnalysisRequest
    run: AnalysisRun
    experiment: AbTestResult | None = None  # kind Experiment: the test on the counts measured
