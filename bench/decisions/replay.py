"""The real rollout state machine (`modelrollout.rollout.tick`, driven by the operator's own pass loop
`planning.decide.decide_pass` through testkit/rollout.Sim, as the rollout unit tests are) replaying the
verdict a judge reached.

Only verdicts that change the rollout are replayed: with failureLimit 0 and an inconclusiveLimit above the
horizon, Inconclusive runs (and Successful background runs before the analysis step is due) change nothing but
counters, so the replay jumps the clock from the moment the canary gets traffic straight to the decisive run
and answers it. `tick` is deterministic, so replays are memoised by (run index, verdict).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from testkit.rollout import V2, Sim, make_spec

from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.status import Verdict

STEP_SECONDS = 300  # the analysis step's duration: the earliest a canary may be promoted


def spec(weight: int, interval_s: int, metrics: list[dict[str, Any]], judge: dict[str, Any]) -> Any:
    return make_spec(
        rollout={
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": weight}, {"analysis": {"duration": f"{STEP_SECONDS}s"}}]},
            "analysis": {
                "interval": f"{interval_s}s",
                "failureLimit": 0,
                "inconclusiveLimit": 1000,
                "metrics": metrics,
                "judge": judge,
            },
        }
    )


@dataclass(frozen=True, slots=True)
class Replayed:
    outcome: str  # RolledBack | Promoted | Undecided
    seconds: float  # from the canary's first traffic to the tick that decided
    kinds: tuple[str, ...]  # the kinds of the runs the decisive tick asked for


@functools.cache
def _started(weight: int, interval_s: int) -> tuple[Sim, float]:
    metrics = [
        {"name": "errors", "builtin": "errorRate", "relativeToStable": {"maxIncrease": 0.5}},
        {"name": "p99", "builtin": "latencyP99", "max": 0.25, "relativeToStable": {"maxIncrease": 0.1}},
    ]
    sim = Sim.serving(spec(weight, interval_s, metrics, {"type": "threshold"}), script=lambda _r: None)
    for _ in range(20):
        sim.wait(1)
        if sim.weights[1] == weight:
            return sim, sim.now.timestamp()
    raise AssertionError(f"the canary never got {weight}%: {sim.status.phase} {sim.status.message}")


@functools.cache
def replay(weight: int, interval_s: int, run_index: int, verdict: Verdict) -> Replayed:
    """Run `run_index` (1-based: the run one interval after the canary got traffic) answered with `verdict`."""
    template, traffic_at = _started(weight, interval_s)
    sim = Sim(
        spec=template.spec,
        target=template.target,
        status=template.status.model_copy(deep=True),
        now=template.now,
        pods=dict(template.pods),
        weights=template.weights,
    )
    asked: list[AnalysisRequest] = []

    def script(request: AnalysisRequest) -> Verdict:
        asked.append(request)
        return verdict

    sim.script = script
    sim.now += timedelta(seconds=run_index * interval_s)
    sim.tick()
    decided_at = sim.now.timestamp() - traffic_at
    for _ in range(10):  # promotion takes a few ticks (Promoting, then the stable role moves)
        if sim.status.history and sim.status.history[-1].revision == V2.revision:
            break
        sim.script = lambda _r: "Successful"
        sim.wait(1)
    outcomes = [h.outcome for h in sim.status.history if h.revision == V2.revision]
    outcome = outcomes[-1] if outcomes else "Undecided"
    return Replayed(outcome, decided_at, tuple(str(r.kind) for r in asked))
