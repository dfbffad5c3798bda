"""The judges, pure: measurements in, a verdict with its evidence out; run.py asks Prometheus for what each needs.

- threshold (threshold.py): bounds on one window, what Flagger and Argo Rollouts do.
- sequential (sequential.py): a mixture SPRT on counts of bad events, always valid across runs; its state is
  carried from run to run in status (MetricResult.evidence).
- mannWhitney (mann_whitney.py): Kayenta's Mann-Whitney / Hodges-Lehmann classification and score.

Each judge module exposes a `decide`-style function over plain numbers, so the replay harness
(bench/decisions) calls exactly the code the operator runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelrollout.api.status import MetricResult, Verdict


class RunJudge(Protocol):
    """What the operator needs from a judge: the metric results of one run and the run's verdict (the worst
    metric for threshold and sequential; the score for mannWhitney)."""

    def __call__(self, results: Sequence[MetricResult]) -> Verdict: ...
