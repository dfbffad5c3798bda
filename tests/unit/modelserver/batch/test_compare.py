"""A shadow run's comparison arithmetic (modelserver.batch.compare) and the sketch's rank it bins with: the same
records compared row by row, the sums merged across shards as one process would have them, and the PSI estimate
against the PSI over the reference's exact deciles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelrollout_contract.batch import ModelRef
from modelserver.batch.compare import PSI_FLOOR, Answers, Comparator, merge_sums, psi, summarise
from modelserver.batch.sketch import DDSketch

STABLE = ModelRef(name="churn", version="1")
ROWS = 20_000


def answers(score: np.ndarray[Any, Any], *, valid: np.ndarray[Any, Any] | None = None, labels: bool = True) -> Answers:
    """A binary classifier's answers: `score` is P(positive) of the valid rows, the label is score >= 0.5."""
    mask = np.ones(len(score), dtype=np.bool_) if valid is None else valid
    kept = score[mask]
    return Answers(mask, (kept >= 0.5).astype(np.int64) if labels else None, kept)


def exact_psi(candidate: np.ndarray[Any, Any], reference: np.ndarray[Any, Any], bins: int = 10) -> float:
    """The textbook PSI over the reference's exact deciles, the estimate's yardstick."""
    edges = np.unique(np.quantile(reference, [i / bins for i in range(1, bins)]))

    def shares(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        below = np.searchsorted(np.sort(values), edges, side="right") / len(values)
        return np.maximum(np.diff(np.concatenate([[0.0], below, [1.0]])), PSI_FLOOR)

    c, r = shares(candidate), shares(reference)
    return float(np.sum((c - r) * np.log(c / r)))


def compared(candidate: Answers, reference: Answers) -> Comparator:
    comparator = Comparator(STABLE)
    comparator.add(candidate, reference)
    return comparator


def test_identical_models_agree_fully_with_no_difference_and_no_drift() -> None:
    score = np.random.default_rng(1).beta(2, 5, ROWS)
    result = summarise(compared(answers(score), answers(score)).sums(seconds=2.0, reference_seconds=1.0))
    assert result.records == result.scored == result.reference_scored == ROWS
    assert result.agreement == 1.0
    assert result.mean_abs_diff == 0.0
    assert result.max_abs_diff == 0.0
    assert result.psi == pytest.approx(0.0, abs=1e-12)
    assert result.psi_bins == 10
    assert (result.seconds, result.reference_seconds) == (2.0, 1.0)
    assert result.reference == STABLE


def test_a_model_flipping_a_fifth_of_the_labels_agrees_on_four_fifths() -> None:
    score = np.random.default_rng(2).uniform(size=ROWS)
    flipped = np.where(np.arange(ROWS) % 5 == 0, 1 - score, score)  # every fifth row on the other side of 0.5
    result = summarise(compared(answers(flipped), answers(score)).sums(seconds=0, reference_seconds=0))
    assert result.agreement == pytest.approx(0.8, abs=1 / ROWS)  # a score of exactly 0.5 would not flip
    diff = np.abs(flipped - score)
    assert result.mean_abs_diff == pytest.approx(diff.mean(), rel=1e-12)
    assert result.max_abs_diff == pytest.approx(diff.max(), rel=1e-12)


def test_a_shifted_score_distribution_is_a_large_psi_close_to_the_exact_one() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 1.0, ROWS)
    for shift, low, high in ((0.8, 0.25, None), (0.1, None, 0.1)):
        candidate = reference + shift
        comparator = Comparator(STABLE)
        for rows in np.array_split(np.arange(ROWS), 7):  # batch by batch, as a run adds them
            comparator.add(answers(candidate[rows], labels=False), answers(reference[rows], labels=False))
        result = summarise(comparator.sums(seconds=0, reference_seconds=0))
        assert result.psi is not None
        exact = exact_psi(candidate, reference)
        assert result.psi == pytest.approx(exact, rel=0.05, abs=0.005), (shift, result.psi, exact)
        assert low is None or result.psi > low
        assert high is None or result.psi < high
        assert result.mean_abs_diff == pytest.approx(shift)
        assert result.agreement is None, "no labels, no agreement"


def test_only_records_valid_for_both_are_compared_row_by_row() -> None:
    rows = np.arange(12, dtype=np.float64) / 12  # a row's score is its position: any misalignment differs
    candidate_valid = np.array([True] * 12)
    candidate_valid[[1, 5]] = False
    reference_valid = np.array([True] * 12)
    reference_valid[[2, 5, 9]] = False
    comparator = compared(answers(rows, valid=candidate_valid), answers(rows, valid=reference_valid))
    result = summarise(comparator.sums(seconds=0, reference_seconds=0))
    assert result.records == 8
    assert (result.scored, result.rejected) == (10, 2)
    assert (result.reference_scored, result.reference_rejected) == (9, 3)
    assert result.mean_abs_diff == 0.0
    assert result.agreement == 1.0


def test_shards_merge_into_what_one_process_computes() -> None:
    rng = np.random.default_rng(4)
    reference = rng.uniform(size=ROWS)
    candidate = np.clip(reference + rng.normal(0, 0.1, ROWS), 0, 1)
    valid = rng.uniform(size=ROWS) > 0.01
    whole = Comparator(STABLE)
    whole.add(answers(candidate, valid=valid), answers(reference))
    pieces = []
    for rows in np.array_split(np.arange(ROWS), 3):
        shard = Comparator(STABLE)
        shard.add(answers(candidate[rows], valid=valid[rows]), answers(reference[rows]))
        pieces.append(shard.sums(seconds=1.0, reference_seconds=0.5))
    merged = summarise(merge_sums(pieces))
    alone = summarise(whole.sums(seconds=3.0, reference_seconds=1.5))
    assert merged.records == alone.records == int(valid.sum())
    assert merged.agreement == alone.agreement
    assert merged.mean_abs_diff == pytest.approx(alone.mean_abs_diff, rel=1e-12)
    assert merged.max_abs_diff == alone.max_abs_diff
    assert merged.psi == pytest.approx(alone.psi, rel=1e-12)
    assert (merged.seconds, merged.reference_seconds) == (3.0, 1.5)
    with pytest.raises(ValueError, match="different reference models"):
        merge_sums([pieces[0], pieces[1].model_copy(update={"reference": ModelRef(name="churn", version="0")})])


def test_classifiers_without_a_score_compare_labels_only() -> None:
    labels = np.array(["a", "b", "c", "a"])
    comparator = compared(
        Answers(np.ones(4, np.bool_), labels, None), Answers(np.ones(4, np.bool_), labels[::-1], None)
    )
    result = summarise(comparator.sums(seconds=0, reference_seconds=0))
    assert result.agreement == 0.5
    assert (result.mean_abs_diff, result.max_abs_diff, result.psi) == (None, None, None)
    # Labels of different kinds compare as values do: 1 is not "1".
    mixed = compared(Answers(np.ones(2, np.bool_), np.array([1, 0]), None),
                     Answers(np.ones(2, np.bool_), np.array(["1", "0"]), None))  # fmt: skip
    assert summarise(mixed.sums(seconds=0, reference_seconds=0)).agreement == 0.0


def test_an_empty_comparison_has_no_ratios() -> None:
    result = summarise(Comparator(STABLE).sums(seconds=0, reference_seconds=0))
    assert (result.records, result.agreement, result.mean_abs_diff, result.psi) == (0, None, None, None)
    assert psi(DDSketch(), DDSketch()) is None


def test_psi_bins_merge_where_the_reference_deciles_tie() -> None:
    reference, candidate = DDSketch(), DDSketch()
    reference.add(np.array([0.0] * 500 + [1.0] * 500))  # two values: deciles 0.1..0.5 tie at 0, 0.6..0.9 at 1
    candidate.add(np.array([0.0] * 500 + [1.0] * 500))
    found = psi(candidate, reference)
    assert found is not None
    assert found[1] == 3
    assert found[0] == 0.0


def test_the_rank_is_the_share_at_or_below_up_to_the_bucket_resolution() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.lognormal(0, 2, 10_000), -rng.lognormal(0, 1, 2_000), np.zeros(100)])
    sketch = DDSketch(0.01)
    sketch.add(values)
    ordered = np.sort(values)

    def ecdf(x: float) -> float:
        return float(np.searchsorted(ordered, x, side="right") / len(ordered))

    assert sketch.rank(0.0) == ecdf(0.0), "negatives and zeros are exactly at or below 0"
    assert sketch.rank(float(ordered[-1]) * 2) == 1.0
    assert sketch.rank(float(ordered[0]) * 2) == 0.0
    for x in np.quantile(values[values > 0], [0.05, 0.3, 0.5, 0.7, 0.95]):
        assert ecdf(x * 0.99) <= sketch.rank(x) <= ecdf(x / 0.99), x
    for q in (0.1, 0.5, 0.9):  # a quantile's bucket is counted whole: its rank reaches q
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert sketch.rank(estimate) >= q
    assert DDSketch().rank(1.0) == 0.0
