"""Strategy blueGreen: full-size preview, pre-promotion analysis, instant switch, post-promotion window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from testkit.rollout import V1, V2, Sim, always, analysis, make_spec

from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.status import Verdict
from modelrollout.rollout import EnsureRevision, Promote, SetWeights


def blue_green(**settings: Any) -> dict[str, Any]:
    rollout_analysis = settings.pop("analysis", analysis())
    return {"strategy": "blueGreen", "blueGreen": settings, "analysis": rollout_analysis}


def test_the_preview_runs_at_full_size_without_traffic_then_everything_switches_at_once() -> None:
    sim = Sim.serving(make_spec(blue_green(scaleDownDelay="1m")))
    first = sim.tick()
    assert EnsureRevision(revision=V2, role="canary", replicas=4) in first.actions
    sim.tick()
    assert sim.status.current_step == 1  # pre-promotion analysis
    assert sim.weights == (100, 0)
    sim.run(until=lambda s: s.status.phase == "Healthy")
    assert [(w.stable, w.canary) for w in sim.actions(SetWeights)] == [(0, 100), (100, 0)]
    assert sim.actions(Promote) == [Promote(revision=V2, previous=V1)]
    pre = [r for r in sim.requests if r.kind == "Step"]
    assert len(pre) == 1
    assert pre[0].window_seconds == 60  # two analysis intervals
    assert [(d.revision, d.at) for d in sim.status.scale_downs] == [(V1.revision, sim.now + timedelta(seconds=60))]
    sim.wait(59)
    assert sim.scaled_down == []
    sim.wait(1)
    assert sim.scaled_down == [V1.revision]


def test_a_failed_pre_promotion_analysis_never_switches() -> None:
    sim = Sim.serving(make_spec(blue_green()), script=always("Failed"))
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert all(w.canary == 0 for w in sim.actions(SetWeights))
    assert sim.weights == (100, 0)
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")


def test_without_auto_promote_it_waits_for_a_human_before_switching() -> None:
    sim = Sim.serving(make_spec(blue_green(autoPromote=False)))
    sim.tick()
    sim.run(until=lambda s: s.status.paused)
    assert sim.status.pause_reason == "PauseStep"
    assert sim.weights == (100, 0)
    sim.wait(3600)
    assert sim.weights == (100, 0)
    promoted = sim.tick("promote")
    assert [a for a in promoted.actions if isinstance(a, SetWeights)] == [
        SetWeights(stable=0, canary=100),  # the switch...
        SetWeights(stable=100, canary=0),  # ...and, with no post-promotion window, the promotion right after
    ]
    assert sim.status.phase == "Healthy"


def test_a_failure_in_the_post_promotion_window_switches_back() -> None:
    def script(request: AnalysisRequest) -> Verdict:
        return "Failed" if sim.status.weights.canary == 100 else "Successful"

    sim = Sim.serving(make_spec(blue_green(postPromotionWindow="5m")), script=script)
    sim.tick()
    sim.run(until=lambda s: s.weights == (0, 100))
    assert sim.status.phase == "Progressing"
    assert sim.status.stable == V1  # not promoted until the window passes
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert sim.weights == (100, 0)
    assert sim.pods[V1.revision] == 4  # the old revision never went away
    assert sim.actions(Promote) == []
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")


def test_a_clean_post_promotion_window_promotes_after_it_ends() -> None:
    sim = Sim.serving(make_spec(blue_green(postPromotionWindow="5m")))
    sim.tick()
    sim.run(until=lambda s: s.weights == (0, 100))
    switched = sim.now
    sim.run(until=lambda s: s.status.phase == "Healthy")
    assert (sim.now - switched).total_seconds() >= 300
    assert any(r.kind == "Background" and r.window_seconds == 30 for r in sim.requests)


def test_without_analysis_metrics_there_is_no_pre_promotion_step() -> None:
    sim = Sim.serving(make_spec(blue_green(analysis=None)))
    sim.tick()
    assert sim.status.current_step == 0  # the preview is coming up
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert [(w.stable, w.canary) for w in sim.actions(SetWeights)] == [(0, 100), (100, 0)]
    assert sim.requests == []


def test_pre_promotion_analysis_can_be_switched_off() -> None:
    sim = Sim.serving(make_spec(blue_green(prePromotionAnalysis=False)))
    sim.tick()
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.requests == []
