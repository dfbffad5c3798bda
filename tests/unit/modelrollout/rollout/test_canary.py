"""Strategy canary: weights in steps, timed and untimed pauses, analysis steps and background analysis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from testkit.rollout import V1, V2, Sim, always, analysis, make_spec

from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.status import Verdict
from modelrollout.rollout import EnsureRevision, Promote, RequestAnalysis, ScaleDown, SetWeights

STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {"duration": "1m"}},
    {"analysis": {}},
    {"setWeight": 50},
    {"pause": {}},
]


def canary(steps: list[dict[str, Any]] | None = None, **settings: Any) -> dict[str, Any]:
    rollout: dict[str, Any] = {
        "strategy": "canary",
        "canary": {"steps": STEPS if steps is None else steps, "scaleDownDelay": "45s"},
        "analysis": analysis(),
    }
    rollout.update(settings)
    return rollout


def test_a_canary_walks_its_steps_and_is_promoted() -> None:
    sim = Sim.serving(make_spec(canary()))
    first = sim.tick()
    assert sim.status.phase == "Progressing"
    assert sim.status.canary == V2
    assert sim.status.stable == V1
    assert EnsureRevision(revision=V2, role="canary", replicas=1) in first.actions
    assert sim.weights == (100, 0)  # pods asked for, not yet ready

    sim.wait(10)
    assert sim.weights == (90, 10)
    assert sim.status.current_step == 1
    assert sim.status.weights.canary == 10

    sim.run(until=lambda s: s.status.current_step == 4)
    assert sim.weights == (50, 50)
    assert sim.pods[V2.revision] == 2  # ceil(4 pods * 50%)
    assert sim.status.phase == "Paused"
    assert sim.status.pause_reason == "PauseStep"

    sim.wait(600)
    assert sim.status.phase == "Paused"  # an untimed pause waits for a human, however long

    sim.tick("promote")
    assert sim.status.phase == "Promoting"
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.status.stable == V2
    assert sim.status.canary is None
    assert sim.weights == (100, 0)
    assert sim.stable_role == V2.revision
    assert sim.outcomes == [(V1.revision, "Promoted"), (V2.revision, "Promoted")]
    assert [(w.stable, w.canary) for w in sim.actions(SetWeights)] == [(90, 10), (50, 50), (100, 0)]
    assert sim.actions(Promote) == [Promote(revision=V2, previous=V1)]
    assert [r.kind for r in sim.requests].count("Step") == 1
    assert "Background" in [r.kind for r in sim.requests]

    # The old revision keeps running for scaleDownDelay, for a fast undo, then goes.
    assert sim.scaled_down == []
    assert sim.status.scale_downs[0].revision == V1.revision
    sim.wait(40)
    assert sim.scaled_down == []
    sim.wait(5)
    assert sim.scaled_down == [V1.revision]
    assert sim.status.scale_downs == []


def test_a_weight_step_waits_until_the_canary_pods_are_ready() -> None:
    sim = Sim.serving(make_spec(canary()), auto_ready=False)
    for _ in range(3):
        sim.wait(30)
        assert sim.weights == (100, 0)
        assert sim.status.current_step == 0
    assert "0 of 1 pods ready" in (sim.status.message or "")
    assert sim.decisions[-1].actions == (EnsureRevision(revision=V2, role="canary", replicas=1),)
    sim.pods[V2.revision] = 1
    sim.tick()
    assert sim.weights == (90, 10)


def test_a_timed_pause_holds_for_its_duration_measured_from_its_start() -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "90s"}}, {"setWeight": 40}]
    sim = Sim.serving(make_spec(canary(steps, analysis=None)))
    sim.tick()
    sim.wait(5)
    assert sim.status.current_step == 1
    assert sim.status.step_started_at == sim.now
    assert sim.decisions[-1].wake_at == sim.now + timedelta(seconds=90)
    sim.wait(89)
    assert sim.status.current_step == 1
    assert sim.weights == (80, 20)
    sim.wait(1)
    assert sim.status.current_step == 2  # the next weight's pods are asked for...
    sim.tick()
    assert sim.weights == (60, 40)  # ...and the weight follows once they are ready


@pytest.mark.parametrize(("limit", "tolerated"), [(0, 0), (1, 1), (3, 3)])
def test_more_failed_runs_than_failure_limit_roll_back(limit: int, tolerated: int) -> None:
    spec = make_spec(canary([{"setWeight": 10}, {"pause": {}}], analysis=analysis(failureLimit=limit)))
    sim = Sim.serving(spec, script=always("Failed"))
    sim.tick()
    for failure in range(1, tolerated + 1):
        sim.run(until=lambda s, n=failure: s.status.analysis.failures == n)
        assert sim.status.phase == "Paused"  # still at the pause step, failure tolerated
        assert sim.weights == (90, 10)
        assert sim.events("AnalysisFailed")[-1].type == "Warning"
    sim.run(until=lambda s: s.status.analysis.failures == tolerated + 1)
    assert sim.status.phase == "RolledBack"
    assert sim.weights == (100, 0)
    assert sim.status.canary is None
    assert sim.status.held == V2
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")
    assert sim.scaled_down == [V2.revision]
    degraded = next(c for c in sim.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "RolledBack")


@pytest.mark.parametrize("undecided", ["Inconclusive", "Error"])
@pytest.mark.parametrize("limit", [0, 2])
def test_more_undecided_runs_in_a_row_than_inconclusive_limit_pause(undecided: Verdict, limit: int) -> None:
    spec = make_spec(
        canary([{"setWeight": 10}, {"pause": {"duration": "1h"}}], analysis=analysis(inconclusiveLimit=limit))
    )
    sim = Sim.serving(spec, script=always(undecided))
    sim.tick()
    sim.run(until=lambda s: s.status.analysis.consecutive_inconclusive == limit)
    assert sim.status.phase == "Progressing"
    sim.run(until=lambda s: s.status.paused)
    assert sim.status.pause_reason == "Inconclusive"
    assert sim.status.analysis.consecutive_inconclusive == limit + 1
    assert sim.weights == (90, 10)  # a pause keeps the split: a human decides
    sim.wait(600)
    assert sim.status.pause_reason == "Inconclusive"
    assert sim.status.analysis.consecutive_inconclusive > limit + 1  # background runs go on while paused


def test_a_decided_run_resets_the_undecided_streak() -> None:
    verdicts: list[Verdict] = ["Inconclusive", "Inconclusive", "Successful", "Inconclusive", "Inconclusive"]
    streaks: list[int] = []
    spec = make_spec(canary([{"setWeight": 10}, {"pause": {"duration": "1h"}}], analysis=analysis(inconclusiveLimit=2)))
    sim = Sim.serving(spec, script=lambda _r: verdicts.pop(0) if verdicts else "Successful")
    sim.tick()
    sim.run(until=lambda s: streaks.append(s.status.analysis.consecutive_inconclusive) is None and not verdicts)
    assert streaks[-1] == 2
    assert 0 in streaks[streaks.index(2) :]  # the Successful run reset the streak: 2, 0, 1, 2 and never 3
    assert max(streaks) == 2
    assert not sim.status.paused


def test_an_analysis_step_runs_once_its_duration_passed_over_that_window() -> None:
    steps = [{"setWeight": 10}, {"analysis": {"metrics": ["errors"], "duration": "2m"}}, {"setWeight": 30}]
    sim = Sim.serving(make_spec(canary(steps)), script=lambda r: "Successful")
    sim.tick()
    sim.wait(1)
    started = sim.now
    sim.run(until=lambda s: s.now - started >= timedelta(seconds=110))
    assert not [r for r in sim.requests if r.kind == "Step"]
    sim.run(until=lambda s: s.status.current_step == 2 or s.status.phase == "Promoting")
    step_runs = [r for r in sim.requests if r.kind == "Step"]
    assert len(step_runs) == 1
    request: AnalysisRequest = step_runs[0]
    assert [m.name for m in request.metrics] == ["errors"]
    assert request.window_seconds == 120
    assert (request.step, request.canary, request.stable) == (1, V2, V1)
    assert [r.kind for r in sim.status.analysis.runs].count("Step") == 1
    assert any(e.reason == "AnalysisPassed" for e in sim.events())


def test_background_runs_cover_one_interval_of_every_metric() -> None:
    sim = Sim.serving(make_spec(canary([{"setWeight": 10}, {"pause": {}}])))
    sim.tick()
    sim.run(until=lambda s: len(s.requests) >= 3)
    assert {r.kind for r in sim.requests} == {"Background"}
    assert {r.window_seconds for r in sim.requests} == {30}
    assert [m.name for m in sim.requests[0].metrics] == ["p95", "errors"]


def test_an_analysis_step_tolerating_a_failure_runs_again_one_interval_later() -> None:
    verdicts: list[Verdict] = ["Failed", "Successful"]

    def script(request: AnalysisRequest) -> Verdict:
        return verdicts.pop(0) if request.kind == "Step" else "Successful"

    steps = [{"setWeight": 10}, {"analysis": {"duration": "1m"}}, {"setWeight": 30}, {"pause": {}}]
    sim = Sim.serving(make_spec(canary(steps, analysis=analysis(failureLimit=1))), script=script)
    sim.tick()
    sim.run(until=lambda s: s.status.analysis.failures == 1)
    failed_at = sim.now
    assert sim.status.current_step == 1
    sim.run(until=lambda s: s.status.current_step == 3, step_s=5)
    second = [r.at for r in sim.status.analysis.runs if r.kind == "Step"][-1]
    assert (second - failed_at).total_seconds() == 30
    assert sim.weights == (70, 30)


def test_background_failure_rolls_back_from_any_step() -> None:
    for failing_step in range(3):
        steps = [{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"setWeight": 50}, {"pause": {}}]

        def script(request: AnalysisRequest, n: int = failing_step) -> Verdict:
            return "Failed" if (request.step or 0) >= n + 1 else "Successful"

        sim = Sim.serving(make_spec(canary(steps)), script=script)
        sim.tick()
        sim.run(until=lambda s: s.status.phase == "RolledBack")
        assert sim.weights == (100, 0)
        assert sim.outcomes[-1] == (V2.revision, "RolledBack")
        assert EnsureRevision(revision=V1, role="stable", replicas=4) in sim.decisions[-1].actions


@pytest.mark.parametrize(
    ("step", "why"),
    [
        ({"analysis": {}}, "rollout.analysis.metrics is empty"),
        ({"analysis": {"metrics": ["nope"]}}, "names unknown metrics ['nope']"),
    ],
)
def test_an_analysis_step_that_cannot_run_pauses_for_a_fix(step: dict[str, Any], why: str) -> None:
    settings = analysis(metrics=[]) if "metrics" not in step["analysis"] else analysis()
    sim = Sim.serving(make_spec(canary([{"setWeight": 10}, step], analysis=settings)))
    sim.tick()
    sim.wait(1)
    assert sim.status.pause_reason == "AnalysisMisconfigured"
    assert why in (sim.status.message or "")
    assert not [r for r in sim.requests if r.kind == "Step"]
    sim.tick("promote")  # skipping it is the human's call
    assert sim.status.phase == "Promoting"


def test_without_analysis_settings_nothing_is_requested() -> None:
    spec = make_spec({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}]}})
    sim = Sim.serving(spec)
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "Healthy")
    assert sim.requests == []
    assert sim.actions(RequestAnalysis) == []


def test_the_service_provider_weights_by_pods_and_records_the_effective_weight() -> None:
    spec = make_spec(
        canary([{"setWeight": 10}, {"pause": {}}], trafficRouting={"provider": "service"}, analysis=None), replicas=4
    )
    sim = Sim.serving(spec)
    first = sim.tick()
    assert EnsureRevision(revision=V2, role="canary", replicas=1) in first.actions
    assert not [a for a in first.actions if isinstance(a, EnsureRevision) and a.role == "stable"]
    assert sim.status.weights.canary == 0  # until the canary pod is ready
    second = sim.tick()
    shrink = second.actions.index(EnsureRevision(revision=V1, role="stable", replicas=3))
    assert shrink < second.actions.index(SetWeights(stable=75, canary=25))  # stable gives way, then the weight
    assert sim.pods == {V1.revision: 3, V2.revision: 1}
    assert sim.status.weights.canary == 25  # one pod of four
    assert sim.actions(SetWeights)[-1] == SetWeights(stable=75, canary=25)
    assert "asked 10%; whole pods give 25%" in sim.events("WeightSet")[-1].message
    sim.tick("promote")
    sim.tick()
    assert sim.status.phase == "Healthy"
    assert sim.pods[V2.revision] == 4


def test_the_scale_down_is_not_repeated_and_not_applied_to_a_revision_serving_again() -> None:
    spec = make_spec(canary([{"setWeight": 50}]))
    sim = Sim.serving(spec)
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "Healthy")
    sim.tick("undo")  # V1 comes back before its scale-down is due
    sim.run(until=lambda s: s.status.stable == V1)
    sim.wait(300)
    assert V1.revision not in [a.revision for a in sim.actions(ScaleDown)]


def test_steps_done_on_time_do_not_promote_while_the_latest_analysis_could_not_decide() -> None:
    # Prometheus goes away mid-rollout: the timed steps run out, but missing data must not promote.
    verdicts: dict[str, Verdict] = {"now": "Successful"}
    spec = make_spec(
        {
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}]},
            "analysis": analysis(inconclusiveLimit=100),
        }
    )
    sim = Sim.serving(spec, script=lambda _request: verdicts["now"])
    sim.tick()
    sim.wait(30)  # one passing background run
    verdicts["now"] = "Error"
    sim.run(until=lambda s: "promotion waits" in (s.status.message or ""), step_s=10)
    for _ in range(10):
        sim.wait(30)
        assert sim.status.stable == V1, "promoted without a passing run"
        assert sim.status.canary == V2
    verdicts["now"] = "Successful"
    sim.run(until=lambda s: s.status.phase == "Healthy", step_s=10, limit=10)
    assert sim.status.stable == V2
