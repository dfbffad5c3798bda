"""Strategy direct (replace once available) and the first revision."""

from __future__ import annotations

from testkit.rollout import V1, V2, Sim, make_spec

from modelrollout.rollout import EnsureRevision, Promote, ScaleDown


def test_the_first_revision_serves_once_available_whatever_the_strategy() -> None:
    sim = Sim(spec=make_spec({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}}), target=V1)
    sim.auto_ready = False
    first = sim.tick()
    assert sim.status.phase == "Promoting"
    assert sim.status.stable is None
    assert EnsureRevision(revision=V1, role="canary", replicas=4) in first.actions
    sim.wait(30)
    assert sim.status.phase == "Promoting"
    assert "0 of 4 pods ready" in (sim.status.message or "")
    sim.pods[V1.revision] = 3
    sim.wait(30)
    assert sim.status.phase == "Promoting"
    sim.pods[V1.revision] = 4
    sim.wait(30)
    assert sim.status.phase == "Healthy"
    assert sim.status.stable == V1
    assert sim.actions(Promote) == [Promote(revision=V1, previous=None)]
    assert sim.outcomes == [(V1.revision, "Promoted")]
    assert sim.status.scale_downs == []


def test_direct_replaces_stable_only_once_the_new_revision_is_available() -> None:
    sim = Sim.serving(make_spec({"strategy": "direct"}), auto_ready=False)
    sim.tick()
    assert sim.status.phase == "Promoting"
    for _ in range(5):
        sim.wait(60)
        assert sim.status.stable == V1
        assert sim.weights == (100, 0)
    sim.pods[V2.revision] = 4
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable == V2
    assert sim.actions(Promote) == [Promote(revision=V2, previous=V1)]
    sim.wait(30)
    assert sim.actions(ScaleDown) == [ScaleDown(revision=V1.revision, reason="scaleDownDelay passed after promotion")]


def test_a_batch_only_model_has_no_pods_to_wait_for() -> None:
    spec = make_spec({"strategy": "direct"}).model_copy(
        update={"online": None, "batch": {"schedule": "@daily", "input": {"uri": "/in"}, "output": {"uri": "/out"}}}
    )
    sim = Sim(spec=spec, target=V1)
    sim.tick()
    assert sim.status.stable == V1
    assert EnsureRevision(revision=V1, role="canary", replicas=0) in sim.decisions[0].actions
