"""Runs one requested analysis against a metric provider: build the queries, ask each once, judge.

The only I/O is `provider.query`; whatever it does (even raise), the result is an `AnalysisOutcome` whose
failed measurements are `Error` verdicts, so a tick never sees an exception from analysis.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from modelrollout.analysis.evaluate import error_result, evaluate_metric, run_verdict, unsupported_judge
from modelrollout.analysis.provider import MetricProvider, QueryResult
from modelrollout.analysis.queries import (
    SHADOW_BUILTINS,
    QueryContext,
    QueryTemplateError,
    builtin_query,
    custom_query,
    rate_window,
    samples_query,
)
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.analysis import AnalysisMetric
from modelrollout.api.status import AnalysisRun, MetricResult, RevisionRef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Queries:
    canary: str
    stable: str | None
    samples: str

    def all(self) -> tuple[str, ...]:
        return (self.canary, self.samples) if self.stable is None else (self.canary, self.stable, self.samples)


def _query(metric: AnalysisMetric, ctx: QueryContext) -> str:
    return builtin_query(metric.builtin, ctx) if metric.builtin else custom_query(metric.query or "", ctx)


def _plan(metric: AnalysisMetric, canary: QueryContext, stable: QueryContext | None) -> _Queries:
    if metric.relative_to_stable is not None and metric.builtin in SHADOW_BUILTINS:
        raise QueryTemplateError(
            f"{metric.builtin} is measured per route, not per revision, so it has no stable value: "
            "use min or max instead of relativeToStable"
        )
    wants_stable = metric.relative_to_stable is not None and stable is not None
    return _Queries(
        canary=_query(metric, canary),
        stable=_query(metric, stable) if wants_stable and stable is not None else None,
        samples=samples_query(metric.builtin, canary),
    )


def _prepare(
    metric: AnalysisMetric, request: AnalysisRequest, canary: QueryContext, stable: QueryContext | None
) -> MetricResult | _Queries:
    """The queries a metric needs, or its verdict already when it cannot be measured at all."""
    if request.judge != "threshold":
        return unsupported_judge(metric, request.judge)
    try:
        return _plan(metric, canary, stable)
    except QueryTemplateError as exc:
        return error_result(metric, str(exc))


def _judge(
    metric: AnalysisMetric, queries: _Queries, answers: dict[str, QueryResult], request: AnalysisRequest
) -> MetricResult:
    shadow = metric.builtin in SHADOW_BUILTINS
    return evaluate_metric(
        metric,
        canary=answers[queries.canary],
        stable=answers[queries.stable] if queries.stable else None,
        samples=answers[queries.samples],
        min_samples=request.min_comparisons if shadow else request.min_requests,
        sample_noun="shadow comparisons" if shadow else "requests",
        no_data=request.no_data,
    )


async def _ask(provider: MetricProvider, promql: str) -> QueryResult:
    try:
        return await provider.query(promql)
    # Any exception: a provider bug must become an Error verdict, never a crashed tick.
    except Exception as exc:
        log.warning("metric provider raised for %r", promql, exc_info=True)
        return QueryResult.failed(f"{type(exc).__name__}: {exc}")


def _context(ref: RevisionRef, *, namespace: str, name: str, model: str, window: int) -> QueryContext:
    return QueryContext(
        namespace=namespace, name=name, model=model, version=ref.version, revision=ref.revision, window_seconds=window
    )


async def run_analysis(
    provider: MetricProvider,
    request: AnalysisRequest,
    *,
    namespace: str,
    name: str,
    model: str,
    scrape_interval_seconds: float,
    now: datetime,
) -> AnalysisOutcome:
    """Measure and judge every metric of `request`. `model` is spec.model.name (the `model` label; assumed the
    same for stable and candidate), `scrape_interval_seconds` the Prometheus scrape interval, which bounds the
    window from below."""
    window = rate_window(requested_seconds=request.window_seconds, scrape_interval_seconds=scrape_interval_seconds)
    canary = _context(request.canary, namespace=namespace, name=name, model=model, window=window)
    stable = (
        _context(request.stable, namespace=namespace, name=name, model=model, window=window) if request.stable else None
    )

    entries = [_prepare(metric, request, canary, stable) for metric in request.metrics]
    # Metrics share queries (every server metric's sample count is the same): ask each distinct one once.
    distinct = sorted({q for entry in entries if isinstance(entry, _Queries) for q in entry.all()})
    answers = dict(zip(distinct, await asyncio.gather(*(_ask(provider, q) for q in distinct)), strict=True))
    final = [
        entry if isinstance(entry, MetricResult) else _judge(metric, entry, answers, request)
        for metric, entry in zip(request.metrics, entries, strict=True)
    ]

    run = AnalysisRun(at=now, verdict=run_verdict(final), kind=request.kind, step=request.step, metrics=final)
    return AnalysisOutcome(request=request, run=run)
