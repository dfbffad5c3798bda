"""A new target while a rollout is in progress, and targets that come back."""

from __future__ import annotations

from typing import Any

from testkit.rollout import V1, V2, V3, Sim, always, analysis, make_spec, run_for

from modelrollout.rollout import ScaleDown, SetMirror, SetWeights

STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}]


def rolling(rollout: dict[str, Any] | None = None) -> Sim:
    sim = Sim.serving(make_spec(rollout or {"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis()}))
    sim.tick()
    sim.tick()
    return sim


def test_a_new_target_supersedes_the_candidate_and_starts_over() -> None:
    sim = rolling()
    assert sim.weights == (80, 20)
    sim.run(until=lambda s: s.status.analysis.runs != [])
    sim.target = V3
    decision = sim.tick()
    assert sim.outcomes[-1] == (V2.revision, "Superseded")
    assert "superseded by revision cccc3333" in (sim.status.history[-1].message or "")
    assert SetWeights(stable=100, canary=0) in decision.actions
    assert ScaleDown(revision=V2.revision, reason="superseded") in decision.actions
    assert sim.status.canary == V3
    assert sim.status.stable == V1
    assert sim.status.current_step == 0
    assert sim.status.analysis.runs == []  # a fresh rollout, fresh counters
    assert sim.events("Superseded")[0].type == "Normal"
    sim.tick()
    assert sim.weights == (80, 20)


def test_the_spec_going_back_to_stable_cancels_the_rollout() -> None:
    sim = rolling()
    sim.target = V1
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.status.canary is None
    assert sim.weights == (100, 0)
    assert "asks for the stable revision aaaa1111" in (sim.status.history[-1].message or "")
    assert sim.outcomes[-1] == (V2.revision, "Superseded")


def test_superseding_a_shadow_stops_the_mirror() -> None:
    sim = rolling({"strategy": "shadow", "shadow": {"duration": "10m"}, "analysis": analysis()})
    assert sim.mirror == 100
    sim.target = V3
    decision = sim.tick()
    assert decision.actions[0] == SetMirror(percent=0)
    assert sim.status.canary == V3


def test_superseding_the_first_revision_serves_the_new_one_instead() -> None:
    sim = Sim(spec=make_spec({"strategy": "direct"}), target=V1, auto_ready=False)
    sim.tick()
    sim.target = V2
    sim.tick()
    assert sim.outcomes == [(V1.revision, "Superseded")]
    assert sim.status.canary == V2
    assert sim.status.phase == "Promoting"
    assert sim.actions(SetWeights) == []  # nothing served yet, nothing to reset


def test_an_outcome_for_a_superseded_candidate_is_ignored() -> None:
    sim = rolling()
    sim.script = lambda _request: None
    sim.run(until=lambda s: bool(s.requests))
    stale = sim.requests[-1]
    sim.target = V3
    sim.tick()
    decision = sim.decide(None, run_for(stale, "Failed", sim.now))
    assert decision.status.canary == V3
    assert decision.status.analysis.runs == []
    assert decision.status.analysis.failures == 0


def test_a_new_target_releases_a_held_one() -> None:
    sim = rolling()
    sim.tick("abort")
    assert sim.status.held == V2
    sim.wait(600)
    assert sim.status.canary is None  # held: not rolled out again
    sim.target = V3
    sim.tick()
    assert sim.status.held is None
    assert sim.status.canary == V3


def test_the_spec_going_back_to_stable_after_a_rollback_is_healthy() -> None:
    sim = Sim.serving(make_spec({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis()}))
    sim.script = always("Failed")
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    sim.target = V1
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.status.held is None
    degraded = next(c for c in sim.status.conditions if c.type == "Degraded")
    assert degraded.status == "False"


def test_a_new_target_during_an_undo_supersedes_the_undo() -> None:
    sim = rolling()
    sim.tick("promote")
    sim.tick()
    assert sim.status.stable == V2
    sim.auto_ready = False
    sim.tick("undo")
    assert sim.status.canary == V1
    sim.target = V3
    sim.tick()
    assert sim.outcomes[-1] == (V1.revision, "Superseded")
    assert sim.status.canary == V3
    assert sim.status.stable == V2
