"""A shadow run's comparison: the run's model (the candidate) against a reference model (the stable one) on the
same records, the arithmetic alone.

Both models answer the same batch, so the records valid for both are compared row by row with no join. What is
kept adds up across batches and shards (ComparisonSums): counts, labels agreeing, the sum and maximum of |score
difference|, and a DDSketch of each model's score over the compared records. The summary (Comparison):
- agreement = agreeing / records, mean_abs_diff = sum / records with two finite scores, max_abs_diff: exact;
- psi, the population stability index of the candidate's score against the reference's:
  sum over bins of (c - r) * ln(c / r), c and r each sketch's share of the bin, floored at PSI_FLOOR (an empty
  bin would be infinite). The bins are cut at the reference's deciles as its sketch reports them (quantiles 0.1 ..
  0.9, equal ones merged: `psi_bins` says how many bins remain), and each share comes from DDSketch.rank at the
  edges. An edge is a bucket's estimate, so every bucket lies whole in one bin, in both sketches alike (the same
  accuracy, the same buckets): the shares are exact counts over these bucket-aligned bins. Against the PSI over
  the reference's exact deciles, the estimate differs only by the values that lie within the sketch's relative
  accuracy (1%) of an edge, which may sit in the neighbouring bin; a bin's reference share is 10% only up to the
  bucket at its edge (ties at an edge merge bins instead). Scores crowded within 1% of one value, such as a
  confident classifier's probabilities between 0.98 and 1, share one bucket: the deciles among them merge into one
  bin (psi_bins < 10), and the PSI does not see how they spread inside it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrollout_contract.batch import Comparison, ComparisonSums, ModelRef
from modelserver.batch.sketch import DDSketch

PSI_BINS = 10
PSI_FLOOR = 1e-4
_NUMERIC = "biuf"


@dataclass(frozen=True)
class Answers:
    """One model's answer to one batch: per batch row whether it scored it; then, for those rows in order, its
    label (classifiers) and its score (None when the model has none)."""

    valid: np.ndarray[Any, np.dtype[np.bool_]]
    labels: np.ndarray[Any, Any] | None
    score: np.ndarray[Any, np.dtype[np.float64]] | None


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Label equality per row; labels of different kinds (1 and "1") compare as Python values do."""
    if a.dtype.kind in _NUMERIC and b.dtype.kind in _NUMERIC:
        return np.asarray(a == b, dtype=np.bool_)
    return np.asarray(a.astype(object) == b.astype(object), dtype=np.bool_)


class Comparator:
    """Running sums of one process's comparison, batch by batch."""

    def __init__(self, reference: ModelRef) -> None:
        self.reference = reference
        self.records = self.scored = self.reference_scored = self.rejected = self.reference_rejected = 0
        self.agreeing: int | None = None  # stays None unless both models give labels
        self.diffed = 0
        self.abs_diff_sum: float | None = None  # stays None unless both models give a score
        self.max_abs_diff: float | None = None
        self.score = DDSketch()
        self.reference_score = DDSketch()

    def add(self, candidate: Answers, reference: Answers) -> None:
        both = candidate.valid & reference.valid
        self.records += int(np.count_nonzero(both))
        self.scored += int(np.count_nonzero(candidate.valid))
        self.rejected += int(np.count_nonzero(~candidate.valid))
        self.reference_scored += int(np.count_nonzero(reference.valid))
        self.reference_rejected += int(np.count_nonzero(~reference.valid))
        mine, theirs = both[candidate.valid], both[reference.valid]  # the compared rows among each one's answers
        if candidate.labels is not None and reference.labels is not None:
            agreeing = int(np.count_nonzero(_same(candidate.labels[mine], reference.labels[theirs])))
            self.agreeing = (self.agreeing or 0) + agreeing
        if candidate.score is not None and reference.score is not None:
            ours, refs = candidate.score[mine], reference.score[theirs]
            self.score.add(ours)
            self.reference_score.add(refs)
            finite = np.isfinite(ours) & np.isfinite(refs)
            diff = np.abs(ours[finite] - refs[finite])
            self.diffed += len(diff)
            self.abs_diff_sum = (self.abs_diff_sum or 0.0) + float(diff.sum())
            if len(diff):
                self.max_abs_diff = max(self.max_abs_diff or 0.0, float(diff.max()))

    def sums(self, *, seconds: float, reference_seconds: float) -> ComparisonSums:
        scored = self.abs_diff_sum is not None
        return ComparisonSums(
            reference=self.reference,
            records=self.records,
            scored=self.scored,
            reference_scored=self.reference_scored,
            rejected=self.rejected,
            reference_rejected=self.reference_rejected,
            agreeing=self.agreeing,
            diffed=self.diffed,
            abs_diff_sum=self.abs_diff_sum,
            max_abs_diff=self.max_abs_diff,
            score=self.score.to_wire() if scored else None,
            reference_score=self.reference_score.to_wire() if scored else None,
            seconds=seconds,
            reference_seconds=reference_seconds,
        )


def _merged(sketches: Sequence[DDSketch]) -> DDSketch:
    whole = DDSketch(sketches[0].accuracy)
    for piece in sketches:
        whole.merge(piece)
    return whole


def merge_sums(pieces: Sequence[ComparisonSums]) -> ComparisonSums:
    """Shards' sums as one process's. Raises ValueError when they compare with different references."""
    references = {piece.reference for piece in pieces}
    if len(references) != 1:
        raise ValueError(f"the shards compare with different reference models: {sorted(map(str, references))}")
    agreeing = [p.agreeing for p in pieces if p.agreeing is not None]
    sums = [p.abs_diff_sum for p in pieces if p.abs_diff_sum is not None]
    maxima = [p.max_abs_diff for p in pieces if p.max_abs_diff is not None]
    scores = [DDSketch.from_wire(p.score) for p in pieces if p.score is not None]
    reference_scores = [DDSketch.from_wire(p.reference_score) for p in pieces if p.reference_score is not None]
    return ComparisonSums(
        reference=pieces[0].reference,
        records=sum(p.records for p in pieces),
        scored=sum(p.scored for p in pieces),
        reference_scored=sum(p.reference_scored for p in pieces),
        rejected=sum(p.rejected for p in pieces),
        reference_rejected=sum(p.reference_rejected for p in pieces),
        agreeing=sum(agreeing) if agreeing else None,
        diffed=sum(p.diffed for p in pieces),
        abs_diff_sum=sum(sums) if sums else None,
        max_abs_diff=max(maxima) if maxima else None,
        score=_merged(scores).to_wire() if scores else None,
        reference_score=_merged(reference_scores).to_wire() if reference_scores else None,
        seconds=sum(p.seconds for p in pieces),
        reference_seconds=sum(p.reference_seconds for p in pieces),
    )


def psi(candidate: DDSketch, reference: DDSketch, bins: int = PSI_BINS) -> tuple[float, int] | None:
    """The population stability index of `candidate` against `reference`, and the bins it used (see the module's
    docstring); None when either sketch is empty."""
    if candidate.count == 0 or reference.count == 0:
        return None
    cuts = (reference.quantile(i / bins) for i in range(1, bins))
    edges = sorted({edge for edge in cuts if edge is not None})

    def shares(sketch: DDSketch) -> list[float]:
        below = [0.0, *(sketch.rank(edge) for edge in edges), 1.0]
        return [max(high - low, PSI_FLOOR) for low, high in itertools.pairwise(below)]

    index = sum((c - r) * math.log(c / r) for c, r in zip(shares(candidate), shares(reference), strict=True))
    return index, len(edges) + 1


def summarise(sums: ComparisonSums) -> Comparison:
    records = sums.records
    drift = None
    if sums.score is not None and sums.reference_score is not None:
        drift = psi(DDSketch.from_wire(sums.score), DDSketch.from_wire(sums.reference_score))
    return Comparison(
        reference=sums.reference,
        records=records,
        scored=sums.scored,
        reference_scored=sums.reference_scored,
        rejected=sums.rejected,
        reference_rejected=sums.reference_rejected,
        agreement=sums.agreeing / records if sums.agreeing is not None and records else None,
        mean_abs_diff=sums.abs_diff_sum / sums.diffed if sums.abs_diff_sum is not None and sums.diffed else None,
        max_abs_diff=sums.max_abs_diff,
        psi=drift[0] if drift is not None else None,
        psi_bins=drift[1] if drift is not None else PSI_BINS,
        seconds=sums.seconds,
        reference_seconds=sums.reference_seconds,
    )
