"""run_analysis with the sequential and mannWhitney judges: the queries they ask, the state carried in status."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from modelrollout.analysis.judged import RAW_KEYS, max_rate
from modelrollout.analysis.judges.sequential import STATE_KEYS
from modelrollout.analysis.provider import QueryResult
from modelrollout.analysis.request import AnalysisRequest
from modelrollout.analysis.run import run_analysis
from modelrollout.api.analysis import Judge
from modelrollout.api.status import AnalysisRun
from tests.unit.modelrollout.analysis.test_run import T0, m, request


@dataclass
class Counters:
    """Cumulative counters per version, answering the sequential judge's raw-sum queries, and `window`: the
    increases over a rate window (the test's first run, the traffic-gap rule); unset, they are the sums (all the
    traffic came within the window)."""

    values: dict[tuple[str, str], float] = field(default_factory=dict)  # (version, bad|total) -> value
    asked: list[str] = field(default_factory=list)
    window: dict[tuple[str, str], float] | None = None

    async def query(self, promql: str) -> QueryResult:
        self.asked.append(promql)
        version = re.search(r'version="(\d+)"', promql)
        assert version is not None
        kind = "bad" if ('code!~"2.."' in promql or " - " in promql) else "total"
        if "increase(" in promql and self.window is not None:
            return QueryResult.of(self.window[(version.group(1), kind)])
        return QueryResult.of(self.values[(version.group(1), kind)])


async def analyse(provider: Any, req: AnalysisRequest, previous: list[AnalysisRun], minutes: int) -> AnalysisRun:
    outcome = await run_analysis(
        provider,
        req,
        namespace="prod",
        name="churn",
        model="churn",
        scrape_interval_seconds=15,
        now=T0 + timedelta(minutes=minutes),
        previous=previous,
    )
    return outcome.run


def seq_request(*, limit: float | None = 0.05, **judge: Any) -> AnalysisRequest:
    bounds: dict[str, Any] = {"max": limit} if limit is not None else {"relativeToStable": {"maxIncrease": 0.5}}
    metric = m(name="errors", builtin="errorRate", **bounds)
    return request(metric, judge="sequential", judge_settings=Judge(type="sequential", **judge))


async def test_sequential_counts_raw_counters_and_carries_its_state_in_status() -> None:
    counters = Counters({("7", "bad"): 5, ("7", "total"): 500, ("6", "bad"): 40, ("6", "total"): 4000})
    counters.window = dict.fromkeys(counters.values, 0.0)  # no canary traffic in the window before the first run
    first = await analyse(counters, seq_request(), [], 0)
    assert first.verdict == "Inconclusive"
    assert "starts" in (first.metrics[0].message or "")
    evidence = first.metrics[0].evidence or {}
    assert [evidence[k] for k in RAW_KEYS] == [5, 500, 40, 4000]
    assert all(evidence[k] == 0 for k in STATE_KEYS)
    assert any('code!~"2.."' in q and 'version="7"' in q and "increase" not in q for q in counters.asked)
    assert "starts" in (first.metrics[0].message or "")  # its window had no data: the test starts from the sums

    # The canary then fails 30 of 1000 requests while stable fails 90 of 9000: 3x stable's rate.
    counters.values = {("7", "bad"): 35, ("7", "total"): 1500, ("6", "bad"): 130, ("6", "total"): 13000}
    second = await analyse(counters, seq_request(), [first], 1)
    result = second.metrics[0]
    evidence = result.evidence or {}
    assert (evidence["canaryBad"], evidence["canaryRequests"], evidence["stableBad"]) == (30, 1000, 90)
    assert result.verdict == "Failed", result.message
    assert second.verdict == "Failed"
    assert evidence["logEvidence"] >= evidence["logThreshold"]
    assert result.value == 0.03
    assert result.stable_value == 0.01


async def test_sequential_promotes_a_healthy_canary_and_never_in_a_gap() -> None:
    counters = Counters({("7", "bad"): 0, ("7", "total"): 0, ("6", "bad"): 0, ("6", "total"): 0})
    runs = [await analyse(counters, seq_request(limit=None), [], 0)]
    canary_bad = canary_total = stable_bad = stable_total = 0.0
    verdicts = []
    for minute in range(1, 40):
        canary_total += 5000
        canary_bad += 50  # exactly stable's 1%
        stable_total += 5000
        stable_bad += 50
        counters.values = {
            ("7", "bad"): canary_bad,
            ("7", "total"): canary_total,
            ("6", "bad"): stable_bad,
            ("6", "total"): stable_total,
        }
        runs.append(await analyse(counters, seq_request(limit=None), runs[-10:], minute))
        verdicts.append(runs[-1].verdict)
        if runs[-1].verdict == "Successful":
            break
    assert verdicts[-1] == "Successful"
    assert "Failed" not in verdicts
    assert (runs[-1].metrics[0].evidence or {})["ratioUpper"] < 1.5
    # No new canary request (a zero-traffic gap): the same confident state, but no promotion.
    gap = await analyse(counters, seq_request(limit=None), runs[-10:], 60)
    assert gap.verdict == "Inconclusive"
    assert "fewer than" in (gap.metrics[0].message or "")


async def test_sequential_first_run_counts_its_window_and_can_already_decide() -> None:
    # The window before the first run: 30 of 1000 canary requests failed, 90 of 9000 on stable (3x its rate).
    counters = Counters({("7", "bad"): 35, ("7", "total"): 1500, ("6", "bad"): 130, ("6", "total"): 13000})
    counters.window = {("7", "bad"): 30, ("7", "total"): 1000, ("6", "bad"): 90, ("6", "total"): 9000}
    first = await analyse(counters, seq_request(), [], 0)
    result = first.metrics[0]
    assert any("increase(modelserver_requests_total" in q and "[60s]" in q for q in counters.asked)
    assert result.verdict == "Failed", result.message
    assert "starts on the last window" in (result.message or "")
    evidence = result.evidence or {}
    assert (evidence["canaryBad"], evidence["canaryRequests"], evidence["stableBad"]) == (30, 1000, 90)
    assert [evidence[k] for k in RAW_KEYS] == [35, 1500, 130, 13000]  # the next run counts from the sums
    asked = len(counters.asked)
    second = await analyse(counters, seq_request(), [first], 1)
    assert not any("increase(" in q and 'code!~"2.."' in q for q in counters.asked[asked:])  # sums only now
    assert (second.metrics[0].evidence or {})["canaryRequests"] == 1000  # nothing new, nothing counted twice


async def test_sequential_passes_a_clean_canary_on_its_own_rate_when_stable_is_clean_too() -> None:
    # Stable and canary both without a single error; 2,000 canary requests, errors max 1%: the comparison with
    # stable has nothing to compare, the canary's own bound (4.508 / 2000 = 0.00225 at alpha 0.05) passes it.
    counters = Counters({("7", "bad"): 0, ("7", "total"): 0, ("6", "bad"): 0, ("6", "total"): 0})
    first = await analyse(counters, seq_request(limit=0.01), [], 0)
    counters.values = {("7", "bad"): 0, ("7", "total"): 2000, ("6", "bad"): 0, ("6", "total"): 8000}
    second = await analyse(counters, seq_request(limit=0.01), [first], 1)
    result = second.metrics[0]
    assert result.verdict == "Successful", result.message
    evidence = result.evidence or {}
    assert evidence["rateUpper"] == pytest.approx(0.002254, abs=2e-6)
    assert (evidence["canaryBad"], evidence["canaryRequests"], evidence["rateLimit"]) == (0, 2000, 0.01)
    assert "at most 0.00225 (0 of 2000 requests) <= 0.01" in (result.message or "")

    # Without max nothing can promote it, and the message says why.
    plain = await analyse(counters, seq_request(limit=None), [first], 1)
    assert plain.verdict == "Inconclusive"
    assert "0 bad events to compare with" in (plain.metrics[0].message or "")
    assert "has no max" in (plain.metrics[0].message or "")


async def test_sequential_canary_counts_survive_a_restart_in_status() -> None:
    # 5 of 300 canary requests failed (1.7%): not below max 1%, whatever stable does.
    counters = Counters({("7", "bad"): 0, ("7", "total"): 0, ("6", "bad"): 0, ("6", "total"): 0})
    first = await analyse(counters, seq_request(limit=0.01), [], 0)
    counters.values = {("7", "bad"): 5, ("7", "total"): 300, ("6", "bad"): 0, ("6", "total"): 1200}
    second = await analyse(counters, seq_request(limit=0.01), [first], 1)
    assert second.metrics[0].verdict != "Successful"
    assert (second.metrics[0].evidence or {})["rateUpper"] > 0.01
    # A new operator process knows only status: the next run adds its window to the counts stored there.
    stored = AnalysisRun.model_validate(second.model_dump(mode="json", by_alias=True))
    counters.values = {("7", "bad"): 5, ("7", "total"): 20_300, ("6", "bad"): 0, ("6", "total"): 81_200}
    third = await analyse(counters, seq_request(limit=0.01), [first, stored], 2)
    evidence = third.metrics[0].evidence or {}
    assert (evidence["canaryBad"], evidence["canaryRequests"]) == (5, 20_300)
    assert evidence["rateUpper"] < 0.01


async def test_sequential_counts_restarts_as_resets() -> None:
    counters = Counters({("7", "bad"): 10, ("7", "total"): 1000, ("6", "bad"): 10, ("6", "total"): 1000})
    counters.window = dict.fromkeys(counters.values, 0.0)
    first = await analyse(counters, seq_request(), [], 0)
    counters.values = {("7", "bad"): 2, ("7", "total"): 200, ("6", "bad"): 20, ("6", "total"): 2000}
    second = await analyse(counters, seq_request(), [first], 1)
    evidence = second.metrics[0].evidence or {}
    assert (evidence["canaryBad"], evidence["canaryRequests"]) == (2, 200)  # the canary's pod restarted
    assert (evidence["stableBad"], evidence["stableRequests"]) == (10, 1000)


async def test_sequential_latency_counts_requests_slower_than_a_bucket_edge() -> None:
    counters = Counters({("7", "bad"): 0, ("7", "total"): 0, ("6", "bad"): 0, ("6", "total"): 0})
    metric = m(name="p99", builtin="latencyP99", max=0.25)
    await analyse(counters, request(metric, judge="sequential"), [], 0)
    assert any(
        'modelserver_request_duration_seconds_bucket{namespace="prod",model="churn",version="7",le="0.25"}' in q
        for q in counters.asked
    )
    off_edge = await analyse(counters, request(m(name="p99", builtin="latencyP99", max=0.2), judge="sequential"), [], 0)
    assert off_edge.verdict == "Error"
    assert "not a bucket edge" in (off_edge.metrics[0].message or "")


async def test_sequential_judges_what_it_cannot_count_by_threshold() -> None:
    @dataclass
    class Rate:
        async def query(self, promql: str) -> QueryResult:
            return QueryResult.of(300)

    metric = m(name="rps", builtin="requestRate", min=1)
    run = await analyse(Rate(), request(metric, judge="sequential"), [], 0)
    assert run.verdict == "Successful"


@dataclass
class Points:
    """Answers mannWhitney's per-window queries: `canary` and `stable` values by offset index."""

    canary: list[float]
    stable: list[float]
    asked: list[str] = field(default_factory=list)

    async def query(self, promql: str) -> QueryResult:
        self.asked.append(promql)
        if "increase(modelserver_requests_total" in promql:
            return QueryResult.of(1000)
        offset = re.search(r"offset (\d+)s", promql)
        index = int(offset.group(1)) // 60 if offset else 0
        series = self.canary if 'version="7"' in promql else self.stable
        return QueryResult.of(series[index]) if index < len(series) else QueryResult.empty()


async def test_mann_whitney_compares_points_over_consecutive_windows() -> None:
    provider = Points(canary=[0.30, 0.31, 0.29, 0.32, 0.30, 0.33], stable=[0.10, 0.11, 0.09, 0.10, 0.12, 0.10])
    metric = m(name="p99", builtin="latencyP99", relativeToStable={"maxIncrease": 0.2})
    run = await analyse(provider, request(metric, judge="mannWhitney", window_seconds=60), [], 0)
    assert run.verdict == "Failed"
    assert any("[60s] offset 300s" in q for q in provider.asked)
    evidence = run.metrics[0].evidence or {}
    assert evidence["nCanary"] == 6
    assert evidence["score"] == 0
    healthy = Points(canary=[0.10, 0.11, 0.09, 0.10, 0.12, 0.10], stable=[0.11, 0.10, 0.10, 0.09, 0.11, 0.10])
    run = await analyse(healthy, request(metric, judge="mannWhitney", window_seconds=60), [], 0)
    assert run.verdict == "Successful"
    assert (run.metrics[0].evidence or {})["score"] == 100


async def test_mann_whitney_without_enough_points_never_promotes() -> None:
    provider = Points(canary=[0.1, 0.1], stable=[0.1] * 6)
    metric = m(name="p99", builtin="latencyP99", relativeToStable={"maxIncrease": 0.2})
    run = await analyse(provider, request(metric, judge="mannWhitney", window_seconds=60), [], 0)
    assert run.verdict == "Inconclusive"


async def test_mann_whitney_never_promotes_when_the_latest_window_is_empty() -> None:
    nan = float("nan")  # the latest window (offset 0) has no canary data; older ones look fine
    provider = Points(canary=[nan, 0.10, 0.11, 0.09, 0.10, 0.12], stable=[0.11, 0.10, 0.10, 0.09, 0.11, 0.10])
    metric = m(name="p99", builtin="latencyP99", relativeToStable={"maxIncrease": 0.2})
    run = await analyse(provider, request(metric, judge="mannWhitney", window_seconds=60), [], 0)
    assert run.verdict == "Inconclusive"
    assert "latest window" in (run.metrics[0].message or "")


async def test_sequential_metrics_share_alpha() -> None:
    counters = Counters({("7", "bad"): 0, ("7", "total"): 0, ("6", "bad"): 0, ("6", "total"): 0})
    metrics = (m(name="errors", builtin="errorRate", max=0.05), m(name="p99", builtin="latencyP99", max=0.25))
    first = await analyse(counters, request(*metrics, judge="sequential"), [], 0)
    second = await analyse(counters, request(*metrics, judge="sequential"), [first], 1)
    # Two tests at alpha 0.05 / 2 each: a healthy canary is rolled back by either with probability <= 0.05.
    assert [(r.evidence or {})["alpha"] for r in second.metrics] == [0.025, 0.025]


async def test_mann_whitney_points_are_rate_windows_whatever_the_run_window() -> None:
    provider = Points(canary=[0.10] * 6, stable=[0.10] * 6)
    metric = m(name="p99", builtin="latencyP99", relativeToStable={"maxIncrease": 0.2})
    await analyse(provider, request(metric, judge="mannWhitney", window_seconds=300), [], 0)
    windows = {re.search(r"\[(\d+)s\]( offset \d+s)?", q).group(0) for q in provider.asked if "histogram" in q}  # type: ignore[union-attr]
    assert windows == {"[60s]"} | {f"[60s] offset {60 * i}s" for i in range(1, 6)}


async def test_custom_queries_are_not_held_back_by_the_traffic_gap_rule() -> None:
    @dataclass
    class NoServerTraffic:
        async def query(self, promql: str) -> QueryResult:
            return QueryResult.of(0 if "modelserver_requests_total" in promql and "[60s]" in promql else 500)

    metric = m(name="lag", query="sum(stream_lag)", max=1000)
    run = await analyse(NoServerTraffic(), request(metric, min_requests=0), [], 0)
    assert run.verdict == "Successful"


def test_the_absolute_limit_each_metric_gives_the_sequential_judge() -> None:
    assert max_rate(m(name="e", builtin="errorRate", max=0.01)) == 0.01
    assert max_rate(m(name="e", builtin="errorRate", relativeToStable={"maxIncrease": 0.5})) is None
    # p99 at most 0.25 s is at most 1% of requests slower than 0.25 s (the bucket edge the judge counts at).
    assert max_rate(m(name="p", builtin="latencyP99", max=0.25)) == 0.01
    assert max_rate(m(name="p", builtin="latencyP95", max=0.25)) == 0.05
