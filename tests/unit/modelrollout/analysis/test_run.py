from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelrollout.analysis.provider import QueryResult
from modelrollout.analysis.request import AnalysisRequest
from modelrollout.analysis.run import run_analysis
from modelrollout.api.analysis import AnalysisMetric, JudgeType
from modelrollout.api.status import RevisionRef

STABLE = RevisionRef(revision="aaaa1111", version="6")
CANARY = RevisionRef(revision="bbbb2222", version="7")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class TableProvider:
    """A MetricProvider answering from a table keyed by a fragment of the query (the first that matches)."""

    table: list[tuple[str, QueryResult]]
    asked: Counter[str] = field(default_factory=Counter)

    async def query(self, promql: str) -> QueryResult:
        self.asked[promql] += 1
        for fragment, result in self.table:
            if fragment in promql:
                return result
        return QueryResult.empty()


class Exploding:
    async def query(self, promql: str) -> QueryResult:
        raise RuntimeError("provider bug")


def m(**fields: Any) -> AnalysisMetric:
    return AnalysisMetric.model_validate(fields)


def request(*metrics: AnalysisMetric, judge: JudgeType = "threshold", **overrides: Any) -> AnalysisRequest:
    fields: dict[str, Any] = {
        "kind": "Step",
        "step": 2,
        "canary": CANARY,
        "stable": STABLE,
        "metrics": metrics,
        "window_seconds": 60,
        "no_data": "inconclusive",
        "min_requests": 20,
        "min_comparisons": 100,
        "judge": judge,
    }
    fields.update(overrides)
    return AnalysisRequest(**fields)


async def run(provider: Any, req: AnalysisRequest, scrape: float = 1.0) -> Any:
    return await run_analysis(
        provider, req, namespace="prod", name="churn", model="churn", scrape_interval_seconds=scrape, now=T0
    )


SERVER_TABLE = [
    ("increase(modelserver_requests_total", QueryResult.of(300)),
    (
        'histogram_quantile(0.95, sum by (le) (rate(modelserver_request_duration_seconds_bucket{namespace="prod",'
        'model="churn",version="7"}',
        QueryResult.of(0.12),
    ),
    ('version="6"}[60s])))', QueryResult.of(0.1)),
    ("code!~", QueryResult.of(0.001)),
]


async def test_a_run_judges_each_metric_and_takes_the_worst() -> None:
    provider = TableProvider(SERVER_TABLE)
    outcome = await run(
        provider,
        request(
            m(name="p95", builtin="latencyP95", max=0.2),
            m(name="vs-stable", builtin="latencyP95", relativeToStable={"maxIncrease": 0.1}),
            m(name="errors", builtin="errorRate", max=0.01),
        ),
    )
    run_ = outcome.run
    assert [(r.name, r.verdict) for r in run_.metrics] == [
        ("p95", "Successful"),
        ("vs-stable", "Failed"),  # 0.12 > 0.1 * 1.1
        ("errors", "Successful"),
    ]
    assert run_.metrics[1].stable_value == 0.1
    assert run_.verdict == "Failed"
    assert (run_.at, run_.kind, run_.step) == (T0, "Step", 2)
    assert outcome.request.step == 2


async def test_each_distinct_query_is_asked_once() -> None:
    provider = TableProvider(SERVER_TABLE)
    await run(
        provider,
        request(
            m(name="p95", builtin="latencyP95", max=0.2),
            m(name="p95-again", builtin="latencyP95", min=0.0),
            m(name="rate", builtin="requestRate", min=1),
        ),
    )
    assert set(provider.asked.values()) == {1}
    # p95, request rate, the shared request count, and the canary's requests over the last 4 scrapes
    assert len(provider.asked) == 4


async def test_no_promotion_when_the_canary_had_no_request_lately() -> None:
    # The window holds 300 requests, but none in the last 4 scrapes: a traffic gap must never promote.
    provider = TableProvider([("[4s]", QueryResult.of(0)), *SERVER_TABLE])
    outcome = await run(provider, request(m(name="p95", builtin="latencyP95", max=0.2)))
    assert outcome.run.verdict == "Inconclusive"
    assert "traffic gap" in (outcome.run.metrics[0].message or "")
    failing = await run(
        TableProvider([("[4s]", QueryResult.of(0)), *SERVER_TABLE]),
        request(m(name="p95", builtin="latencyP95", max=0.1)),
    )
    assert failing.run.verdict == "Failed"  # ...but a failure still counts


async def test_the_stable_revision_is_only_queried_for_relative_bounds() -> None:
    provider = TableProvider(SERVER_TABLE)
    await run(provider, request(m(name="p95", builtin="latencyP95", max=0.2)))
    assert not any('version="6"' in q for q in provider.asked)


async def test_without_a_stable_revision_a_relative_bound_follows_the_no_data_policy() -> None:
    outcome = await run(
        TableProvider(SERVER_TABLE),
        request(m(name="vs", builtin="latencyP95", relativeToStable={"maxIncrease": 0.1}), stable=None),
    )
    assert outcome.run.metrics[0].verdict == "Inconclusive"


async def test_shadow_metrics_count_comparisons_against_min_comparisons() -> None:
    table = [
        ('increase(modelrouter_shadow_comparisons_total{namespace="prod",route="churn"}', QueryResult.of(99)),
        ('result="agree"', QueryResult.of(0.99)),
    ]
    outcome = await run(TableProvider(table), request(m(name="agree", builtin="shadowAgreement", min=0.98)))
    result = outcome.run.metrics[0]
    assert result.verdict == "Inconclusive"
    assert result.message == (
        "only 99 shadow comparisons in the window, fewer than the 100 needed (noData: inconclusive)"
    )


async def test_shadow_metrics_cannot_be_relative_to_stable() -> None:
    metric = m(name="agree", builtin="shadowAgreement", relativeToStable={"maxDecrease": 0.1})
    provider = TableProvider([])
    outcome = await run(provider, request(metric))
    assert outcome.run.metrics[0].verdict == "Error"
    assert "measured per route" in (outcome.run.metrics[0].message or "")
    assert not provider.asked


async def test_custom_queries_are_filled_with_the_clamped_window() -> None:
    provider = TableProvider([("increase(", QueryResult.of(50)), ("my_metric", QueryResult.of(3))])
    metric = m(name="custom", query='sum(rate(my_metric{v="{{version}}",r="{{revision}}"}[{{interval}}]))', min=1)
    outcome = await run(provider, request(metric, window_seconds=10), scrape=15)
    assert 'sum(rate(my_metric{v="7",r="bbbb2222"}[60s]))' in provider.asked
    assert outcome.run.verdict == "Successful"


async def test_a_bad_placeholder_is_an_error_for_that_metric_only() -> None:
    provider = TableProvider(SERVER_TABLE)
    outcome = await run(
        provider, request(m(name="bad", query="x{{{oops}}}", max=1), m(name="p95", builtin="latencyP95", max=1))
    )
    assert [r.verdict for r in outcome.run.metrics] == ["Error", "Successful"]
    assert outcome.run.verdict == "Error"


async def test_a_provider_that_raises_gives_error_verdicts() -> None:
    outcome = await run(Exploding(), request(m(name="p95", builtin="latencyP95", max=1)))
    assert outcome.run.verdict == "Error"
    assert "RuntimeError: provider bug" in (outcome.run.metrics[0].message or "")


async def test_a_run_without_metrics_decides_nothing() -> None:
    outcome = await run(TableProvider([]), request())
    assert outcome.run.verdict == "Inconclusive"
    assert outcome.run.metrics == []


async def test_a_stream_run_reads_the_consumers_series_only() -> None:
    provider = TableProvider(
        [
            ("increase(modelserver_stream_records_total", QueryResult.of(5000)),
            ('result=~"dead_lettered|dropped"', QueryResult.of(0.002)),
            ("deriv(sum(modelserver_stream_consumer_lag", QueryResult.of(-3.0)),
        ]
    )
    outcome = await run_analysis(
        provider,
        request(m(name="errors", builtin="errorRate", max=0.01), m(name="lag", builtin="lagGrowth", max=0)),
        namespace="prod",
        name="churn",
        model="churn",
        scrape_interval_seconds=1.0,
        now=T0,
        mode="stream",
    )
    assert [(r.name, r.verdict, r.value) for r in outcome.run.metrics] == [
        ("errors", "Successful", 0.002),
        ("lag", "Successful", -3.0),
    ]
    assert provider.asked, "the run asked Prometheus"
    assert all("modelserver_stream_" in q for q in provider.asked), list(provider.asked)
    assert all(f'revision="{CANARY.revision}"' in q for q in provider.asked), "the candidate's consumers"
