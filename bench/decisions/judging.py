"""Every judge on every seed's streams, run by run: the verdict sequence each judge produces, cut at the first
run that decides the rollout. The judges are the operator's own functions, fed the numbers Prometheus would
answer for each run (window increases, histogram quantiles):

- threshold: `evaluate_metric` per metric over the run's window (a step run covers the step's 5 minutes, a
  background run one interval), then `run_verdict`;
- sequential: `sequential.decide` per metric on the counts since the previous run (errors; requests slower than
  the 0.25 s bucket edge), the state and the canary's cumulative counts carried from run to run as status carries
  them; the first run counts its own window, as the operator's first run counts the increases over its window;
- mannWhitney: `judged.compare_points` per metric on the last 6 one-interval points, then
  `judged.mann_whitney_results` (score, critical, no-data rules).
Every judge also honours run_analysis' traffic-gap rule (no Successful run without canary requests in the last
rate window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from bench.decisions.replay import STEP_SECONDS
from bench.decisions.streams import SCRAPE_S, Streams, histogram_quantile

from modelrollout.analysis import judged
from modelrollout.analysis.evaluate import evaluate_metric, run_verdict
from modelrollout.analysis.judges import sequential
from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import AnalysisMetric, Judge
from modelrollout.api.status import MetricResult, Verdict

INTERVAL_S = 60
RATE_FLOOR_SCRAPES = 4  # run_analysis' traffic-gap rule looks at the canary's requests over 4 scrapes
SLO_BUCKET = 9  # buckets[9:] are slower than 0.25 s (EDGES[8])
MIN_REQUESTS = 20
MW_POINTS = 6

ERRORS = {"name": "errors", "builtin": "errorRate", "relativeToStable": {"maxIncrease": 0.5}}
P99 = {"name": "p99", "builtin": "latencyP99", "relativeToStable": {"maxIncrease": 0.1}}
JUDGES: dict[str, dict[str, Any]] = {
    # What a user would write: errors at most +50% of stable's, p99 at most +10% of stable's.
    "threshold": {"judge": Judge(type="threshold"), "metrics": [ERRORS, P99]},
    # Bounds loosened until a healthy canary is rarely rolled back (errors up to 2.5 x stable's, p99 up to
    # 2 x stable's): the fixed threshold at a false rollback rate comparable with the statistical judges'.
    "threshold-loose": {
        "judge": Judge(type="threshold"),
        "metrics": [
            {**ERRORS, "relativeToStable": {"maxIncrease": 1.5}},
            {**P99, "relativeToStable": {"maxIncrease": 1.0}},
        ],
    },
    # Bounds loosened further until the worst healthy scenario's false rollback rate is within alpha (5%), as the
    # statistical judges' are: errors up to 9 x stable's, p99 up to 2 x. Calibrated on 300 seeds of every healthy
    # scenario (errors 8 x gave 5.7% on 0.1% errors at 20%; no factor up to 15 x went below 2% there, because a
    # window in which stable has no error at all fails any canary error).
    "threshold-matched": {
        "judge": Judge(type="threshold"),
        "metrics": [
            {**ERRORS, "relativeToStable": {"maxIncrease": 8.0}},
            {**P99, "relativeToStable": {"maxIncrease": 1.0}},
        ],
    },
    # The same, checked every 15 s like sequential-15s: what peeking at a fixed threshold costs in false rollbacks.
    "threshold-matched-15s": {
        "judge": Judge(type="threshold"),
        "metrics": [
            {**ERRORS, "relativeToStable": {"maxIncrease": 8.0}},
            {**P99, "relativeToStable": {"maxIncrease": 1.0}},
        ],
        "interval_s": 15,
    },
    # The same tolerance for errors; latency as the share of requests slower than the 0.25 s SLO bucket edge,
    # at most +50% of stable's share.
    "sequential": {
        "judge": Judge(type="sequential", alpha=0.05),
        "metrics": [ERRORS, {**P99, "max": 0.25, "relativeToStable": {"maxIncrease": 0.5}}],
    },
    # The same test after every scrape: always valid, so checking 4 times as often costs no false rollbacks.
    "sequential-15s": {
        "judge": Judge(type="sequential", alpha=0.05),
        "metrics": [ERRORS, {**P99, "max": 0.25, "relativeToStable": {"maxIncrease": 0.5}}],
        "interval_s": 15,
    },
    "mannWhitney": {"judge": Judge(type="mannWhitney", alpha=0.05), "metrics": [ERRORS, P99]},
}


@dataclass(frozen=True, slots=True)
class Decision:
    run: int  # 1-based run index of the decisive run; 0: undecided within the horizon
    verdict: Verdict
    in_gap: bool  # the decisive run's last interval had no canary request


class Windows:
    """Per-run sums of the streams: run j covers scrapes [(j-1)*per_run, j*per_run)."""

    def __init__(self, s: Streams, interval_s: int = INTERVAL_S, error_max: float | None = None) -> None:
        self.interval_s = interval_s
        self.error_max = error_max  # the scenario's absolute max on errors, added to every judge's errors metric
        self.per_run = per_run = interval_s // SCRAPE_S
        self.step_run = STEP_SECONDS // interval_s  # the first run at which the analysis step is due
        runs = s.requests.shape[2] // per_run
        cut = runs * per_run
        shape = (2, s.requests.shape[1], runs, per_run)
        self.runs = runs
        self.canary_scrapes = s.requests[1]
        self.requests = s.requests[..., :cut].reshape(shape).sum(-1)
        self.errors = s.errors[..., :cut].reshape(shape).sum(-1)
        self.buckets = s.buckets[:, :, :cut].reshape((*shape, -1)).sum(3)  # (rev, seed, run, bucket)
        self.slow = self.buckets[..., SLO_BUCKET:].sum(-1)
        self.p99 = histogram_quantile(0.99, self.buckets)  # per one-interval window
        with np.errstate(invalid="ignore", divide="ignore"):
            self.error_rate = self.errors / self.requests


def _metric(spec: dict[str, Any]) -> AnalysisMetric:
    return AnalysisMetric.model_validate(spec)


def _metrics(config: dict[str, Any], w: Windows) -> list[AnalysisMetric]:
    specs = config["metrics"]
    if w.error_max is not None:
        specs = [{**m, "max": w.error_max} if m["name"] == "errors" else m for m in specs]
    return [_metric(m) for m in specs]


def _q(value: float) -> QueryResult:
    return QueryResult.of(float(value)) if math.isfinite(value) else QueryResult.empty()


def _threshold(w: Windows, seed: int, j: int, runs_back: int, metrics: list[AnalysisMetric]) -> Verdict:
    lo = max(0, j - runs_back)
    req = w.requests[:, seed, lo:j].sum(-1)
    err = w.errors[:, seed, lo:j].sum(-1)
    p99 = histogram_quantile(0.99, w.buckets[:, seed, lo:j].sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = err / req
    values = {"errors": rate, "p99": p99}
    results: list[MetricResult] = [
        evaluate_metric(
            m,
            canary=_q(values[m.name][1]),
            stable=_q(values[m.name][0]),
            samples=QueryResult.of(float(req[1])),
            min_samples=MIN_REQUESTS,
            no_data="inconclusive",
        )
        for m in metrics
    ]
    return run_verdict(results)


def _in_gap(w: Windows, seed: int, j: int) -> bool:
    end = j * w.per_run
    return bool(w.canary_scrapes[seed, max(0, end - RATE_FLOOR_SCRAPES) : end].sum() == 0)


def _gap_rule(verdict: Verdict, w: Windows, seed: int, j: int) -> Verdict:
    return "Inconclusive" if verdict == "Successful" and _in_gap(w, seed, j) else verdict


def decide_threshold(w: Windows, seed: int, config: dict[str, Any]) -> Decision:
    metrics = _metrics(config, w)
    for j in range(1, w.runs + 1):
        if j >= w.step_run:  # the step's run (over the step's duration) is asked first
            step = _gap_rule(_threshold(w, seed, j, w.step_run, metrics), w, seed, j)
            if step in ("Successful", "Failed"):
                return Decision(j, step, _in_gap(w, seed, j))
        background = _threshold(w, seed, j, 1, metrics)
        if background == "Failed":
            return Decision(j, "Failed", _in_gap(w, seed, j))
    return Decision(0, "Inconclusive", False)


def decide_sequential(w: Windows, seed: int, config: dict[str, Any]) -> Decision:
    judge: Judge = config["judge"]
    metrics = _metrics(config, w)
    states = {m.name: sequential.empty_state() for m in metrics}
    bad = {"errors": w.errors, "p99": w.slow}
    before = {m.name: (0.0, 0.0) for m in metrics}  # the canary's (bad, requests) so far, as status keeps them
    for j in range(1, w.runs + 1):
        verdicts: list[MetricResult] = []
        for m in metrics:
            counts = sequential.Counts(
                canary_bad=float(bad[m.name][1, seed, j - 1]),
                canary_total=float(w.requests[1, seed, j - 1]),
                stable_bad=float(bad[m.name][0, seed, j - 1]),
                stable_total=float(w.requests[0, seed, j - 1]),
            )
            result = sequential.decide(
                states[m.name],
                counts,
                alpha=judge.alpha / len(metrics),  # as run_analysis: Bonferroni over the sequential metrics
                tolerance=judged.tolerance_up(m, judge),
                min_requests=MIN_REQUESTS,
                max_rate=judged.max_rate(m),
                canary_before=before[m.name],
            )
            states[m.name] = result.log_likelihood
            b, n = before[m.name]
            before[m.name] = (b + counts.canary_bad, n + counts.canary_total)
            verdicts.append(MetricResult(name=m.name, verdict=result.verdict))
        verdict = _gap_rule(run_verdict(verdicts), w, seed, j)
        if verdict == "Failed" or (verdict == "Successful" and j >= w.step_run):
            return Decision(j, verdict, _in_gap(w, seed, j))
    return Decision(0, "Inconclusive", False)


def decide_mann_whitney(w: Windows, seed: int, config: dict[str, Any]) -> Decision:
    judge: Judge = config["judge"]
    metrics = _metrics(config, w)
    series = {"errors": w.error_rate, "p99": w.p99}
    for j in range(1, w.runs + 1):
        points = range(j - 1, max(-1, j - 1 - MW_POINTS), -1)  # newest first, as run.py asks them
        compared = []
        for m in metrics:
            values = series[m.name][:, seed]
            canary = [_q(values[1, i]) for i in points]
            stable = [_q(values[0, i]) for i in points]
            comparison = judged.compare_points(m, canary, stable, judge)
            assert not isinstance(comparison, str)
            compared.append((m, comparison))
        _, verdict = judged.mann_whitney_results(compared, judge=judge, no_data="inconclusive")
        verdict = _gap_rule(verdict, w, seed, j)
        if verdict == "Failed" or (verdict == "Successful" and j >= w.step_run):
            return Decision(j, verdict, _in_gap(w, seed, j))
    return Decision(0, "Inconclusive", False)


_BY_TYPE = {"threshold": decide_threshold, "sequential": decide_sequential, "mannWhitney": decide_mann_whitney}


def decide(judge: str, w: Windows, seed: int) -> Decision:
    config = JUDGES[judge]
    return _BY_TYPE[config["judge"].type](w, seed, config)
