"""Turns what Prometheus answered into the statistical judges' inputs and their verdicts into MetricResults.

Pure (no I/O): run.py asks the queries, this module judges the answers. The sequential test's state travels in
the MetricResult it writes (evidence: the test's log-likelihoods, the raw cumulative counters it last saw and the
canary's cumulative counts), and is read back from the previous runs in status, so every run adds exactly the
requests since the last one, and an operator restart loses nothing. The first run counts the increases over its
window (the requests before it), then notes the counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelrollout.analysis.evaluate import clip
from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import AnalysisMetric, Judge, NoDataPolicy
from modelrollout.api.status import AnalysisRun, MetricResult, Verdict

if TYPE_CHECKING:
    from modelrollout.analysis.judges import mann_whitney

RAW_KEYS = ("rawCanaryBad", "rawCanaryTotal", "rawStableBad", "rawStableTotal")
CUMULATIVE_KEYS = ("canaryBad", "canaryRequests", "stableBad", "stableRequests")


# The latency builtins' max is a bucket edge; "p99 at most max" is "at most 1% of requests slower than max".
_SLOW_SHARE = {"latencyP99": 0.01, "latencyP95": 0.05}


def max_rate(metric: AnalysisMetric) -> float | None:
    """The absolute limit on the canary's bad-event rate the sequential judge may promote on, or None: errorRate's
    max; for a latency builtin with max (the SLO edge the judge counts at), the share of requests its quantile
    lets be slower."""
    if metric.max is None:
        return None
    if metric.builtin == "errorRate":
        return metric.max if 0.0 < metric.max < 1.0 else None
    return _SLOW_SHARE.get(metric.builtin or "")


def tolerance_up(metric: AnalysisMetric, judge: Judge) -> float:
    relative = metric.relative_to_stable
    if relative is not None and relative.max_increase is not None:
        return relative.max_increase
    return judge.tolerance


def _clean(values: dict[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None and math.isfinite(v)}


def _result(
    metric: AnalysisMetric,
    verdict: Verdict,
    message: str,
    evidence: dict[str, float | None],
    *,
    value: float | None = None,
    stable_value: float | None = None,
) -> MetricResult:
    finite = [x if x is not None and math.isfinite(x) else None for x in (value, stable_value)]
    return MetricResult(
        name=metric.name,
        verdict=verdict,
        value=finite[0],
        stable_value=finite[1],
        message=clip(message),
        evidence=_clean(evidence) or None,
    )


# --- sequential ---------------------------------------------------------------------------------------------


def previous_evidence(metric: AnalysisMetric, previous: Sequence[AnalysisRun]) -> dict[str, float] | None:
    """The newest stored state of this metric's sequential test (runs are newest last)."""
    from modelrollout.analysis.judges import sequential  # noqa: PLC0415 - scipy (~70 MB) loads when first used

    for run in sorted(previous, key=lambda r: r.at, reverse=True):
        for result in run.metrics:
            evidence = result.evidence
            if result.name == metric.name and evidence and all(k in evidence for k in RAW_KEYS):  # noqa: SIM102
                if sequential.state_from_evidence(evidence) is not None:
                    return evidence
    return None


def _increase(now: float, before: float) -> float:
    # A sum of counters that went down had a reset (a pod restarted or went away): count what is there now.
    return now - before if now >= before else now


@dataclass(frozen=True, slots=True)
class RawCounts:
    """The four cumulative sums as Prometheus answered them now."""

    canary_bad: QueryResult
    canary_total: QueryResult
    stable_bad: QueryResult
    stable_total: QueryResult

    def values(self) -> tuple[float, float, float, float] | str:
        named = zip(RAW_KEYS, (self.canary_bad, self.canary_total, self.stable_bad, self.stable_total), strict=True)
        out: list[float] = []
        for key, answer in named:
            if answer.error is not None:
                return f"query for {key} failed: {answer.error}"
            out.append(answer.value if answer.has_data and answer.value is not None else 0.0)
        return out[0], out[1], out[2], out[3]


def judge_sequential(
    metric: AnalysisMetric,
    raw: RawCounts,
    *,
    previous: dict[str, float] | None,
    judge: Judge,
    min_requests: int,
    no_data: NoDataPolicy,
    what: str,
    tests: int = 1,
    first_window: RawCounts | None = None,
) -> MetricResult:
    """One run of the sequential test: the increases since the previous run are added to the stored state.
    `tests`: how many sequential metrics the run has; each gets alpha / tests (Bonferroni), so that a healthy
    canary is rolled back by any of them with probability at most alpha. `first_window`: for the first run (no
    `previous`), the increases over the run's window, counted before the counters are noted."""
    from modelrollout.analysis.judges import sequential  # noqa: PLC0415 - scipy (~70 MB) loads when first used

    values = raw.values()
    if isinstance(values, str):
        return _result(metric, "Error", values, {})
    raw_evidence: dict[str, float | None] = dict(zip(RAW_KEYS, values, strict=True))
    first = first_window.values() if previous is None and first_window is not None else None
    if previous is None and (first is None or isinstance(first, str)):
        # Without the window's increases the first run only notes where the counters stand: the test counts from
        # here, every request once.
        return _result(
            metric,
            "Inconclusive",
            f"sequential test of {what} starts: counters noted, the next run adds the requests since",
            {
                **raw_evidence,
                **dict.fromkeys(CUMULATIVE_KEYS, 0.0),
                **sequential.state_evidence(sequential.empty_state()),
            },
        )
    if previous is None:
        assert first is not None
        assert not isinstance(first, str)
        increases = [max(x, 0.0) for x in first]
        before: dict[str, float] = dict.fromkeys(CUMULATIVE_KEYS, 0.0)
        state = sequential.empty_state()
        started = "test starts on the last window: "
    else:
        increases = [_increase(now, previous[key]) for key, now in zip(RAW_KEYS, values, strict=True)]
        before = previous
        stored = sequential.state_from_evidence(previous)
        assert stored is not None  # previous_evidence only returns complete states
        state = stored
        started = ""
    window = sequential.Counts(*increases)
    tolerance = tolerance_up(metric, judge)
    alpha = judge.alpha / max(tests, 1)
    limit = max_rate(metric)
    decided = sequential.decide(
        state,
        window,
        alpha=alpha,
        tolerance=tolerance,
        min_requests=min_requests,
        max_rate=limit,
        canary_before=(before.get("canaryBad", 0.0), before.get("canaryRequests", 0.0)),
    )
    totals = [before.get(key, 0.0) + inc for key, inc in zip(CUMULATIVE_KEYS, increases, strict=True)]
    canary_bad, canary_requests, stable_bad, stable_requests = totals
    message = decided.message
    if decided.verdict == "Inconclusive" and limit is None and window.canary_total >= min_requests:
        message += (
            f"; stable had {stable_bad:g} bad events to compare with so far and {metric.name} has no max, so only "
            "the comparison can promote (a max lets a canary pass on its own rate)"
        )
    verdict = decided.verdict
    if verdict == "Inconclusive" and window.canary_total < min_requests and no_data == "fail":
        verdict = "Failed"  # noData pass never promotes here: a gap adds no evidence
    evidence: dict[str, float | None] = {
        **raw_evidence,
        **dict(zip(CUMULATIVE_KEYS, totals, strict=True)),
        **sequential.state_evidence(decided.log_likelihood),
        "logEvidence": decided.log_e,
        "logThreshold": math.log(1 / alpha),
        "alpha": alpha,
        "ratioLower": decided.lower,
        "ratioUpper": decided.upper,
        "ratioEstimate": decided.estimate,
        "tolerated": 1 + tolerance,
        "windowCanaryRequests": window.canary_total,
        "windowCanaryBad": window.canary_bad,
    }
    if decided.rate is not None:
        evidence |= {
            "rateUpper": decided.rate.upper,  # always-valid upper bound on the canary's own bad-event rate
            "rateLimit": decided.rate.limit,
            "rateLogEvidence": decided.rate.log_e,
        }
    return _result(
        metric,
        verdict,
        f"{what}: {started}{message}",
        evidence,
        value=canary_bad / canary_requests if canary_requests > 0 else None,
        stable_value=stable_bad / stable_requests if stable_requests > 0 else None,
    )


# --- mannWhitney --------------------------------------------------------------------------------------------


def compare_points(
    metric: AnalysisMetric, canary: Sequence[QueryResult], stable: Sequence[QueryResult], judge: Judge
) -> mann_whitney.Comparison | str:
    from modelrollout.analysis.judges import mann_whitney  # noqa: PLC0415 - scipy (~70 MB) loads when first used

    for answer in (*canary, *stable):
        if answer.error is not None:
            return f"query failed: {answer.error}"
    if canary and not canary[0].has_data:
        # The newest window has no canary data (a traffic gap): older points alone must not promote.
        return mann_whitney.Comparison(
            "NoData", False, 0, len(stable), message="no canary data in the latest window (no traffic?)"
        )
    relative = metric.relative_to_stable
    up_bad = metric.max is not None or (relative is not None and relative.max_increase is not None)
    down_bad = metric.min is not None or (relative is not None and relative.max_decrease is not None)
    return mann_whitney.compare(
        [a.value for a in canary if a.has_data and a.value is not None],
        [a.value for a in stable if a.has_data and a.value is not None],
        alpha=judge.alpha,
        max_increase=tolerance_up(metric, judge) if up_bad else None,
        max_decrease=(relative.max_decrease if relative and relative.max_decrease is not None else judge.tolerance)
        if down_bad
        else None,
    )


def mann_whitney_results(
    scored: Sequence[tuple[AnalysisMetric, mann_whitney.Comparison]], *, judge: Judge, no_data: NoDataPolicy
) -> tuple[list[MetricResult], Verdict]:
    from modelrollout.analysis.judges import mann_whitney  # noqa: PLC0415 - scipy (~70 MB) loads when first used

    items = [
        mann_whitney.Scored(group=m.group or m.name, weight=m.weight, comparison=c, critical=m.critical)
        for m, c in scored
    ]
    verdict, value = mann_whitney.run_verdict(items, pass_score=judge.pass_score, marginal_score=judge.marginal_score)
    missing = [m.name for m, c in scored if c.classification == "NoData"]
    if missing and verdict == "Successful" and no_data != "pass":
        verdict = "Inconclusive"  # never promote on missing data
    if missing and no_data == "fail":
        verdict = "Failed"
    results: list[MetricResult] = []
    for metric, c in scored:
        mine: Verdict = "Failed" if c.failed else "Inconclusive" if c.classification == "NoData" else "Successful"
        evidence = {**c.evidence(), "score": value, "passScore": float(judge.pass_score)}
        results.append(_result(metric, mine, f"{c.message}; run score {_score(value)}", evidence))
    return results, verdict


def _score(value: float | None) -> str:
    return "n/a (no data)" if value is None else f"{value:.0f}"
