"""Whether a candidate's batch run passes (pure). Gates come from the scorer's result (the comparison it computed
and its counts), so batch needs no Prometheus: a shadow run is judged on the same records as the stable model
(agreement, score difference, PSI, equal counts, rejected share, duration), a canary run's share against the
stable share of the same run (PSI of the two score distributions, rejected share)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelrollout.api.rollout import ShadowSettings
from modelrollout.api.status import BatchComparison, BatchRun
from modelrollout.api.workloads import BatchGates
from modelrollout_contract.batch import Histogram

# Below this much predict time the ratio of two models' times is scheduling noise, not the models: the same pair of
# models measured 1.35x and 5.82x in two runs of the e2e suite (about 2 ms of predict each, two pods sharing two
# cores), so the duration gate judges only runs whose stable model predicted at least this long.
MIN_TIMED_S = 1.0


@dataclass(frozen=True)
class Judgement:
    passed: bool
    message: str


def _failed_run(run: BatchRun) -> Judgement:
    said = f"{run.reason}: {run.message}" if run.message else (run.reason or "no reason given")
    return Judgement(False, f"the candidate's run {run.job} failed ({said})")


def _checks(compared: BatchComparison, gates: BatchGates) -> list[tuple[bool, str]]:
    """(failed, what) per gate the comparison can be held to; a measure the run could not take is skipped."""
    checks: list[tuple[bool, str]] = []
    if compared.psi is not None:
        checks.append((compared.psi > gates.max_psi, f"PSI {compared.psi:.3f} (max {gates.max_psi:g})"))
    if compared.rejected_increase is not None:
        checks.append(
            (
                compared.rejected_increase > gates.max_rejected_increase,
                f"rejected {compared.rejected_increase:+.2f} points vs stable (max {gates.max_rejected_increase:g})",
            )
        )
    if compared.stable_seconds is not None and compared.stable_seconds < MIN_TIMED_S:
        checks.append((False, f"duration not judged: stable predicted in {compared.stable_seconds * 1000:.0f} ms, "
                       f"under {MIN_TIMED_S:g}s"))  # fmt: skip
    elif compared.duration_ratio is not None:
        checks.append(
            (
                compared.duration_ratio > gates.max_duration_ratio,
                f"duration {compared.duration_ratio:.2f}x stable's (max {gates.max_duration_ratio:g}x)",
            )
        )
    return checks


def _verdict(checks: list[tuple[bool, str]]) -> Judgement:
    failed = [what for bad, what in checks if bad]
    if failed:
        return Judgement(False, "gates failed: " + "; ".join(failed))
    return Judgement(True, "gates passed: " + "; ".join(what for _, what in checks) if checks else "gates passed")


def judge_shadow(run: BatchRun, gates: BatchGates, shadow: ShadowSettings) -> Judgement:
    """A shadow run: the candidate and the stable model on the same records."""
    if run.phase == "Failed":
        return _failed_run(run)
    compared = run.comparison
    if compared is None:
        return Judgement(False, f"the shadow run {run.job} reported no comparison with the stable model")
    if compared.records < shadow.min_comparisons:
        return Judgement(
            False,
            f"only {compared.records} records compared, fewer than rollout.shadow.minComparisons "
            f"{shadow.min_comparisons}: the input is too small to judge the candidate",
        )
    checks: list[tuple[bool, str]] = []
    if compared.agreement is not None:
        checks.append(
            (
                compared.agreement < shadow.min_agreement,
                f"agreement {compared.agreement:.4f} (min {shadow.min_agreement:g})",
            )
        )
    if compared.mean_abs_diff is not None and shadow.max_mean_abs_diff is not None:
        checks.append(
            (
                compared.mean_abs_diff > shadow.max_mean_abs_diff,
                f"mean |diff| {compared.mean_abs_diff:.4g} (max {shadow.max_mean_abs_diff:g})",
            )
        )
    if gates.equal_counts and compared.counts_equal is not None:
        checks.append((not compared.counts_equal, "scored counts equal" if compared.counts_equal else
                       "scored counts differ"))  # fmt: skip
    return _verdict(checks + _checks(compared, gates))


def judge_canary(run: BatchRun, gates: BatchGates) -> Judgement:
    """A canary part: the candidate's share of a run, compared (by the operator) with stable's share."""
    if run.phase == "Failed":
        return _failed_run(run)
    if run.comparison is None:
        return Judgement(True, "the candidate's part committed; no stable part to compare with")
    return _verdict(_checks(run.comparison, gates))


# A PSI bin holds at least this share of stable's scores: deciles, the usual binning of the index (finer bins of
# a small share, such as a canary's 10%, would make sampling noise look like a shift).
_BIN_SHARE = 0.1
_FLOOR = 1e-4


def _ordered_bins(histogram: Histogram, factor: int) -> dict[tuple[int, int], int]:
    """Counts by bin brought to `factor`, keyed so that sorting the keys orders the bins by value (most negative
    first, then zero, then positive)."""
    step = factor // histogram.factor
    bins: dict[tuple[int, int], int] = {}
    for key, n in histogram.negative.items():
        bins[(0, -(key // step))] = bins.get((0, -(key // step)), 0) + n
    if histogram.zeros:
        bins[(1, 0)] = histogram.zeros
    for key, n in histogram.positive.items():
        bins[(2, key // step)] = bins.get((2, key // step), 0) + n
    return bins


def psi_from_histograms(candidate: Histogram, stable: Histogram) -> float | None:
    """The population stability index of the candidate's scores against stable's: both histograms brought to
    the same bins, the bins grouped in value order into groups of at least a tenth of stable's scores (deciles,
    as far as the bins allow: a bin is never split), then sum((c - s) * ln(c / s)) over the groups, shares
    floored at 1e-4. Exact for the binned scores; within a bin (about 2% wide at the finest, coarser when the
    scores spread over many orders of magnitude) a shift is not seen. None when either side has no scores."""
    factor = max(candidate.factor, stable.factor)
    ours, theirs = _ordered_bins(candidate, factor), _ordered_bins(stable, factor)
    total_c, total_s = sum(ours.values()), sum(theirs.values())
    if not total_c or not total_s:
        return None
    groups: list[tuple[int, int]] = []
    got = want = 0
    for key in sorted(set(ours) | set(theirs)):
        got, want = got + ours.get(key, 0), want + theirs.get(key, 0)
        if want >= _BIN_SHARE * total_s:
            groups.append((got, want))
            got = want = 0
    if got or want:
        if groups:  # the tail short of a tenth joins the last group
            last = groups.pop()
            got, want = got + last[0], want + last[1]
        groups.append((got, want))
    psi = 0.0
    for in_c, in_s in groups:
        a, e = max(in_c / total_c, _FLOOR), max(in_s / total_s, _FLOOR)
        psi += (a - e) * math.log(a / e)
    return psi


def canary_comparison(candidate: BatchRun, stable: BatchRun) -> BatchComparison:
    """The candidate's share of a run against stable's share of the same run (different records, by key): score
    distributions (PSI over the scorer's histograms) and rejected shares. Not their durations: a share's run
    time includes fixed costs (start, model load, listing the input), so a 10% share is slower per record
    whatever the model; the shadow strategy compares predict time on the same records instead."""
    c, s = candidate.counts, stable.counts
    rejected = None
    if c is not None and s is not None and c.read and s.read:
        rejected = 100 * c.rejected / c.read - 100 * s.rejected / s.read
    psi = None
    if candidate.histogram is not None and stable.histogram is not None:
        psi = psi_from_histograms(candidate.histogram, stable.histogram)
    return BatchComparison(psi=psi, rejected_increase=rejected)
