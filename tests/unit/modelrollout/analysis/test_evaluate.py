from __future__ import annotations

import math
from typing import Any

import pytest

from modelrollout.analysis.evaluate import clip, evaluate_metric, run_verdict
from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import AnalysisMetric, NoDataPolicy
from modelrollout.api.status import MetricResult, Verdict

OK_SAMPLES = QueryResult.of(500)


def metric(**bounds: Any) -> AnalysisMetric:
    return AnalysisMetric(name="m", builtin="latencyP95", **bounds)


def evaluate(
    m: AnalysisMetric,
    canary: QueryResult,
    *,
    stable: QueryResult | None = None,
    samples: QueryResult = OK_SAMPLES,
    min_samples: int = 20,
    no_data: NoDataPolicy = "inconclusive",
) -> MetricResult:
    return evaluate_metric(m, canary=canary, stable=stable, samples=samples, min_samples=min_samples, no_data=no_data)


@pytest.mark.parametrize(
    ("bounds", "value", "verdict"),
    [
        ({"max": 0.2}, 0.1, "Successful"),
        ({"max": 0.2}, 0.2, "Successful"),  # bounds are inclusive
        ({"max": 0.2}, 0.21, "Failed"),
        ({"min": 1}, 1.0, "Successful"),
        ({"min": 1}, 0.5, "Failed"),
        ({"min": 1, "max": 2}, 1.5, "Successful"),
        ({"min": 1, "max": 2}, 2.5, "Failed"),
        ({"min": 1, "max": 2}, 0.0, "Failed"),
        ({"max": 10}, math.inf, "Failed"),  # +Inf: the quantile fell beyond the last bucket
        ({"min": 0}, math.inf, "Failed"),  # never a pass, whatever the bound
    ],
)
def test_absolute_bounds(bounds: dict[str, float], value: float, verdict: Verdict) -> None:
    result = evaluate(metric(**bounds), QueryResult.of(value))
    assert result.verdict == verdict
    assert result.name == "m"


@pytest.mark.parametrize(
    ("relative", "canary", "stable", "verdict"),
    [
        ({"maxIncrease": 0.1}, 0.11, 0.1, "Successful"),
        ({"maxIncrease": 0.1}, 0.111, 0.1, "Failed"),
        ({"maxIncrease": 0.1}, 0.05, 0.1, "Successful"),  # faster is fine
        ({"maxDecrease": 0.5}, 40.0, 100.0, "Failed"),
        ({"maxDecrease": 0.5}, 60.0, 100.0, "Successful"),
        ({"maxIncrease": 0.1}, 0.0, 0.0, "Successful"),  # 0 vs 0: no increase
        ({"maxIncrease": 0.1}, 0.01, 0.0, "Failed"),  # anything over a stable 0 is an increase
        ({"maxIncrease": 0.1, "maxDecrease": 0.1}, 1.05, 1.0, "Successful"),
        ({"maxIncrease": 0.1, "maxDecrease": 0.1}, 0.8, 1.0, "Failed"),
    ],
)
def test_bounds_relative_to_stable(relative: dict[str, float], canary: float, stable: float, verdict: Verdict) -> None:
    m = AnalysisMetric.model_validate({"name": "m", "builtin": "latencyP95", "relativeToStable": relative})
    result = evaluate(m, QueryResult.of(canary), stable=QueryResult.of(stable))
    assert result.verdict == verdict
    assert result.value == canary
    assert result.stable_value == stable


def test_a_failure_says_why_and_keeps_the_evidence() -> None:
    m = AnalysisMetric.model_validate(
        {"name": "m", "builtin": "latencyP95", "max": 0.2, "relativeToStable": {"maxIncrease": 0.1}}
    )
    result = evaluate(m, QueryResult.of(0.3), stable=QueryResult.of(0.1))
    assert result.verdict == "Failed"
    assert result.message is not None
    assert "0.3 is above max 0.2" in result.message
    assert "exceeds stable 0.1 by more than 10%" in result.message
    assert result.evidence == pytest.approx(
        {"max": 0.2, "maxAllowed": 0.11, "value": 0.3, "stable": 0.1, "samples": 500.0}
    )


_CAUSES = {
    "empty": {"canary": QueryResult.empty()},
    "nan": {"canary": QueryResult.of(math.nan)},
    "few-requests": {"canary": QueryResult.of(0.1), "samples": QueryResult.of(19)},
    "no-requests-series": {"canary": QueryResult.of(0.1), "samples": QueryResult.empty()},
    "no-stable-value": {
        "canary": QueryResult.of(0.1),
        "stable": QueryResult.empty(),
        "metric": {"relativeToStable": {"maxIncrease": 0.1}},
    },
    "no-stable-revision": {"canary": QueryResult.of(0.1), "metric": {"relativeToStable": {"maxIncrease": 0.1}}},
}
_POLICIES: dict[NoDataPolicy, Verdict] = {"inconclusive": "Inconclusive", "fail": "Failed", "pass": "Successful"}


@pytest.mark.parametrize("policy", list(_POLICIES))
@pytest.mark.parametrize("cause", list(_CAUSES))
def test_the_no_data_policy_decides_every_kind_of_missing_data(cause: str, policy: NoDataPolicy) -> None:
    case = dict(_CAUSES[cause])
    m = AnalysisMetric.model_validate({"name": "m", "builtin": "latencyP95", **case.pop("metric", {"max": 1.0})})
    result = evaluate(m, no_data=policy, **case)
    assert result.verdict == _POLICIES[policy]
    assert result.message is not None
    assert f"(noData: {policy})" in result.message


def test_too_little_traffic_is_no_data_even_when_the_value_would_fail() -> None:
    result = evaluate(metric(max=0.2), QueryResult.of(5.0), samples=QueryResult.of(3), min_samples=20)
    assert result.verdict == "Inconclusive"
    assert result.message == "only 3 requests in the window, fewer than the 20 needed (noData: inconclusive)"
    assert result.evidence == {"samples": 3.0, "minSamples": 20.0}


def test_min_samples_zero_accepts_a_window_without_a_count() -> None:
    result = evaluate(metric(max=0.2), QueryResult.of(0.1), samples=QueryResult.empty(), min_samples=0)
    assert result.verdict == "Successful"


@pytest.mark.parametrize("failing", ["canary", "stable", "samples"])
def test_a_failed_query_is_an_error_naming_which(failing: str) -> None:
    m = AnalysisMetric.model_validate({"name": "m", "builtin": "latencyP95", "relativeToStable": {"maxIncrease": 1}})
    results = {"canary": QueryResult.of(1), "stable": QueryResult.of(1), "samples": OK_SAMPLES}
    results[failing] = QueryResult.failed("connection refused")
    result = evaluate(m, results["canary"], stable=results["stable"], samples=results["samples"])
    assert result.verdict == "Error"
    assert result.message is not None
    assert result.message.startswith("query for ")
    assert "connection refused" in result.message
    assert (failing if failing != "samples" else "requests") in result.message


def test_non_finite_numbers_never_reach_status() -> None:
    result = evaluate(metric(max=1.0), QueryResult.of(math.inf))
    assert result.value is None
    assert result.evidence is not None
    assert "value" not in result.evidence
    assert result.message == "inf is above max 1"


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "Inconclusive"),
        (["Successful"], "Successful"),
        (["Successful", "Inconclusive"], "Inconclusive"),
        (["Inconclusive", "Error"], "Error"),
        (["Error", "Failed", "Successful"], "Failed"),
        (["Successful", "Successful"], "Successful"),
    ],
)
def test_a_run_is_as_bad_as_its_worst_metric(verdicts: list[Verdict], expected: Verdict) -> None:
    results = [MetricResult(name=f"m{i}", verdict=v) for i, v in enumerate(verdicts)]
    assert run_verdict(results) == expected


def test_long_messages_are_clipped_to_the_status_limit() -> None:
    assert clip("x" * 2000) == "x" * 1023 + "…"
    assert clip("short") == "short"
    result = evaluate(metric(max=1), QueryResult.failed("e" * 5000))
    assert result.message is not None
    assert len(result.message) == 1024
