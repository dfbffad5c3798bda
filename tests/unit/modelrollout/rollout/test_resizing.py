"""The size of what serves follows the spec: online.replicas (or the autoscaler's floor) changed on a serving
ModelDeployment resizes its stable revision in the next tick, with an event; mid-rollout each role's share is of
the new total. A restarted operator decides the same (Sim checks every tick)."""

from __future__ import annotations

from typing import Any

from testkit.rollout import V1, V2, Sim, make_spec

from modelrollout.rollout import EnsureRevision, SetWeights

CANARY: dict[str, Any] = {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}


def resized(sim: Sim, replicas: int, **online: Any) -> None:
    sim.spec = make_spec(sim.spec.rollout.to_wire(), replicas=replicas, **online)


def test_more_replicas_reach_the_stable_revision_in_one_tick_with_an_event() -> None:
    sim = Sim.serving(make_spec({"strategy": "direct"}, replicas=1), target=V1)
    resized(sim, 3)
    decision = sim.tick()
    assert EnsureRevision(revision=V1, role="stable", replicas=3) in decision.actions
    assert sim.asked[V1.revision] == 3
    [event] = sim.events("Scaled")
    assert "runs 3 pods instead of 1" in event.message
    assert sim.status.phase == "Healthy"
    sim.wait(30)
    assert len(sim.events("Scaled")) == 1, "said once: the next tick finds the size it asked for"


def test_fewer_replicas_and_down_to_zero_and_back() -> None:
    sim = Sim.serving(make_spec({"strategy": "direct"}, replicas=4), target=V1)
    for replicas in (2, 0, 3):
        resized(sim, replicas)
        sim.tick()
        assert sim.asked[V1.revision] == replicas
    assert [e.message.split(" runs ")[1] for e in sim.events("Scaled")] == [
        "2 pods instead of 4: the spec asks for 2 at full size",
        "0 pods instead of 2: the spec asks for 0 at full size",
        "3 pods instead of 0: the spec asks for 3 at full size",
    ]


def test_the_autoscalers_floor_is_the_size_that_follows() -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 6}
    sim = Sim.serving(make_spec({"strategy": "direct"}, autoscaling=autoscaling), target=V1)
    assert sim.asked[V1.revision] == 2
    resized(sim, 1, autoscaling={"minReplicas": 4, "maxReplicas": 6})
    sim.tick()
    assert sim.asked[V1.revision] == 4


def test_mid_rollout_the_canary_keeps_its_share_of_the_new_total() -> None:
    sim = Sim.serving(make_spec(CANARY, replicas=4))
    sim.run(until=lambda s: s.status.current_step == 1)
    assert (sim.asked[V1.revision], sim.asked[V2.revision]) == (4, 2)
    resized(sim, 8)
    decision = sim.tick()
    assert EnsureRevision(revision=V1, role="stable", replicas=8) in decision.actions
    assert EnsureRevision(revision=V2, role="canary", replicas=4) in decision.actions
    assert sim.weights == (50, 50), "the router's weights are the step's, whatever the size"
    assert sim.status.paused, "the step is not re-run or skipped"
    sim.tick("promote")
    sim.tick()
    assert sim.status.stable == V2
    assert sim.asked[V2.revision] == 8, "promoted at the new full size"


def test_with_the_service_provider_the_weight_is_the_new_pod_ratio() -> None:
    rollout = {
        **CANARY,
        "canary": {"steps": [{"setWeight": 30}, {"pause": {}}]},
        "trafficRouting": {"provider": "service"},
    }
    sim = Sim.serving(make_spec(rollout, replicas=3))
    sim.run(until=lambda s: s.status.current_step == 1)
    assert (sim.asked[V1.revision], sim.asked[V2.revision], sim.status.weights.canary) == (2, 1, 33)
    resized(sim, 10)
    decision = sim.tick()
    assert (sim.asked[V1.revision], sim.asked[V2.revision]) == (7, 3)
    assert SetWeights(stable=70, canary=30) in decision.actions, "3 of 10 pods is 30%: the weight follows"
    assert sim.status.weights.canary == 30


def test_a_candidate_warming_up_at_zero_percent_keeps_the_pods_its_step_asked_for() -> None:
    sim = Sim.serving(make_spec(CANARY, replicas=4), auto_ready=False)
    sim.tick()
    assert sim.asked[V2.revision] == 2  # the first step sizes the canary for 50% before it gets traffic
    resized(sim, 2)
    decision = sim.tick()
    assert EnsureRevision(revision=V2, role="canary", replicas=1) in decision.actions, "its step resized it"
    assert EnsureRevision(revision=V1, role="stable", replicas=2) in decision.actions


def test_a_blue_green_preview_runs_at_the_new_full_size() -> None:
    rollout = {"strategy": "blueGreen", "blueGreen": {"autoPromote": False}}
    sim = Sim.serving(make_spec(rollout, replicas=2))
    sim.run(until=lambda s: s.asked.get(V2.revision) == 2 and s.status.paused)
    resized(sim, 3)
    sim.tick()
    assert (sim.asked[V1.revision], sim.asked[V2.revision]) == (3, 3)
