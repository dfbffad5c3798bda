"""The mannWhitney judge, pure: Kayenta's canary classification.

Per metric, the canary's points (one value per sub-window) are compared with stable's over the same time by a
two-sided Mann-Whitney U test and the Hodges-Lehmann estimate of the shift (the median of all pairwise
differences canary - stable) with its distribution-free confidence interval at level 1 - alpha. A metric is
- High (or Low) when the whole interval lies above (below) zero *and* the shift, relative to stable's median,
  is outside the tolerated band (relativeToStable.maxIncrease / maxDecrease, else the judge's tolerance):
  significant and large enough to matter; it fails when that direction is the bad one for the metric;
- Pass otherwise; NoData with fewer than MIN_POINTS points on either side.
The run's score is Kayenta's: every group (metric.group, else the metric alone) scores the share of its metrics
that pass, groups weigh the sum of their metrics' weights; score >= passScore is Successful, >= marginalScore
Inconclusive, below Failed; a failing critical metric fails the run whatever the score.

Points close in time are autocorrelated, which the U test ignores (its p-values are too small then): the
sequential judge is the one whose error rate is guaranteed; this one is here for parity with Kayenta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import mannwhitneyu, norm

from modelrollout.api.status import Verdict

MIN_POINTS = 3
Classification = Literal["Pass", "High", "Low", "NoData"]


@dataclass(frozen=True, slots=True)
class Comparison:
    classification: Classification
    failed: bool  # High for a metric where up is bad, Low where down is bad
    n_canary: int
    n_stable: int
    u: float = math.nan
    p_value: float = math.nan
    shift: float = math.nan  # Hodges-Lehmann: median of canary_i - stable_j
    ci_low: float = -math.inf
    ci_high: float = math.inf
    relative: float = math.nan  # shift / |median(stable)|
    message: str = ""

    def evidence(self) -> dict[str, float | None]:
        return {
            "u": self.u,
            "pValue": self.p_value,
            "shift": self.shift,
            "ciLow": self.ci_low,
            "ciHigh": self.ci_high,
            "relativeShift": self.relative,
            "nCanary": float(self.n_canary),
            "nStable": float(self.n_stable),
        }


def hodges_lehmann(canary: Sequence[float], stable: Sequence[float], alpha: float) -> tuple[float, float, float]:
    """(shift, low, high): the Hodges-Lehmann shift and its 1 - alpha confidence interval (order statistics of
    the n*m pairwise differences at the U test's normal-approximation critical value; infinite ends when the
    samples are too small for that level)."""
    x, y = np.asarray(canary, dtype=float), np.asarray(stable, dtype=float)
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    n, m = len(x), len(y)
    shift = float(np.median(diffs))
    z = float(norm.ppf(1 - alpha / 2))
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))  # count of differences cut per side
    if k < 1:
        return shift, -math.inf, math.inf
    return shift, float(diffs[k - 1]), float(diffs[n * m - k])


def compare(
    canary: Sequence[float],
    stable: Sequence[float],
    *,
    alpha: float,
    max_increase: float | None,
    max_decrease: float | None,
) -> Comparison:
    """Classify one metric. `max_increase` / `max_decrease` (fractions of stable's median) are the tolerated
    band in the bad direction(s); None means that direction is not bad (it can be High, but it passes)."""
    x = [v for v in canary if math.isfinite(v)]
    y = [v for v in stable if math.isfinite(v)]
    if len(x) < MIN_POINTS or len(y) < MIN_POINTS:
        return Comparison(
            "NoData",
            False,
            len(x),
            len(y),
            message=f"{len(x)} canary and {len(y)} stable points, fewer than {MIN_POINTS} on a side",
        )
    test = mannwhitneyu(x, y, alternative="two-sided", method="auto")
    shift, low, high = hodges_lehmann(x, y, alpha)
    base = abs(float(np.median(y)))
    relative = shift / base if base > 0 else (0.0 if shift == 0 else math.copysign(math.inf, shift))
    classification: Classification = "Pass"
    failed = False
    if low > 0 and relative > (max_increase if max_increase is not None else 0.0):
        classification, failed = "High", max_increase is not None
    elif high < 0 and -relative > (max_decrease if max_decrease is not None else 0.0):
        classification, failed = "Low", max_decrease is not None
    band = f"shift {shift:.4g} [{low:.4g}, {high:.4g}] ({relative:+.1%} of stable), U={float(test.statistic):g}"
    return Comparison(
        classification,
        failed,
        len(x),
        len(y),
        u=float(test.statistic),
        p_value=float(test.pvalue),
        shift=shift,
        ci_low=low,
        ci_high=high,
        relative=relative,
        message=f"{classification}: {band}, n={len(x)}/{len(y)}",
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """A metric's part in the score."""

    group: str
    weight: int
    comparison: Comparison
    critical: bool = False


def score(items: Sequence[Scored]) -> float | None:
    """Kayenta's score (0..100) over the metrics with data: per group the share that did not fail, groups
    weighted by the sum of their metrics' weights. None when no metric had data (or all weigh 0)."""
    groups: dict[str, list[Scored]] = {}
    for item in items:
        if item.comparison.classification != "NoData":
            groups.setdefault(item.group, []).append(item)
    total = sum(sum(i.weight for i in members) for members in groups.values())
    if total == 0:
        return None
    earned = sum(
        sum(i.weight for i in members) * sum(not i.comparison.failed for i in members) / len(members)
        for members in groups.values()
    )
    return 100.0 * earned / total


def run_verdict(items: Sequence[Scored], *, pass_score: float, marginal_score: float) -> tuple[Verdict, float | None]:
    """The run's verdict and score: a critical failure fails; no data decides nothing; else by score."""
    if any(i.critical and i.comparison.failed for i in items):
        return "Failed", score(items)
    value = score(items)
    if value is None:
        return "Inconclusive", None
    if value >= pass_score:
        return "Successful", value
    return ("Inconclusive" if value >= marginal_score else "Failed"), value
