"""All rollout state is in status: a restarted operator decides exactly as the running one would.

Every Sim tick already recomputes each decision from status after a round trip through its wire form; these
tests add a restart in the middle of whole rollouts, and check that a tick is a fixpoint: deciding again at
the same instant from its own result changes nothing and says nothing new."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from testkit.rollout import Sim, always, analysis, make_spec

from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.rollout import EnsureRevision, RequestAnalysis, tick

ROLLOUTS: dict[str, dict[str, Any]] = {
    "canary": {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"analysis": {}}, {"setWeight": 60}]},
        "analysis": analysis(),
    },
    "canary-service": {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 30}, {"pause": {"duration": "1m"}}]},
        "trafficRouting": {"provider": "service"},
    },
    "blueGreen": {"strategy": "blueGreen", "blueGreen": {"postPromotionWindow": "2m"}, "analysis": analysis()},
    "shadow": {"strategy": "shadow", "shadow": {"duration": "3m"}, "analysis": analysis()},
    "direct": {"strategy": "direct"},
}


def finish(sim: Sim) -> None:
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "Healthy" and not s.status.scale_downs, step_s=7)


@pytest.mark.parametrize("strategy", list(ROLLOUTS))
@pytest.mark.parametrize("restart_after", [1, 3, 8, 20])
def test_a_restart_anywhere_ends_in_the_same_place(strategy: str, restart_after: int) -> None:
    spec = make_spec(ROLLOUTS[strategy])
    straight = Sim.serving(spec)
    finish(straight)

    first = Sim.serving(spec)
    first.tick()
    for _ in range(restart_after):
        first.wait(7)
    # A new operator process: nothing but the stored status (and the cluster) survives.
    stored = ModelDeploymentStatus.model_validate(first.status.to_wire())
    second = Sim(spec=spec, target=first.target, status=stored, now=first.now, pods=dict(first.pods))
    second.weights, second.mirror = first.weights, first.mirror
    second.run(until=lambda s: s.status.phase == "Healthy" and not s.status.scale_downs, step_s=7)

    assert second.status.stable == straight.status.stable
    assert second.outcomes == straight.outcomes
    assert second.weights == straight.weights == (100, 0)
    assert second.pods == straight.pods


@pytest.mark.parametrize("strategy", list(ROLLOUTS))
def test_deciding_again_at_the_same_instant_changes_nothing(strategy: str) -> None:
    sim = Sim.serving(make_spec(ROLLOUTS[strategy]), script=always("Successful"))
    sim.tick()
    checked = 0
    while sim.status.phase != "Healthy" and checked < 200:
        sim.wait(7)
        observed = sim.observed(sim.observed_pods)  # the same observations, the new status
        again = tick(observed, sim.spec, target=sim.target, metrics=None, now=sim.now)
        # Only what a waiting state re-asks for may come back: pods it waits on, an analysis still due.
        assert all(isinstance(a, EnsureRevision | RequestAnalysis) for a in again.actions), again.actions
        assert again.status.model_dump(exclude={"message"}) == observed.model_dump(exclude={"message"})
        checked += 1
    assert sim.status.phase == "Healthy"
    assert checked >= 1


def test_time_alone_wakes_the_operator_exactly_when_something_is_due() -> None:
    sim = Sim.serving(make_spec(ROLLOUTS["canary"]))
    sim.tick()
    sim.tick()
    wake = sim.decisions[-1].wake_at
    assert wake is not None
    assert wake == sim.status.analysis.next_run_at
    before = sim.status.model_copy(deep=True)
    sim.now = wake - timedelta(seconds=1)
    sim.tick()
    assert sim.status.analysis.runs == before.analysis.runs
    sim.now = wake
    sim.tick()
    assert len(sim.status.analysis.runs) == 1
