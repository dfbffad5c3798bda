"""ModelDeployments in the states `status` must show, produced by the real rollout state machine (testkit.rollout
drives `tick`), so the views are tested against statuses the operator really writes."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console, RenderableType
from testkit.rollout import Sim, always, analysis, make_spec

from modelrollout.analysis.ab_test import Arm
from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.resource import ModelDeployment, ObjectMeta
from modelrollout.api.status import AnalysisRun, MetricResult, ModelDeploymentStatus
from modelrollout.rollout import Verb

CANARY_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {"duration": "2m"}},
    {"analysis": {}},
    {"setWeight": 50},
    {"pause": {}},
]


def text(renderable: RenderableType, width: int = 120) -> str:
    """What a pipe (no terminal, no colours) receives."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def resource(sim: Sim, name: str = "churn", namespace: str = "prod") -> ModelDeployment:
    return ModelDeployment(
        metadata=ObjectMeta(name=name, namespace=namespace, generation=1), spec=sim.spec, status=sim.status
    )


def canary_spec(**settings: Any) -> Any:
    return make_spec({"strategy": "canary", "canary": {"steps": CANARY_STEPS}, "analysis": analysis(**settings)})


def canary_at_timed_pause() -> Sim:
    """setWeight 10 done (once the canary pods were ready), the 2-minute pause (step 1) just begun."""
    sim = Sim.serving(canary_spec())
    sim.tick()
    sim.wait(30)
    assert (sim.status.current_step, sim.status.phase) == (1, "Progressing"), sim.status.message
    return sim


def canary_paused_at_last_step() -> Sim:
    sim = Sim.serving(canary_spec())
    sim.tick()
    sim.run(until=lambda s: s.status.paused, step_s=30)
    assert (sim.status.current_step, sim.status.pause_reason) == (4, "PauseStep")
    return sim


def canary_paused_by_user() -> Sim:
    sim = canary_at_timed_pause()
    sim.tick(Verb(name="pause", id="verb-7f3a"))
    assert sim.status.pause_reason == "User"
    return sim


def canary_promoting() -> Sim:
    sim = canary_at_timed_pause()
    sim.auto_ready = False  # the candidate's full size never becomes ready: promotion stays in progress
    sim.tick(Verb(name="promote", full=True, id="verb-full"))
    assert sim.status.phase == "Promoting"
    return sim


def canary_rolled_back() -> Sim:
    """Background analysis fails while at 10 %: rolled back, the candidate held, the rollout in history."""
    sim = Sim.serving(canary_spec(), script=always("Failed"))
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    return sim


def blue_green_waiting_for_promote() -> Sim:
    settings = {"autoPromote": False, "postPromotionWindow": "5m"}
    spec = make_spec({"strategy": "blueGreen", "blueGreen": settings, "analysis": analysis()})
    sim = Sim.serving(spec)
    sim.tick()
    sim.run(until=lambda s: s.status.paused, step_s=10)
    return sim


def shadow_comparing() -> Sim:
    spec = make_spec(
        {
            "strategy": "shadow",
            "shadow": {"duration": "10m"},
            "analysis": analysis(),
            "trafficRouting": {"provider": "router"},
        }
    )
    sim = Sim.serving(spec)
    sim.tick()
    sim.wait(60)
    return sim


def direct_healthy() -> Sim:
    return Sim.serving(make_spec({"strategy": "direct"}))


def ab_test_running() -> Sim:
    """An A/B test two evaluations in: the candidate converts better but has too few samples to win yet."""
    spec = make_spec(
        {
            "strategy": "abTest",
            "abTest": {
                "routeBy": {"header": "x-user-id"},
                "successMetric": {"successes": "s", "trials": "t"},
                "minSamples": 5000,
            },
            "analysis": analysis(),
            "trafficRouting": {"provider": "router"},
        }
    )

    def counts(request: AnalysisRequest, _now: datetime) -> tuple[Arm, Arm]:
        n = int(request.window_seconds * 10)
        return Arm(n // 10, n), Arm(n // 5, n)

    sim = Sim.serving(spec, counts=counts)
    sim.tick()
    sim.tick()
    sim.wait(30)
    sim.wait(30)
    return sim


def with_failed_run(status: ModelDeploymentStatus, at: datetime) -> ModelDeploymentStatus:
    """`status` plus a Step run whose metrics carry values, stable values and reasons (as Prometheus gives)."""
    run = AnalysisRun(
        at=at,
        verdict="Failed",
        kind="Step",
        step=2,
        metrics=[
            MetricResult(
                name="p95-latency", verdict="Failed", value=0.31, message="0.31 > max 0.2 (p95 over 30s, 412 requests)"
            ),
            MetricResult(name="errors", verdict="Successful", value=0.002, message="0.002 <= max 0.01"),
            MetricResult(
                name="vs-stable",
                verdict="Failed",
                value=0.31,
                stable_value=0.12,
                message="canary 0.31 vs stable 0.12: +158% > maxIncrease 10%",
            ),
            MetricResult(name="custom", verdict="Inconclusive", message="no data for version 7"),
        ],
    )
    analysis_status = status.analysis.model_copy(
        update={
            "runs": [*status.analysis.runs, run],
            "failures": 2,
            "consecutive_failures": 2,
            "next_run_at": at + timedelta(seconds=30),
        }
    )
    return status.model_copy(update={"analysis": analysis_status})
