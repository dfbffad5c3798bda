"""Runs one requested analysis against a metric provider: build the queries, ask each once, judge.

The only I/O is `provider.query`; whatever it does (even raise), the result is an `AnalysisOutcome` whose
failed measurements are `Error` verdicts, so a tick never sees an exception from analysis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from modelrollout.analysis import judged
from modelrollout.analysis.evaluate import clip, error_result, evaluate_metric, run_verdict
from modelrollout.analysis.provider import MetricProvider, QueryResult, ask
from modelrollout.analysis.queries import (
    SHADOW_BUILTINS,
    CountQueries,
    Mode,
    QueryContext,
    QueryTemplateError,
    builtin_query,
    count_queries,
    custom_query,
    rate_window,
    samples_query,
)
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.analysis import AnalysisMetric
from modelrollout.api.status import AnalysisRun, MetricResult, RevisionRef, Verdict

if TYPE_CHECKING:
    from modelrollout.analysis.judges import mann_whitney  # imported when a judge runs: scipy is ~70 MB resident

# mannWhitney compares this many points per revision (one per rate window, ending now and further back).
MW_MIN_POINTS = 6
MW_MAX_POINTS = 20


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


@dataclass(frozen=True, slots=True)
class _Counts:
    """The sequential judge's queries: cumulative bad and total counts of both revisions, and for the test's first
    run (no previous state) their increases over the run's window too."""

    canary: CountQueries
    stable: CountQueries
    previous: dict[str, float] | None
    first: tuple[CountQueries, CountQueries] | None = None

    def sums(self) -> tuple[str, ...]:
        return (self.canary.bad, self.canary.total, self.stable.bad, self.stable.total)

    def window(self) -> tuple[str, ...]:
        if self.first is None:
            return ()
        canary, stable = self.first
        return (canary.bad, canary.total, stable.bad, stable.total)

    def all(self) -> tuple[str, ...]:
        return self.sums() + self.window()


@dataclass(frozen=True, slots=True)
class _Points:
    """The mannWhitney judge's queries: the metric per revision over consecutive windows back from now."""

    canary: tuple[str, ...]
    stable: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return self.canary + self.stable


_Entry = MetricResult | _Queries | _Counts | _Points


def _points(metric: AnalysisMetric, request: AnalysisRequest, ctx: QueryContext, point_s: int) -> tuple[str, ...]:
    """The metric over consecutive `point_s` windows (the shortest rate window), newest first, covering the
    run's window but never fewer than MW_MIN_POINTS of them."""
    ctx = dataclasses.replace(ctx, window_seconds=point_s)
    count = max(MW_MIN_POINTS, min(MW_MAX_POINTS, math.ceil(request.window_seconds / point_s)))
    return tuple(_query(metric, dataclasses.replace(ctx, offset_seconds=i * ctx.window_seconds)) for i in range(count))


def _statistical(
    metric: AnalysisMetric,
    request: AnalysisRequest,
    canary: QueryContext,
    stable: QueryContext | None,
    previous: Sequence[AnalysisRun],
    *,
    point_s: int,
) -> _Entry | None:
    """The queries of the sequential or mannWhitney judge, or None when the metric is judged by threshold (a
    metric those judges cannot measure: custom queries, shadow builtins, requestRate; or no stable revision)."""
    builtin = metric.builtin
    if stable is None or builtin is None or builtin in SHADOW_BUILTINS or builtin == "requestRate":
        return None
    if request.judge == "sequential":
        mine, theirs = count_queries(builtin, metric.max, canary), count_queries(builtin, metric.max, stable)
        if isinstance(mine, str) or isinstance(theirs, str):
            return error_result(metric, str(mine if isinstance(mine, str) else theirs))
        before = judged.previous_evidence(metric, previous)
        first = None
        if before is None:  # the first run also counts its window, so that it can already decide
            mine_w = count_queries(builtin, metric.max, canary, window=True)
            theirs_w = count_queries(builtin, metric.max, stable, window=True)
            assert not isinstance(mine_w, str)  # as the sums above
            assert not isinstance(theirs_w, str)
            first = (mine_w, theirs_w)
        return _Counts(mine, theirs, before, first)
    return _Points(_points(metric, request, canary, point_s), _points(metric, request, stable, point_s))


def _prepare(
    metric: AnalysisMetric,
    request: AnalysisRequest,
    canary: QueryContext,
    stable: QueryContext | None,
    previous: Sequence[AnalysisRun],
    *,
    point_s: int,
) -> _Entry:
    """The queries a metric needs, or its verdict already when it cannot be measured at all."""
    try:
        if request.judge != "threshold":
            planned = _statistical(metric, request, canary, stable, previous, point_s=point_s)
            if planned is not None:
                return planned
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


def _context(ref: RevisionRef, *, namespace: str, name: str, model: str, window: int, mode: Mode) -> QueryContext:
    return QueryContext(namespace=namespace, name=name, model=model, version=ref.version, revision=ref.revision,
                        window_seconds=window, mode=mode)  # fmt: skip


async def run_analysis(
    provider: MetricProvider,
    request: AnalysisRequest,
    *,
    namespace: str,
    name: str,
    model: str,
    scrape_interval_seconds: float,
    now: datetime,
    previous: Sequence[AnalysisRun] = (),
    mode: Mode = "online",
) -> AnalysisOutcome:
    """Measure and judge every metric of `request`. `model` is spec.model.name (the `model` label; assumed the
    same for stable and candidate), `scrape_interval_seconds` the Prometheus scrape interval, which bounds the
    window from below. `previous`: status.analysis.runs of this rollout, where the sequential judge keeps its
    state (without them every sequential run starts the test afresh and decides nothing). `mode`: whose series
    the builtins read, the model servers' or the stream consumers'."""
    window = rate_window(requested_seconds=request.window_seconds, scrape_interval_seconds=scrape_interval_seconds)
    canary = _context(request.canary, namespace=namespace, name=name, model=model, window=window, mode=mode)
    stable = None
    if request.stable is not None:
        stable = _context(request.stable, namespace=namespace, name=name, model=model, window=window, mode=mode)

    floor = rate_window(requested_seconds=0, scrape_interval_seconds=scrape_interval_seconds)
    entries = [_prepare(metric, request, canary, stable, previous, point_s=floor) for metric in request.metrics]
    # A run over a long window can pass on traffic that has since stopped: it must not promote in a traffic gap.
    # (Builtin server metrics only: custom queries may measure traffic the model server does not count.)
    recent = samples_query(None, dataclasses.replace(canary, window_seconds=floor))
    needs_recent = any(m.builtin is not None and m.builtin not in SHADOW_BUILTINS for m in request.metrics)
    # Metrics share queries (every server metric's sample count is the same): ask each distinct one once.
    asked = {q for entry in entries if not isinstance(entry, MetricResult) for q in entry.all()}
    distinct = sorted(asked | {recent} if needs_recent else asked)
    answers = dict(zip(distinct, await asyncio.gather(*(ask(provider, q) for q in distinct)), strict=True))
    final, verdict = _verdicts(request, entries, answers)
    if verdict == "Successful" and needs_recent and not (answers[recent].has_data and (answers[recent].value or 0) > 0):
        verdict = "Inconclusive"
        final = [
            r.model_copy(
                update={
                    "verdict": "Inconclusive",
                    "message": clip(
                        f"no canary request in the last {floor}s "
                        f"(a traffic gap): no promotion on older data; {r.message or ''}"
                    ),
                }
            )
            if r.verdict == "Successful"
            else r
            for r in final
        ]
    run = AnalysisRun(at=now, verdict=verdict, kind=request.kind, step=request.step, metrics=final)
    return AnalysisOutcome(request=request, run=run)


def _verdicts(
    request: AnalysisRequest, entries: list[_Entry], answers: dict[str, QueryResult]
) -> tuple[list[MetricResult], Verdict]:
    """Every metric's result and the run's verdict: the worst metric, except that the metrics mannWhitney
    compares count as one, by their score."""
    settings = request.settings
    results: dict[str, MetricResult] = {}
    compared: list[tuple[AnalysisMetric, mann_whitney.Comparison]] = []
    tests = sum(isinstance(entry, _Counts) for entry in entries)
    for metric, entry in zip(request.metrics, entries, strict=True):
        match entry:
            case MetricResult():
                results[metric.name] = entry
            case _Queries():
                results[metric.name] = _judge(metric, entry, answers, request)
            case _Counts():
                raw = judged.RawCounts(*(answers[q] for q in entry.sums()))
                window = judged.RawCounts(*(answers[q] for q in entry.window())) if entry.first else None
                results[metric.name] = judged.judge_sequential(
                    metric,
                    raw,
                    previous=entry.previous,
                    judge=settings,
                    min_requests=request.min_requests,
                    no_data=request.no_data,
                    what=entry.canary.what,
                    tests=tests,
                    first_window=window,
                )
            case _Points():
                comparison = judged.compare_points(
                    metric, [answers[q] for q in entry.canary], [answers[q] for q in entry.stable], settings
                )
                if isinstance(comparison, str):
                    results[metric.name] = error_result(metric, comparison)
                else:
                    compared.append((metric, comparison))
    verdicts: list[Verdict] = []
    if compared:
        scored, score_verdict = judged.mann_whitney_results(compared, judge=settings, no_data=request.no_data)
        results.update((r.name, r) for r in scored)
        verdicts.append(score_verdict)
    others = [r for r in results.values() if r.name not in {m.name for m, _ in compared}]
    if others or not compared:
        verdicts.append(run_verdict(others))
    final = [results[m.name] for m in request.metrics]
    return final, run_verdict(MetricResult(name="run", verdict=v) for v in verdicts)
