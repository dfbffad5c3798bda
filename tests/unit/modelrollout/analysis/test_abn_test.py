"""The A/B/n test's decision: Holm's procedure and Bonferroni's e-value threshold by hand, the winner rule, and, by
simulation, that the correction keeps false winners at alpha where k uncorrected tests do not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelrollout.analysis import abn_test
from modelrollout.analysis.ab_test import Arm, two_proportion_p_value
from modelrollout.api.rollout import AbTestSettings


def settings(**overrides: Any) -> AbTestSettings:
    body = {"routeBy": {"header": "x-user-id"}, "successMetric": {"successes": "s", "trials": "t"}, **overrides}
    return AbTestSettings.model_validate(body)


def raw(**p_values: float | None) -> dict[str, tuple[float | None, float | None]]:
    return {name: (0.01, p) for name, p in p_values.items()}


@pytest.mark.parametrize(
    ("p_values", "rejected"),
    [
        ({"b": 0.01, "c": 0.02, "d": 0.04}, {"b", "c", "d"}),  # 0.01 < .05/3, 0.02 < .05/2, 0.04 < .05
        ({"b": 0.01, "c": 0.03, "d": 0.04}, {"b"}),  # 0.03 >= .025: stop, and d is not tested
        ({"b": 0.02, "c": 0.001, "d": 0.9}, {"c", "b"}),  # .001 < .05/3, then .02 < .05/2, then .9 >= .05
        ({"b": 0.026, "c": 0.001, "d": 0.03}, {"c"}),  # .026 >= .025 stops it, though .03 < .05
        ({"b": 0.0167, "c": 0.5, "d": 0.5}, set()),  # 0.0167 >= 0.05/3 = 0.016667
        ({"b": 0.001, "c": None, "d": None}, {"b"}),  # c and d have no data yet but still count in k
        ({"b": 0.02, "c": None, "d": None}, set()),  # which is why 0.02 is not enough: alpha/3
    ],
)
def test_holms_step_down_by_hand(p_values: dict[str, float | None], rejected: set[str]) -> None:
    thresholds, passed = abn_test.holm(raw(**p_values), 3, 0.05)
    assert passed == rejected
    ordered = sorted((p, n) for n, p in p_values.items() if p is not None)
    assert [thresholds[n] for _, n in ordered] == pytest.approx([0.05 / 3, 0.05 / 2, 0.05][: len(ordered)])


def test_bonferroni_on_e_values_needs_k_over_alpha() -> None:
    thresholds, passed = abn_test.bonferroni_e(raw(b=59.9, c=60.0, d=None), 3, 0.05)
    assert thresholds == {"b": pytest.approx(60.0), "c": pytest.approx(60.0)}
    assert passed == {"c"}


def arms(**counts: tuple[int, int]) -> dict[str, Arm]:
    return {name: Arm(*c) for name, c in counts.items()}


def test_the_best_of_the_significantly_better_variants_wins() -> None:
    counts = arms(a=(1000, 10_000), b=(1150, 10_000), c=(1250, 10_000), d=(1010, 10_000))
    result = abn_test.evaluate("a", counts, settings(minSamples=1000))
    by = {c.variant: c for c in result.comparisons}
    assert by["b"].better
    assert by["c"].better
    assert not by["d"].significant
    assert by["c"].effect == pytest.approx(0.025)
    assert by["c"].statistic == pytest.approx(two_proportion_p_value(counts["a"], counts["c"]))
    assert result.winner == "c"
    text = abn_test.describe(result, counts, settings())
    assert "winner c (Holm, family-wise alpha 0.05)" in text
    assert "c 12.50% (+2.50 points, p " in text


def test_the_control_wins_only_when_every_variant_is_significantly_worse() -> None:
    worse = arms(a=(1300, 10_000), b=(1000, 10_000), c=(1050, 10_000))
    assert abn_test.evaluate("a", worse, settings()).winner == "a"
    mixed = arms(a=(1300, 10_000), b=(1000, 10_000), c=(1290, 10_000))
    assert abn_test.evaluate("a", mixed, settings()).winner is None


def test_no_decision_below_min_samples_or_without_trials() -> None:
    few = arms(a=(100, 900), b=(300, 900), c=(100, 900))
    assert abn_test.evaluate("a", few, settings(minSamples=1000)).winner is None
    assert abn_test.evaluate("a", few, settings(minSamples=900)).winner == "b"
    empty = abn_test.evaluate("a", arms(a=(0, 0), b=(5, 10)), settings(minSamples=1))
    assert (empty.comparisons[0].effect, empty.comparisons[0].statistic, empty.winner) == (None, None, None)


def test_sequential_uses_the_e_value_against_k_over_alpha() -> None:
    counts = arms(a=(1000, 10_000), b=(1150, 10_000), c=(1000, 10_000))
    result = abn_test.evaluate("a", counts, settings(test="sequential", minSamples=1000))
    by = {c.variant: c for c in result.comparisons}
    assert by["b"].threshold == pytest.approx(2 / 0.05)
    assert by["b"].statistic is not None
    assert by["b"].better is (by["b"].statistic >= 40)
    assert not by["c"].significant
    assert "Bonferroni on e-values" in abn_test.describe(result, counts, settings(test="sequential"))


def test_a_missing_control_or_no_variant_is_an_error() -> None:
    with pytest.raises(ValueError, match="the control 'z' has no arm"):
        abn_test.evaluate("z", arms(a=(1, 2)), settings())
    with pytest.raises(ValueError, match="at least one variant"):
        abn_test.evaluate("a", arms(a=(1, 2)), settings())


def test_the_correction_keeps_false_winners_at_alpha_where_uncorrected_tests_do_not() -> None:
    # Three variants, all exactly as good as the control (10%): any winner is false. 4,000 simulated tests.
    rng = np.random.default_rng(2026)
    n, rate, sims, k = 5_000, 0.10, 4_000, 3
    successes = rng.binomial(n, rate, size=(sims, k + 1))
    corrected = uncorrected = 0
    for row in successes:
        counts = {"control": Arm(int(row[0]), n)} | {f"v{i}": Arm(int(row[i + 1]), n) for i in range(k)}
        result = abn_test.evaluate("control", counts, settings(minSamples=1))
        corrected += any(c.significant for c in result.comparisons)
        uncorrected += any(two_proportion_p_value(counts["control"], counts[f"v{i}"]) < 0.05 for i in range(k))
    # Family-wise error: at most alpha with Holm (binomial sd on 4,000 at 5%: 0.34 points); about 12% uncorrected
    # (less than 1 - .95^3 = 14.3%, the comparisons share the control).
    assert corrected / sims <= 0.05 + 3 * 0.0035, corrected / sims
    assert uncorrected / sims >= 0.10, uncorrected / sims
