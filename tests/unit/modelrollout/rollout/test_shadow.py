"""Strategy shadow: mirrored traffic, answers compared, clients only ever see stable."""

from __future__ import annotations

from typing import Any

from testkit.rollout import V2, Sim, always, analysis, make_spec

from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.status import Verdict
from modelrollout.rollout import SetMirror, SetWeights


def shadow(settings: dict[str, Any] | None = None, **rollout: Any) -> dict[str, Any]:
    return {
        "strategy": "shadow",
        "shadow": {"duration": "10m", "mirrorPercent": 50, **(settings or {})},
        "analysis": analysis(),
        **rollout,
    }


def test_candidate_answers_never_reach_clients_until_promotion() -> None:
    sim = Sim.serving(make_spec(shadow()))
    sim.tick()
    sim.tick()
    assert sim.mirror == 50
    assert sim.pods[V2.revision] == 2  # sized for half the load
    sim.run(until=lambda s: s.status.phase == "Promoting")
    assert sim.actions(SetWeights) == []  # weights stayed 100/0 all along
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.mirror == 0
    assert sim.actions(SetMirror) == [SetMirror(percent=50), SetMirror(percent=0)]


def test_promotion_needs_a_passing_verdict_over_the_whole_duration() -> None:
    sim = Sim.serving(make_spec(shadow()))
    sim.tick()
    sim.tick()
    mirrored_at = sim.now
    sim.run(until=lambda s: s.status.phase == "Promoting")
    assert (sim.now - mirrored_at).total_seconds() >= 600
    finals = [r for r in sim.requests if r.kind == "Final"]
    assert len(finals) == 1
    assert finals[0].window_seconds == 600
    names = [m.name for m in finals[0].metrics]
    assert names == ["p95", "errors", "shadow-agreement"]  # the user checks latency, so no default one
    agreement = finals[0].metrics[2]
    assert (agreement.builtin, agreement.min) == ("shadowAgreement", 0.98)
    assert finals[0].min_comparisons == 100


def test_periodic_runs_check_the_shadow_metrics_too_and_a_failure_stops_the_mirror() -> None:
    def script(request: AnalysisRequest) -> Verdict:
        return "Failed" if len(sim.requests) >= 3 else "Successful"

    sim = Sim.serving(make_spec(shadow()), script=script)
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert sim.mirror == 0
    assert sim.actions(SetMirror)[-1] == SetMirror(percent=0)
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")
    assert {r.kind for r in sim.requests} == {"Background"}
    assert "shadow-agreement" in [m.name for m in sim.requests[0].metrics]


def test_too_few_comparisons_keep_it_waiting_then_pause() -> None:
    def script(request: AnalysisRequest) -> Verdict:
        return "Inconclusive" if request.kind == "Final" else "Successful"

    spec = make_spec(shadow({"duration": "2m"}, analysis=analysis(inconclusiveLimit=2)))
    sim = Sim.serving(spec, script=script)
    sim.tick()
    sim.run(until=lambda s: s.status.paused)
    assert sim.status.pause_reason == "Inconclusive"
    assert [r.kind for r in sim.requests].count("Final") == 3
    assert sim.mirror == 50
    assert sim.status.stable != V2


def test_regressors_are_compared_by_mean_absolute_difference() -> None:
    sim = Sim.serving(make_spec(shadow({"maxMeanAbsDiff": 0.5}, analysis=analysis(metrics=[]))))
    sim.tick()
    sim.run(until=lambda s: bool(s.requests))
    metrics = {m.name: m for m in sim.requests[0].metrics}
    assert set(metrics) == {"shadow-mean-abs-diff", "shadow-latency"}
    assert metrics["shadow-mean-abs-diff"].max == 0.5
    latency = metrics["shadow-latency"]
    assert latency.relative_to_stable is not None
    assert (latency.builtin, latency.relative_to_stable.max_increase) == ("latencyP95", 0.1)


def test_a_shadow_without_analysis_settings_still_compares_answers() -> None:
    sim = Sim.serving(make_spec({"strategy": "shadow", "shadow": {"duration": "1m"}}), script=always("Successful"))
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "Healthy")
    final = next(r for r in sim.requests if r.kind == "Final")
    assert [m.name for m in final.metrics] == ["shadow-agreement", "shadow-latency"]
    assert sim.mirror == 0
