"""Runs one A/B evaluation against a metric provider: the success metric's successes and trials of both variants
since the split (the user's PromQL with {{version}} and {{interval}} filled in), then the test of ab_test.

The only I/O is `provider.query`; a failed or empty query is an `Error` run without a result, never an exception.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from modelrollout.analysis import ab_test
from modelrollout.analysis.evaluate import clip
from modelrollout.analysis.provider import MetricProvider, QueryResult, ask
from modelrollout.analysis.queries import QueryContext, QueryTemplateError, custom_query
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.status import AnalysisRun, MetricResult, RevisionRef, Verdict

METRIC_NAME = "ab-test"


def error_outcome(request: AnalysisRequest, now: datetime, message: str) -> AnalysisOutcome:
    result = MetricResult(name=METRIC_NAME, verdict="Error", message=clip(message))
    run = AnalysisRun(at=now, verdict="Error", kind=request.kind, step=request.step, metrics=[result])
    return AnalysisOutcome(request=request, run=run)


def count(answer: QueryResult, what: str) -> int | str:
    """A counter increase as a whole count, or why it is not one. `increase()` extrapolates to the window's
    edges, so its answers are fractional: rounded."""
    if answer.error is not None:
        return f"{what}: {answer.error}"
    if answer.value is None or math.isnan(answer.value):
        return 0  # no series: nothing counted yet (a variant before its first request)
    if answer.value < 0 or math.isinf(answer.value):
        return f"{what} is {answer.value}: not a count"
    return round(answer.value)


async def run_experiment(
    provider: MetricProvider,
    request: AnalysisRequest,
    *,
    namespace: str,
    name: str,
    model: str,
    now: datetime,
) -> AnalysisOutcome:
    settings = request.ab_test
    if settings is None or request.stable is None:
        return error_outcome(request, now, "an A/B evaluation needs the test's settings and a stable variant")
    window = max(1, math.ceil(request.window_seconds))

    def context(ref: RevisionRef) -> QueryContext:
        return QueryContext(
            namespace=namespace,
            name=name,
            model=model,
            version=ref.version,
            revision=ref.revision,
            window_seconds=window,
        )

    metric = settings.success_metric
    try:
        queries = [
            custom_query(template, context(ref))
            for ref in (request.stable, request.canary)
            for template in (metric.successes, metric.trials)
        ]
    except QueryTemplateError as exc:
        return error_outcome(request, now, f"abTest.successMetric: {exc}")
    answers = await asyncio.gather(*(ask(provider, q) for q in queries))
    labels = ("stable successes", "stable trials", "canary successes", "canary trials")
    counts = [count(answer, label) for answer, label in zip(answers, labels, strict=True)]
    problems = [c for c in counts if isinstance(c, str)]
    if problems:
        return error_outcome(request, now, "; ".join(problems))
    s_succ, s_trials, c_succ, c_trials = (int(c) for c in counts)
    # Successes and trials are separate queries, each extrapolated: never let the first exceed the second.
    return judge(
        request, now, ab_test.Arm(min(s_succ, s_trials), s_trials), ab_test.Arm(min(c_succ, c_trials), c_trials)
    )


def judge(request: AnalysisRequest, now: datetime, stable: ab_test.Arm, canary: ab_test.Arm) -> AnalysisOutcome:
    """The outcome of an evaluation on these counts: the test's result, and a run that shows it."""
    settings = request.ab_test
    if settings is None:
        return error_outcome(request, now, "an A/B evaluation needs the test's settings")
    result = ab_test.evaluate(stable, canary, settings)
    verdict: Verdict = "Inconclusive"
    if result.winner is not None:
        verdict = "Successful" if result.winner == "canary" else "Failed"
    evidence = {
        "successesStable": float(stable.successes),
        "trialsStable": float(stable.trials),
        "successesCanary": float(canary.successes),
        "trialsCanary": float(canary.trials),
    }
    evidence.update({k: v for k, v in (("pValue", result.p_value), ("eValue", result.e_value)) if v is not None})
    if result.interval is not None:
        evidence.update(effectLow=result.interval.low, effectHigh=result.interval.high)
    metric_result = MetricResult(
        name=METRIC_NAME,
        verdict=verdict,
        value=result.rate_canary,
        stable_value=result.rate_stable,
        message=clip(ab_test.describe(result, settings)),
        evidence=evidence,
    )
    run = AnalysisRun(at=now, verdict=verdict, kind=request.kind, step=request.step, metrics=[metric_result])
    return AnalysisOutcome(request=request, run=run, experiment=result)
