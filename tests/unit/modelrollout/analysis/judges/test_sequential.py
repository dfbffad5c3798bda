"""The sequential judge against hand-computed numbers, and its error guarantees on seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from modelrollout.analysis.judges.sequential import (
    GRID,
    STATE_KEYS,
    Counts,
    confidence_sequence,
    decide,
    empty_state,
    log_e_value,
    log_rate_e_value,
    rate_bound,
    rate_upper_bound,
    state_evidence,
    state_from_evidence,
    two_proportion_sample_size,
    window_log_likelihood,
)

ONE = int(np.argmin(abs(GRID - 1.0)))


# The fixed-horizon yardstick: requests per arm of a two-sided two-proportion z-test (alpha 0.05, power 0.8).
# (z_a + z_b)^2 = (1.959964 + 0.841621)^2 = 7.84889; e.g. 1% -> 2%: 7.84889 * (0.0099 + 0.0196) / 0.01^2 = 2315.4
@pytest.mark.parametrize(
    ("p1", "p2", "unpooled", "pooled"),
    [
        (0.01, 0.02, 2316, 2319),  # "about 2,315 per arm"
        (0.001, 0.002, 23508, 23511),  # ten times rarer events need ten times the traffic
        (0.05, 0.10, 432, 435),
    ],
)
def test_two_proportion_sample_size_table(p1: float, p2: float, unpooled: int, pooled: int) -> None:
    assert two_proportion_sample_size(p1, p2) == unpooled
    assert two_proportion_sample_size(p1, p2, pooled=True) == pooled
    assert abs(two_proportion_sample_size(0.01, 0.02) - 2315) <= 5


def test_the_grid_holds_no_change() -> None:
    assert GRID[ONE] == pytest.approx(1.0)
    assert GRID[0] == pytest.approx(0.25)
    assert GRID[-1] == pytest.approx(16.0)


def test_window_likelihood_by_hand() -> None:
    # Half the traffic each, 3 bad canary events and 1 bad stable one: theta(r) = r / (r + 1), so
    # log L(r) = 3 log(2r / (r + 1)) + log(2 / (r + 1)); at r = 1 nothing changes, at r = 3: 3 log 1.5 + log 0.5.
    llr = window_log_likelihood(Counts(canary_bad=3, canary_total=100, stable_bad=1, stable_total=100))
    assert llr[ONE] == pytest.approx(0.0)
    r = GRID[ONE + 13]  # about 3.1
    assert llr[ONE + 13] == pytest.approx(3 * math.log(2 * r / (r + 1)) + math.log(2 / (r + 1)))
    three = 3 * math.log(1.5) + math.log(0.5)
    assert three == pytest.approx(0.523, abs=1e-3)
    assert int(np.argmax(llr)) in range(ONE + 12, ONE + 14)  # the MLE of r is b_c/b_s = 3 at equal shares


def test_traffic_share_is_what_the_canary_is_compared_with() -> None:
    # 10% of the traffic and 10% of the bad events: exactly no change; 20% of them: twice stable's rate.
    same = window_log_likelihood(Counts(canary_bad=10, canary_total=1000, stable_bad=90, stable_total=9000))
    double = window_log_likelihood(Counts(canary_bad=20, canary_total=1000, stable_bad=80, stable_total=8000 / 0.9))
    assert int(np.argmax(same)) == ONE
    assert GRID[int(np.argmax(double))] == pytest.approx(2.0, rel=0.1)


def test_no_traffic_or_no_bad_events_is_no_evidence() -> None:
    for counts in (Counts(0, 0, 5, 100), Counts(0, 100, 0, 100), Counts(3, 100, 5, 0)):
        assert not window_log_likelihood(counts).any()
    assert log_e_value(empty_state()) == pytest.approx(0.0)  # a mixture of likelihood ratios of 1 is 1
    assert confidence_sequence(empty_state(), 0.05) == (0.0, math.inf)


def test_e_value_is_the_prior_mixture_over_regressions() -> None:
    # 10 bad canary events, none on stable, equal shares: L(r) = (2r / (r + 1))^10; the e-value is the half-normal
    # (sd 1 on log r) weighted mean of L over the grid points above 1, computed here independently.
    llr = window_log_likelihood(Counts(canary_bad=10, canary_total=100, stable_bad=0, stable_total=100))
    up = [r for r in GRID if r > 1 + 1e-9]
    weights = [math.exp(-0.5 * math.log(r) ** 2) for r in up]
    expected = sum(w * (2 * r / (r + 1)) ** 10 for w, r in zip(weights, up, strict=True)) / sum(weights)
    assert math.exp(log_e_value(llr)) == pytest.approx(expected)
    assert expected > 20  # 10 of 10 at even odds (1 in 1024 by chance) rolls back at alpha 0.05
    verdict = decide(empty_state(), Counts(10, 100, 0, 100), alpha=0.05, tolerance=0.5, min_requests=20)
    assert verdict.verdict == "Failed"
    assert "evidence" in verdict.message


def test_promotes_once_the_upper_bound_is_below_the_tolerated_ratio() -> None:
    state = empty_state()
    verdicts = []
    for _ in range(100):
        result = decide(state, Counts(100, 10_000, 100, 10_000), alpha=0.05, tolerance=0.5, min_requests=20)
        state = result.log_likelihood
        verdicts.append(result.verdict)
        if result.verdict != "Inconclusive":
            break
    # 100 bad events on each side bound the ratio to about 0.65..1.54 (not yet below 1.5); 200 to 0.77..1.30.
    assert verdicts == ["Inconclusive", "Successful"]
    assert result.lower < 1 < result.upper < 1.5


def test_no_promotion_during_a_zero_traffic_gap() -> None:
    confident = decide(empty_state(), Counts(2000, 200_000, 2000, 200_000), alpha=0.05, tolerance=0.5, min_requests=20)
    assert confident.verdict == "Successful"
    gap = decide(confident.log_likelihood, Counts(0, 0, 0, 0), alpha=0.05, tolerance=0.5, min_requests=20)
    assert gap.verdict == "Inconclusive"
    assert "fewer than" in gap.message
    # ...but evidence already gathered still rolls back in a gap: a failure needs no new data.
    bad = decide(empty_state(), Counts(40, 1000, 10, 1000), alpha=0.05, tolerance=0.5, min_requests=20)
    still = decide(bad.log_likelihood, Counts(0, 0, 0, 0), alpha=0.05, tolerance=0.5, min_requests=20)
    assert still.verdict == "Failed"


def test_state_round_trips_through_status_evidence() -> None:
    llr = window_log_likelihood(Counts(3, 100, 1, 100))
    evidence = state_evidence(llr)
    assert list(evidence) == list(STATE_KEYS)
    restored = state_from_evidence(evidence)
    assert restored is not None
    assert np.array_equal(restored, llr)
    assert state_from_evidence({"llr@1.0000": 0.0}) is None


def _simulate(rate_ratio: float, seeds: int, looks: int) -> tuple[float, float]:
    """Share of seeds that roll back / promote, checking after every window (10% canary, 1% errors)."""
    rng = np.random.default_rng(7)
    failed = promoted = 0
    for _ in range(seeds):
        state = empty_state()
        for _ in range(looks):
            n_c, n_s = rng.poisson(200), rng.poisson(1800)
            counts = Counts(rng.binomial(n_c, 0.01 * rate_ratio), n_c, rng.binomial(n_s, 0.01), n_s)
            result = decide(state, counts, alpha=0.05, tolerance=0.5, min_requests=20)
            state = result.log_likelihood
            if result.verdict == "Failed":
                failed += 1
                break
            if result.verdict == "Successful":
                promoted += 1
                break
    return failed / seeds, promoted / seeds


def test_checking_after_every_window_keeps_false_rollbacks_below_alpha() -> None:
    false_rollbacks, _ = _simulate(1.0, seeds=300, looks=200)
    assert false_rollbacks <= 0.05


def test_a_doubled_error_rate_is_caught() -> None:
    caught, promoted = _simulate(2.0, seeds=100, looks=200)
    assert caught >= 0.9
    assert promoted == 0


# --- the absolute bound on the canary's own rate -------------------------------------------------------------


def _zero_event_e(n: int, p0: float) -> float:
    # b = 0, uniform prior on [0, p0]: E = (1/p0) int_0^p0 (1-p)^n dp / (1-p0)^n
    #                                    = (1 - (1-p0)^(n+1)) / ((n+1) p0 (1-p0)^n)
    return (1 - (1 - p0) ** (n + 1)) / ((n + 1) * p0 * (1 - p0) ** n)


def test_zero_canary_errors_over_2000_requests_bound_the_rate_below_one_percent() -> None:
    # E(0.01) = (1 - 0.99^2001) / (2001 * 0.01 * 0.99^2000) = 1 / (20.01 * 1.86e-9) = 2.7e7, far above 1/alpha = 20.
    assert math.exp(log_rate_e_value(0, 2000, 0.01)) == pytest.approx(_zero_event_e(2000, 0.01), rel=1e-9)
    assert _zero_event_e(2000, 0.01) == pytest.approx(2.69e7, rel=0.01)
    # The bound solves E(p0) = 20: with x = n p0, e^x / x = 20 gives x = 4.508, so p0 = 4.508 / 2000 = 0.00225
    # (the fixed-sample zero-event bound -ln(0.05) / 2000 = 0.0015 is valid only when looked at once).
    upper = rate_upper_bound(0, 2000, alpha=0.05)
    assert upper == pytest.approx(0.002254, abs=2e-6)
    assert _zero_event_e(2000, upper) == pytest.approx(20.0, rel=1e-6)
    bound = rate_bound(0, 2000, limit=0.01, alpha=0.05)
    assert bound.below
    assert bound.upper == pytest.approx(upper)


def test_five_errors_in_300_requests_are_not_below_one_percent() -> None:
    # 5/300 = 1.7% observed: the evidence for "rate < 1%" is below 1 (E(0.01) = 0.276), the bound about 4.6%.
    bound = rate_bound(5, 300, limit=0.01, alpha=0.05)
    assert not bound.below
    # Independently: (1/p0) int_0^p0 (p/p0)^5 ((1-p)/(1-p0))^295 dp by quadrature.
    integral, _ = quad(lambda p: (p / 0.01) ** 5 * ((1 - p) / 0.99) ** 295, 0, 0.01)
    assert math.exp(bound.log_e) == pytest.approx(integral / 0.01, rel=1e-6)
    assert math.exp(bound.log_e) == pytest.approx(0.276, abs=0.001)
    assert bound.upper == pytest.approx(0.0462, abs=2e-4)
    stuck = decide(empty_state(), Counts(5, 300, 0, 1200), alpha=0.05, tolerance=0.5, min_requests=20, max_rate=0.01)
    assert stuck.verdict != "Successful"


def test_the_bound_holds_for_any_count_of_bad_events() -> None:
    # 1 error in 1000: E(p0) = 1000 * 1001 * B(2, 1000) I_p0(2, 1000) / (p0^2 (1-p0)^999) ... = 20 at p0 = 0.00683.
    assert rate_upper_bound(1, 1000, alpha=0.05) == pytest.approx(0.00683, abs=1e-5)
    assert rate_upper_bound(10, 5000, alpha=0.05) == pytest.approx(0.00435, abs=1e-5)
    assert rate_upper_bound(0, 0, alpha=0.05) == 1.0
    # Larger than the observed rate, shrinking towards it as the counts grow.
    previous = 1.0
    for n in (100, 1_000, 10_000, 100_000):
        upper = rate_upper_bound(0.01 * n, n, alpha=0.05)
        assert 0.01 < upper < previous
        previous = upper
    assert previous < 0.0115


def test_checking_the_bound_after_every_window_keeps_its_error_below_alpha() -> None:
    # A canary exactly at the limit (1%) must be promoted on its own rate at most alpha of the time, however often
    # the bound is looked at: 2000 seeds, 200 looks of 50 requests each.
    rng = np.random.default_rng(11)
    bad = rng.binomial(50, 0.01, size=(2000, 200)).cumsum(axis=1)
    requests = 50 * np.arange(1, 201)
    threshold = math.log(20)
    promoted = sum(
        any(log_rate_e_value(float(b), float(n), 0.01) >= threshold for b, n in zip(row, requests, strict=True))
        for row in bad
    )
    assert promoted / 2000 <= 0.05


def test_a_clean_stable_leaves_only_the_absolute_bound_to_promote() -> None:
    # Stable 0 errors, canary 0 errors over 2,000 requests: the comparison has nothing to compare (ratio 0..inf).
    window = Counts(canary_bad=0, canary_total=2000, stable_bad=0, stable_total=8000)
    without = decide(empty_state(), window, alpha=0.05, tolerance=0.5, min_requests=20)
    assert without.verdict == "Inconclusive"
    assert (without.lower, without.upper) == (0.0, math.inf)
    with_max = decide(empty_state(), window, alpha=0.05, tolerance=0.5, min_requests=20, max_rate=0.01)
    assert with_max.verdict == "Successful"
    assert with_max.rate is not None
    assert with_max.rate.upper == pytest.approx(0.002254, abs=2e-6)
    assert "0 of 2000" in with_max.message


def test_the_bound_counts_every_run_so_far_and_gaps_never_promote() -> None:
    # 0 errors in 300 (bound 0.0149) is not enough for 1%; 300 more (0 of 600: 4.508 / 600 = 0.0075) is.
    first = decide(empty_state(), Counts(0, 300, 0, 1200), alpha=0.05, tolerance=0.5, min_requests=20, max_rate=0.01)
    assert first.verdict == "Inconclusive"
    assert first.rate is not None
    assert first.rate.upper == pytest.approx(0.0149, abs=1e-4)
    second = decide(
        first.log_likelihood,
        Counts(0, 300, 0, 1200),
        alpha=0.05,
        tolerance=0.5,
        min_requests=20,
        max_rate=0.01,
        canary_before=(0, 300),
    )
    assert second.verdict == "Successful"
    gap = decide(
        second.log_likelihood, Counts(0, 0, 0, 0), alpha=0.05, tolerance=0.5, min_requests=20, max_rate=0.01,
        canary_before=(0, 600),
    )  # fmt: skip
    assert gap.verdict == "Inconclusive"


def test_the_comparison_still_rolls_back_a_canary_below_the_limit() -> None:
    # 8 errors in 2000 canary requests (0.4%, well below max 1%) against 0 in 8000 on stable: every bad event is the
    # canary's at a 20% share, a regression the relative test sees (evidence >= 20) before the bound can promote.
    failed = decide(empty_state(), Counts(8, 2000, 0, 8000), alpha=0.05, tolerance=0.5, min_requests=20, max_rate=0.01)
    assert failed.rate is not None
    assert failed.rate.below
    assert failed.verdict == "Failed"
