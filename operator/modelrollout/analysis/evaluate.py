"""The threshold judge, pure: measurements in, a verdict with its evidence out.

A metric's verdict comes from, in order: query errors (Error), too few observations in the window or an empty
or NaN value (the noData policy), then its absolute bounds (min, max) and its bounds relative to the stable
revision over the same window. A run's verdict is the worst of its metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import AnalysisMetric, NoDataPolicy
from modelrollout.api.status import MetricResult, Verdict

MESSAGE_LIMIT = 1024  # MetricResult.message's maxLength in the CRD
_NO_DATA_VERDICT: dict[NoDataPolicy, Verdict] = {"inconclusive": "Inconclusive", "fail": "Failed", "pass": "Successful"}
# Failed outranks Error: a metric that did fail decides the run even when another one could not be measured.
_SEVERITY: dict[Verdict, int] = {"Successful": 0, "Inconclusive": 1, "Error": 2, "Failed": 3}


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: float | None) -> float | None:
    # Status is JSON: NaN and infinities cannot be stored, so they are described in the message instead.
    return value if value is not None and math.isfinite(value) else None


def _evidence(values: dict[str, float | None]) -> dict[str, float]:
    return {key: v for key, value in values.items() if (v := _finite(value)) is not None}


def _number(result: QueryResult) -> float | None:
    return result.value if result.has_data else None


def _result(
    metric: AnalysisMetric,
    verdict: Verdict,
    message: str,
    *,
    value: float | None = None,
    stable_value: float | None = None,
    evidence: dict[str, float | None] | None = None,
) -> MetricResult:
    return MetricResult(
        name=metric.name,
        verdict=verdict,
        value=_finite(value),
        stable_value=_finite(stable_value),
        message=clip(message),
        evidence=_evidence(evidence) if evidence else None,
    )


def error_result(metric: AnalysisMetric, message: str) -> MetricResult:
    return _result(metric, "Error", message)


def _bounds(metric: AnalysisMetric, value: float, stable: float | None) -> tuple[list[str], dict[str, float | None]]:
    failures: list[str] = []
    evidence: dict[str, float | None] = {"min": metric.min, "max": metric.max}
    if metric.min is not None and value < metric.min:
        failures.append(f"{value:g} is below min {metric.min:g}")
    if metric.max is not None and value > metric.max:
        failures.append(f"{value:g} is above max {metric.max:g}")
    relative = metric.relative_to_stable
    if relative is not None and stable is not None:
        # Multiplied, not divided: a stable value of 0 needs no special case (any increase over 0 fails).
        if relative.max_increase is not None:
            upper = stable * (1 + relative.max_increase)
            evidence["maxAllowed"] = upper
            if value > upper:
                failures.append(
                    f"{value:g} exceeds stable {stable:g} by more than {relative.max_increase:.0%} (limit {upper:g})"
                )
        if relative.max_decrease is not None:
            lower = stable * (1 - relative.max_decrease)
            evidence["minAllowed"] = lower
            if value < lower:
                failures.append(
                    f"{value:g} is below stable {stable:g} by more than {relative.max_decrease:.0%} (limit {lower:g})"
                )
    return failures, evidence


def evaluate_metric(
    metric: AnalysisMetric,
    *,
    canary: QueryResult,
    stable: QueryResult | None,
    samples: QueryResult,
    min_samples: int,
    sample_noun: str = "requests",
    no_data: NoDataPolicy,
) -> MetricResult:
    """One metric's verdict. `stable` is None when the metric has no relative bound or there is no stable
    revision; `samples` counts the observations behind the value (requests or shadow comparisons)."""
    for what, result in (("canary", canary), ("stable", stable), (sample_noun, samples)):
        if result is not None and result.error is not None:
            return error_result(metric, f"query for {what} failed: {result.error}")

    def policy(reason: str, **values: float | None) -> MetricResult:
        return _result(
            metric,
            _NO_DATA_VERDICT[no_data],
            f"{reason} (noData: {no_data})",
            value=canary.value,
            stable_value=stable.value if stable else None,
            evidence={"samples": count, "minSamples": float(min_samples), **values},
        )

    count = _number(samples) or 0.0
    if count < min_samples:
        return policy(f"only {count:g} {sample_noun} in the window, fewer than the {min_samples} needed")
    value = _number(canary)
    if value is None:
        return policy("no data for the candidate")
    stable_value: float | None = None
    if metric.relative_to_stable is not None:
        stable_value = _number(stable) if stable is not None else None
        if stable_value is None:
            return policy("no data for the stable revision to compare with")

    failures, evidence = _bounds(metric, value, stable_value)
    evidence.update({"value": value, "stable": stable_value, "samples": count})
    if not math.isfinite(value):
        failures = failures or [f"value is {value}"]
    verdict: Verdict = "Failed" if failures else "Successful"
    message = "; ".join(failures) if failures else f"{value:g} is within bounds"
    return _result(metric, verdict, message, value=value, stable_value=stable_value, evidence=evidence)


def run_verdict(results: Iterable[MetricResult]) -> Verdict:
    """The worst verdict of a run's metrics; a run with no metrics decides nothing."""
    verdicts = [r.verdict for r in results]
    if not verdicts:
        return "Inconclusive"
    return max(verdicts, key=_SEVERITY.__getitem__)
