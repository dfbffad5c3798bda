"""The tick contract itself: inputs untouched, time zones, conditions, stale and premature outcomes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from testkit.rollout import T0, V1, V2, V3, Sim, analysis, make_spec, run_for

from modelrollout.api.status import Condition, HistoryEntry, ModelDeploymentStatus
from modelrollout.rollout import tick
from modelrollout.rollout.conditions import sync_conditions

CANARY = {
    "strategy": "canary",
    "canary": {"steps": [{"setWeight": 10}, {"analysis": {"duration": "2m"}}, {"pause": {}}]},
    "analysis": analysis(),
}


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick(ModelDeploymentStatus(), make_spec(), target=V1, metrics=None, now=datetime(2026, 1, 1))


def test_the_status_passed_in_is_never_modified() -> None:
    sim = Sim.serving(make_spec(CANARY))
    status = sim.observed()
    frozen = status.model_dump()
    decision = tick(status, sim.spec, target=V2, metrics=None, now=sim.now)
    assert decision.status.canary == V2
    assert status.model_dump() == frozen


def test_an_outcome_is_accepted_when_due_and_ignored_before() -> None:
    sim = Sim.serving(make_spec(CANARY), script=lambda _r: None)
    sim.tick()
    sim.wait(1)
    assert sim.status.current_step == 1
    sim.run(until=lambda s: any(r.kind == "Step" for r in s.requests))
    step_request = next(r for r in sim.requests if r.kind == "Step")
    due = sim.decide(None, run_for(step_request, "Successful", sim.now))
    assert due.status.current_step == 2  # due now: accepted
    sim.now -= timedelta(seconds=300)
    premature = sim.decide(None, run_for(step_request, "Successful", sim.now))
    assert premature.status.current_step == 1  # before the step's window ended: ignored
    assert premature.status.analysis.runs == sim.status.analysis.runs


def test_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    status = ModelDeploymentStatus(canary=V2, phase="Progressing", message="one")
    sync_conditions(status, now=T0)
    later = T0 + timedelta(minutes=5)
    status.message = "two"
    sync_conditions(status, now=later)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.last_transition_time, progressing.message) == ("True", T0, "two")
    status.canary, status.phase = None, "Healthy"
    sync_conditions(status, now=later)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason, progressing.last_transition_time) == (
        "False",
        "RolloutComplete",
        later,
    )


def test_conditions_owned_by_others_are_left_alone() -> None:
    ready = Condition(type="Ready", status="True", reason="Serving", last_transition_time=T0)
    status = ModelDeploymentStatus(conditions=[ready], phase="RolledBack", message="rolled back")
    sync_conditions(status, now=T0 + timedelta(hours=1))
    assert status.conditions[0] == ready
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason, degraded.message) == ("True", "RolledBack", "rolled back")


def test_history_is_kept_whole_for_the_pass_to_trim_by_the_operator_setting() -> None:
    # One limit (settings.planning.history_limit, up to 100): the engine must not cut history shorter on its own.
    sim = Sim.serving(make_spec(CANARY))
    old = [
        HistoryEntry(revision=f"r{i:07d}", version=str(i), outcome="Superseded", started_at=T0, finished_at=T0)
        for i in range(40)
    ]
    sim.status = sim.status.model_copy(update={"history": old})
    sim.tick()
    decision = tick(sim.observed(), sim.spec, target=V3, metrics=None, now=sim.now)  # supersedes version 2
    assert decision.status.history[:40] == old
    assert decision.status.history[-1].outcome == "Superseded"
    assert len(decision.status.history) == 41
