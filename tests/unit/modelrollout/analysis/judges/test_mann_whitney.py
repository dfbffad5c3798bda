"""The mannWhitney judge against hand-computed Hodges-Lehmann intervals, U statistics and Kayenta scores."""

from __future__ import annotations

import math

import pytest

from modelrollout.analysis.judges.mann_whitney import Comparison, Scored, compare, hodges_lehmann, run_verdict, score


def test_hodges_lehmann_shift_by_hand() -> None:
    # Differences canary - stable of [1..5] and [0, 1, 2]: -1 0 0 1 1 1 2 2 2 3 3 3 4 4 5, median 2. With 5 and
    # 3 points k = floor(7.5 - 1.96 * sqrt(15 * 9 / 12)) = 0: no 95% interval exists, its ends are infinite.
    assert hodges_lehmann([1, 2, 3, 4, 5], [0, 1, 2], 0.05) == (2.0, -math.inf, math.inf)


def test_hodges_lehmann_interval_by_hand() -> None:
    # stable 1..6, canary 11..16: differences 10 + (i - j) are 5..15 with counts 1 2 3 4 5 6 5 4 3 2 1.
    # k = floor(18 - 1.96 * sqrt(36 * 13 / 12)) = floor(5.76) = 5: the interval is [d(5), d(32)] = [7, 13].
    assert hodges_lehmann([11, 12, 13, 14, 15, 16], [1, 2, 3, 4, 5, 6], 0.05) == (10.0, 7.0, 13.0)


def test_a_significant_large_increase_is_high_and_fails() -> None:
    c = compare([11, 12, 13, 14, 15, 16], [1, 2, 3, 4, 5, 6], alpha=0.05, max_increase=0.1, max_decrease=None)
    assert (c.classification, c.failed) == ("High", True)
    assert c.u == 36  # every canary point above every stable one: U = n * m
    assert c.p_value == pytest.approx(2 / math.comb(12, 6))  # exact two-sided: 2 of the 924 orderings
    assert c.relative == pytest.approx(10 / 3.5)
    assert c.evidence()["nCanary"] == 6


def test_the_effect_size_band_tolerates_small_significant_shifts() -> None:
    stable = [100, 101, 102, 103, 104, 105]
    canary = [x + 10 for x in stable]  # +10 on a median of 102.5: significant, but under +20%
    assert compare(canary, stable, alpha=0.05, max_increase=0.2, max_decrease=None).classification == "Pass"
    assert compare(canary, stable, alpha=0.05, max_increase=0.05, max_decrease=None).failed


def test_a_shift_in_the_harmless_direction_does_not_fail() -> None:
    c = compare([1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16], alpha=0.05, max_increase=0.1, max_decrease=None)
    assert (c.classification, c.failed) == ("Low", False)


def test_too_few_points_is_no_data() -> None:
    c = compare([1, 2], [1, 2, 3], alpha=0.05, max_increase=0.1, max_decrease=None)
    assert c.classification == "NoData"
    assert run_verdict([Scored("g", 1, c)], pass_score=95, marginal_score=75) == ("Inconclusive", None)


def _c(failed: bool) -> Comparison:
    return Comparison("High" if failed else "Pass", failed, 10, 10)


def test_kayenta_score_with_groups_and_weights() -> None:
    # latency: 2 metrics weighing 1 + 3 = 4, one fails -> 4 * 1/2; errors: weight 4, passes -> 4. 6 / 8 = 75.
    items = [Scored("latency", 1, _c(False)), Scored("latency", 3, _c(True)), Scored("errors", 4, _c(False))]
    assert score(items) == 75
    assert run_verdict(items, pass_score=95, marginal_score=75) == ("Inconclusive", 75)
    assert run_verdict(items, pass_score=75, marginal_score=50) == ("Successful", 75)
    assert run_verdict(items, pass_score=95, marginal_score=80) == ("Failed", 75)


def test_a_critical_metric_fails_the_run_whatever_the_score() -> None:
    items = [Scored(f"m{i}", 10, _c(False)) for i in range(9)] + [Scored("errors", 1, _c(True), critical=True)]
    value = score(items)
    assert value is not None
    assert value > 95
    assert run_verdict(items, pass_score=95, marginal_score=75)[0] == "Failed"
