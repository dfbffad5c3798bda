"""A candidate that cannot become available (bad image, model that does not load, progress deadline)."""

from __future__ import annotations

from testkit.rollout import V1, V2, V3, Sim, analysis, make_spec

from modelrollout.rollout import ScaleDown, SetWeights

CANARY = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}, "analysis": analysis()}
FAILURE = "pod churn-bbbb2222-x container model-server is ErrImagePull"


def test_a_failing_candidate_is_rolled_back_at_once_and_held() -> None:
    sim = Sim.serving(make_spec(CANARY), auto_ready=False)
    sim.tick()
    assert sim.status.canary == V2
    sim.failure = FAILURE
    decision = sim.tick()
    assert sim.status.phase == "Degraded"
    assert sim.status.canary is None
    assert sim.status.stable == V1
    assert sim.status.held == V2
    assert SetWeights(stable=100, canary=0) in decision.actions
    assert ScaleDown(revision=V2.revision, reason="RevisionFailed") in decision.actions
    assert sim.outcomes[-1] == (V2.revision, "Failed")
    (event,) = sim.events("RevisionFailed")
    assert event.type == "Warning"
    assert FAILURE in event.message
    assert "keeps serving" in event.message
    degraded = next(c for c in sim.status.conditions if c.type == "Degraded")
    assert degraded.status == "True"


def test_a_held_failure_is_not_retried_until_the_spec_changes() -> None:
    sim = Sim.serving(make_spec(CANARY), auto_ready=False)
    sim.tick()
    sim.failure = FAILURE
    sim.tick()
    sim.failure = None
    sim.wait(30)
    assert sim.status.canary is None
    assert sim.status.phase == "Degraded"
    sim.target = V3
    sim.wait(1)
    assert sim.status.canary == V3


def test_a_failure_reported_for_another_candidate_is_ignored() -> None:
    # The failure was observed before this tick; the spec moved on to V3 meanwhile, whose pods are not seen yet.
    sim = Sim.serving(make_spec(CANARY), auto_ready=False)
    sim.tick()
    sim.target, sim.failure = V3, FAILURE
    sim.tick()
    assert sim.status.canary == V3
    assert sim.status.held is None
    assert sim.outcomes[-1] == (V2.revision, "Superseded")


def test_a_failing_first_revision_stays_degraded_and_says_so_once() -> None:
    sim = Sim(spec=make_spec(CANARY), target=V1, auto_ready=False)
    sim.tick()
    sim.failure = "pod churn-aaaa1111-x container model-server is CrashLoopBackOff"
    for _ in range(3):
        sim.wait(10)
        assert sim.status.phase == "Degraded"
        assert sim.status.canary == V1
        assert sim.status.stable is None
    assert len(sim.events("RevisionFailed")) == 1
    sim.failure, sim.auto_ready = None, True
    sim.tick()  # the pods asked for are ready now
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable == V1
