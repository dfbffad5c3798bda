"""The A/B test's statistics, pinned against hand-computed and published values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelrollout.analysis import ab_test
from modelrollout.analysis.ab_test import Arm
from modelrollout.api.rollout import AbTestSettings


def settings(**overrides: Any) -> AbTestSettings:
    body = {"routeBy": {"header": "x-user-id"}, "successMetric": {"successes": "s", "trials": "t"}, **overrides}
    return AbTestSettings.model_validate(body)


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    interval = ab_test.newcombe_interval(Arm(48, 80), Arm(56, 70), 0.05)
    assert interval.low == pytest.approx(0.0524, abs=5e-5)
    assert interval.high == pytest.approx(0.3339, abs=5e-5)


def test_two_proportion_p_value_by_hand() -> None:
    # pooled 230/2000 = 0.115; se = sqrt(0.115 * 0.885 * 2/1000) = 0.0142671; z = 0.03 / se = 2.10274;
    # p = 2 * (1 - Phi(2.10274)) = 0.035488
    assert ab_test.two_proportion_p_value(Arm(100, 1000), Arm(130, 1000)) == pytest.approx(0.035488, abs=1e-5)
    assert ab_test.two_proportion_p_value(Arm(100, 1000), Arm(100, 1000)) == pytest.approx(1.0)
    assert ab_test.two_proportion_p_value(Arm(0, 50), Arm(0, 70)) == 1.0  # no variance: no evidence


def test_msprt_by_hand() -> None:
    # V = .2*.8/1000 + .26*.74/1000 = 3.524e-4; pooled .23 -> tau^2 = 0.01 * .23 * .77 = 1.771e-3;
    # ln e = 0.5 ln(V / (V + tau^2)) + d^2 tau^2 / (2 V (V + tau^2)) = -0.898003 + 4.260135 = 3.362131
    test = ab_test.msprt(Arm(200, 1000), Arm(260, 1000), 0.05)
    assert math.log(test.e_value) == pytest.approx(3.362131, abs=1e-5)
    # half width = sqrt(V (V + tau^2) / tau^2 * (2 ln 20 + ln((V + tau^2) / V))) = 0.057362
    assert test.interval is not None
    assert test.interval.low == pytest.approx(0.06 - 0.057362, abs=1e-5)
    assert test.interval.high == pytest.approx(0.06 + 0.057362, abs=1e-5)
    # Equal rates: evidence below 1 (the mixture's price), an interval around 0.
    same = ab_test.msprt(Arm(200, 1000), Arm(200, 1000), 0.05)
    assert same.e_value == pytest.approx(math.sqrt(3.2e-4 / (3.2e-4 + 0.0016)), rel=1e-9)
    assert same.interval is not None
    assert same.interval.low == pytest.approx(-same.interval.high)


def test_the_always_valid_interval_excludes_zero_exactly_when_the_test_rejects() -> None:
    for canary in range(200, 280, 5):
        test = ab_test.msprt(Arm(200, 1000), Arm(canary, 1000), 0.05)
        assert test.interval is not None
        assert (test.e_value >= 20) == (test.interval.low > 0 or test.interval.high < 0), canary


def test_a_winner_needs_significance_and_min_samples_in_both_variants() -> None:
    better = ab_test.evaluate(Arm(100, 1000), Arm(150, 1000), settings(minSamples=1000))
    assert better.winner == "canary"
    assert better.effect == pytest.approx(0.05)
    assert better.p_value is not None
    assert better.p_value < 0.05
    assert (better.samples_stable, better.samples_canary) == (1000, 1000)
    assert (better.rate_stable, better.rate_canary) == (0.1, 0.15)

    worse = ab_test.evaluate(Arm(150, 1000), Arm(100, 1000), settings(minSamples=1000))
    assert worse.winner == "stable"

    too_few = ab_test.evaluate(Arm(100, 1000), Arm(150, 999), settings(minSamples=1000))
    assert too_few.winner is None
    assert too_few.p_value is not None
    assert too_few.p_value < 0.05

    noise = ab_test.evaluate(Arm(100, 1000), Arm(110, 1000), settings(minSamples=100))
    assert noise.winner is None


def test_sequential_reports_an_e_value_and_no_p_value() -> None:
    result = ab_test.evaluate(Arm(200, 1000), Arm(260, 1000), settings(test="sequential", minSamples=500))
    assert result.winner == "canary"
    assert result.p_value is None
    assert result.e_value == pytest.approx(28.8506, abs=1e-3)


def test_no_trials_means_no_effect_and_no_winner() -> None:
    result = ab_test.evaluate(Arm(0, 0), Arm(5, 10), settings(minSamples=1))
    assert result.winner is None
    assert result.effect is None
    assert result.rate_stable is None
    assert result.rate_canary == 0.5


def test_counts_must_be_counts() -> None:
    with pytest.raises(ValueError, match="successes <= trials"):
        Arm(11, 10)


def test_describe_names_rates_effect_statistic_and_samples() -> None:
    s = settings(minSamples=1000)
    text = ab_test.describe(ab_test.evaluate(Arm(100, 1000), Arm(150, 1000), s), s)
    assert "success stable 10.00% vs canary 15.00%" in text
    assert "effect +5.00 points [" in text
    assert "p 0.000" in text
    assert "samples 1000/1000 (min 1000 each)" in text


def _false_winners(test: str, *, looks: int, per_look: int, runs: int, seed: int) -> float:
    """Share of A/A experiments (both variants 20%) that declare a winner when checked after every look."""
    rng = np.random.default_rng(seed)
    s = settings(test=test, minSamples=1)
    winners = 0
    for _ in range(runs):
        a = np.cumsum(rng.binomial(per_look, 0.2, size=looks))
        b = np.cumsum(rng.binomial(per_look, 0.2, size=looks))
        for i in range(looks):
            n = per_look * (i + 1)
            if ab_test.evaluate(Arm(int(a[i]), n), Arm(int(b[i]), n), s).winner is not None:
                winners += 1
                break
    return winners / runs


def test_checking_after_every_interval_keeps_sequential_false_winners_below_alpha() -> None:
    # 300 seeded A/A experiments, 30 looks each: the sequential test stays below alpha; the fixed-sample
    # two-proportion test, checked as often, does not (which is why `sequential` exists).
    sequential = _false_winners("sequential", looks=30, per_look=200, runs=300, seed=7)
    fixed = _false_winners("twoProportion", looks=30, per_look=200, runs=300, seed=7)
    assert sequential <= 0.05
    assert fixed > 0.10
