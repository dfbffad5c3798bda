"""What a candidate's run must show to pass."""

from __future__ import annotations

import pytest

from modelrollout.api.rollout import ShadowSettings
from modelrollout.api.status import BatchComparison, BatchCounts, BatchRun
from modelrollout.api.workloads import BatchGates
from modelrollout.modes.batch.gates import canary_comparison, judge_canary, judge_shadow, psi_from_histograms
from modelrollout_contract.batch import Histogram
from tests.unit.modelrollout.modes.batch.support import T0

SHADOW = ShadowSettings(min_agreement=0.98, min_comparisons=100)
GATES = BatchGates(max_psi=0.2, max_rejected_increase=1.0, max_duration_ratio=3.0)


def shadow_run(**compared: object) -> BatchRun:
    measures = {
        "records": 1000,
        "agreement": 0.995,
        "psi": 0.01,
        "rejected_increase": 0.0,
        "duration_ratio": 1.1,
        "stable_seconds": 5.0,
        "counts_equal": True,
    } | compared
    return BatchRun(
        job="j",
        role="shadow",
        revision="r9",
        created_at=T0,
        phase="Succeeded",
        comparison=BatchComparison.model_validate(measures),
    )


def test_a_candidate_that_agrees_passes_and_the_message_shows_every_measure() -> None:
    said = judge_shadow(shadow_run(), GATES, SHADOW)
    assert said.passed
    for part in ("agreement 0.9950", "PSI 0.010", "duration 1.10x"):
        assert part in said.message


@pytest.mark.parametrize(
    ("measures", "named"),
    [
        ({"agreement": 0.8}, "agreement 0.8000 (min 0.98)"),
        ({"psi": 0.4}, "PSI 0.400 (max 0.2)"),
        ({"rejected_increase": 5.0}, "rejected +5.00 points"),
        ({"duration_ratio": 4.0}, "duration 4.00x"),
        ({"counts_equal": False}, "scored counts differ"),
    ],
)
def test_each_gate_fails_a_candidate_and_names_itself(measures: dict[str, object], named: str) -> None:
    said = judge_shadow(shadow_run(**measures), GATES, SHADOW)
    assert not said.passed
    assert named in said.message


def test_a_failed_run_a_missing_comparison_or_too_few_records_fail() -> None:
    failed = BatchRun(
        job="j",
        role="shadow",
        revision="r9",
        created_at=T0,
        phase="Failed",
        reason="SchemaMismatch",
        message="missing column f3",
    )
    assert "SchemaMismatch: missing column f3" in judge_shadow(failed, GATES, SHADOW).message
    bare = BatchRun(job="j", role="shadow", revision="r9", created_at=T0, phase="Succeeded")
    assert not judge_shadow(bare, GATES, SHADOW).passed
    few = judge_shadow(shadow_run(records=10), GATES, SHADOW)
    assert not few.passed
    assert "minComparisons" in few.message


def test_duration_is_judged_only_when_stable_took_long_enough_to_time() -> None:
    quick = judge_shadow(shadow_run(duration_ratio=5.8, stable_seconds=0.002), GATES, SHADOW)
    assert quick.passed
    assert "duration not judged: stable predicted in 2 ms" in quick.message
    assert not judge_shadow(shadow_run(duration_ratio=5.8, stable_seconds=2.0), GATES, SHADOW).passed


def test_mean_abs_diff_gates_only_when_set() -> None:
    run = shadow_run(mean_abs_diff=0.3)
    assert judge_shadow(run, GATES, SHADOW).passed
    assert not judge_shadow(run, GATES, SHADOW.model_copy(update={"max_mean_abs_diff": 0.1})).passed


def histogram(counts: dict[int, int], *, factor: int = 1, zeros: int = 0) -> Histogram:
    return Histogram(factor=factor, zeros=zeros, positive=counts)


def test_psi_from_histograms_sees_a_shift_and_not_its_absence() -> None:
    stable = histogram(dict.fromkeys(range(-20, 0), 100))
    assert psi_from_histograms(stable, stable) == pytest.approx(0.0, abs=1e-12)
    shifted = histogram({k + 4: 100 for k in range(-20, 0)})  # every score about 8% higher (4 buckets of 2%)
    assert psi_from_histograms(shifted, stable) > 0.25  # type: ignore[operator]
    # A small share of random records has sampling noise, not a shift: deciles keep that small.
    noisy = histogram({k: 10 + (3 if k % 2 else -3) for k in range(-20, 0)})
    assert psi_from_histograms(noisy, stable) < 0.05  # type: ignore[operator]
    assert psi_from_histograms(histogram({}), stable) is None


def test_histograms_of_different_factors_are_compared_on_the_coarser_bins() -> None:
    fine = histogram(dict.fromkeys(range(-20, 0), 100))
    coarse = histogram(dict.fromkeys(range(-10, 0), 200), factor=2)  # the same scores, two buckets per bin
    assert psi_from_histograms(fine, coarse) == pytest.approx(0.0, abs=1e-12)
    negative = Histogram(negative={3: 50, 5: 50}, zeros=10, positive={1: 40})
    assert psi_from_histograms(negative, negative) == pytest.approx(0.0, abs=1e-12)


def part(role: str, *, read: int, rejected: int, seconds: float, scores: Histogram) -> BatchRun:
    counts = BatchCounts(read=read, scored=read - rejected, rejected=rejected)
    return BatchRun(
        job=role,
        role=role,
        revision="r",
        created_at=T0,
        phase="Succeeded",
        counts=counts,  # type: ignore[arg-type]
        duration_seconds=seconds,
        histogram=scores,
    )


SCORES = histogram(dict.fromkeys(range(-30, 0), 100), zeros=20)


def test_a_canary_part_is_compared_with_stables_part() -> None:
    stable = part("stable", read=9000, rejected=9, seconds=90, scores=SCORES)
    same = part("canary", read=1000, rejected=1, seconds=10, scores=SCORES)
    compared = canary_comparison(same, stable)
    assert compared.rejected_increase == pytest.approx(0.0)
    assert compared.psi == pytest.approx(0.0, abs=1e-9)
    assert compared.duration_ratio is None  # a small share's fixed costs would make any model look slow
    assert judge_canary(same.model_copy(update={"comparison": compared}), GATES).passed
    shifted = histogram({k + 10: 100 for k in range(-30, 0)}, zeros=20)
    worse = part("canary", read=1000, rejected=50, seconds=50, scores=shifted)
    said = judge_canary(worse.model_copy(update={"comparison": canary_comparison(worse, stable)}), GATES)
    assert not said.passed
    assert "PSI" in said.message
    assert "rejected +4.90 points" in said.message
    # The histogram is the pass's own evidence: it never reaches status.
    assert "histogram" not in stable.model_dump(by_alias=True)
