"""Strategy abTest in the engine: split users (sticky), evaluate the success metric every interval, end on a
winner or undecided at maxDuration, with the safety analysis running beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from testkit.rollout import METRICS, V1, V2, Sim, always, make_spec

from modelrollout.analysis.ab_test import Arm
from modelrollout.analysis.request import AnalysisRequest
from modelrollout.rollout import EnsureRevision, RequestAnalysis, SetSticky, SetWeights
from modelrollout.rollout.ab_test import sticky_for
from modelrollout.traffic.base import StickyBy

BY_HEADER = StickyBy(header="x-user-id")


def ab_spec(**ab: Any) -> Any:
    return make_spec(
        {
            "strategy": "abTest",
            "abTest": {
                "weight": 50,
                "routeBy": {"header": "x-user-id"},
                "successMetric": {"successes": "s{{version}}", "trials": "t{{version}}"},
                "minSamples": 1000,
                "maxDuration": "10m",
                **ab,
            },
            "analysis": {"interval": "30s", "metrics": METRICS},
            "trafficRouting": {"provider": "router"},
        }
    )


def growing(stable_rate: float, canary_rate: float, per_second: int = 10) -> Any:
    """Counts as a steady stream of users would give them: `per_second` trials per variant since the split."""

    def counts(request: AnalysisRequest, _now: datetime) -> tuple[Arm, Arm]:
        n = int(request.window_seconds * per_second)
        return Arm(int(n * stable_rate), n), Arm(int(n * canary_rate), n)

    return counts


def experiments(sim: Sim) -> list[AnalysisRequest]:
    return [r for r in sim.requests if r.kind == "Experiment"]


def test_users_are_split_sticky_before_any_weight_moves() -> None:
    sim = Sim.serving(ab_spec(weight=30), auto_ready=False)
    first = sim.tick()
    assert EnsureRevision(revision=V2, role="canary", replicas=2) in first.actions
    assert sim.actions(SetSticky) == []  # no pods yet: nothing to split
    sim.pods[V2.revision] = 2
    split = sim.tick()
    routing = [a for a in split.actions if isinstance(a, SetSticky | SetWeights)]
    assert routing == [SetSticky(by=BY_HEADER), SetWeights(stable=70, canary=30)]
    assert sim.sticky == BY_HEADER
    assert sim.events("UsersSplit")[0].message.startswith("30% of users (by header x-user-id) go to revision bbbb")
    assert sim.status.current_step == 1
    assert sim.status.ab_test is not None
    assert sim.status.ab_test.winner is None
    assert sticky_for(sim.spec, sim.status) == BY_HEADER


def test_a_truly_better_candidate_wins_and_is_promoted() -> None:
    sim = Sim.serving(ab_spec(), counts=growing(0.10, 0.15))
    sim.run(until=lambda s: s.status.phase == "Healthy" and s.status.stable == V2, step_s=10)
    runs = experiments(sim)
    # 10 users/s per variant: 1000 samples each after 100 s, first decided at the evaluation after that.
    assert [r.window_seconds for r in runs] == [30, 60, 90, 120]
    assert runs[-1].ab_test is not None
    assert runs[-1].stable == V1
    result = sim.status.ab_test
    assert result is not None
    assert result.winner == "canary"
    assert result.effect is not None
    assert abs(result.effect - 0.05) < 1e-9
    assert result.p_value is not None
    assert result.p_value < 0.05
    assert result.samples_canary == 1200
    assert sim.outcomes[-1] == (V2.revision, "Promoted")
    assert "A/B test: revision bbbb2222 (version 2) wins" in sim.events("AbTestWon")[0].message
    assert sim.weights == (100, 0)
    assert sim.sticky is None  # promotion ends the split...
    assert sticky_for(sim.spec, sim.status) is None  # ...and converge keeps it so


def routing_of_last_change(sim: Sim) -> list[Any]:
    changed = next(d for d in reversed(sim.decisions) if any(isinstance(a, SetSticky) for a in d.actions))
    return [a for a in changed.actions if isinstance(a, SetSticky | SetWeights)]


def test_the_split_ends_only_after_the_weights_are_back_on_one_variant() -> None:
    # The routing document written first also re-points the roles: a moment of random assignment between the
    # two writes would send some users to the other variant.
    won = Sim.serving(ab_spec(), counts=growing(0.10, 0.15))
    won.run(until=lambda s: s.status.stable == V2, step_s=10)
    assert routing_of_last_change(won) == [SetWeights(stable=100, canary=0), SetSticky(by=None)]
    lost = Sim.serving(ab_spec(), counts=growing(0.15, 0.10))
    lost.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    assert routing_of_last_change(lost) == [SetWeights(stable=100, canary=0), SetSticky(by=None)]


def test_a_worse_candidate_loses_and_stable_keeps_serving() -> None:
    sim = Sim.serving(ab_spec(), counts=growing(0.15, 0.10))
    sim.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    assert sim.status.stable == V1
    assert sim.status.held == V2
    assert sim.weights == (100, 0)
    assert sim.sticky is None
    assert sim.status.ab_test is not None
    assert sim.status.ab_test.winner == "stable"
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")
    lost = sim.events("AbTestLost")
    assert len(lost) == 1
    assert lost[0].type == "Warning"
    assert "keeps serving" in lost[0].message


def test_equal_rates_end_undecided_at_max_duration_after_a_last_evaluation() -> None:
    sim = Sim.serving(ab_spec(maxDuration="5m"), counts=growing(0.12, 0.12))
    sim.run(until=lambda s: s.status.phase == "RolledBack", step_s=7)
    runs = experiments(sim)
    assert runs[-1].window_seconds >= 300  # the last one covers the whole test
    assert max(r.window_seconds for r in runs[:-1]) < 300
    assert sim.status.ab_test is not None
    assert sim.status.ab_test.winner == "undecided"
    assert sim.status.ab_test.samples_stable >= 3000
    assert sim.outcomes[-1] == (V2.revision, "Undecided")
    assert sim.status.stable == V1
    assert sim.weights == (100, 0)
    message = sim.events("AbTestUndecided")[0].message
    assert "ended undecided after maxDuration 5m" in message
    assert "keeps serving" in message
    count = len(experiments(sim))
    sim.wait(600)
    assert len(experiments(sim)) == count  # nothing is evaluated once the test has ended


def test_a_failing_safety_metric_rolls_back_whatever_the_success_rate() -> None:
    sim = Sim.serving(ab_spec(), counts=growing(0.10, 0.20), script=always("Failed"))
    sim.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    assert sim.events("AnalysisFailed")
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")
    assert sim.status.ab_test is not None
    assert sim.status.ab_test.winner != "canary"


def test_an_unmeasurable_success_metric_never_decides_and_the_test_runs_out() -> None:
    sim = Sim.serving(ab_spec(maxDuration="2m"), counts=lambda _r, _n: "Prometheus: connection refused")
    sim.tick()
    sim.run(until=lambda s: s.status.phase != "Progressing", step_s=10, limit=30)
    assert sim.status.phase == "RolledBack"
    assert sim.outcomes[-1] == (V2.revision, "Undecided")
    runs = [r for r in sim.status.analysis.runs if r.kind == "Experiment"]
    assert runs
    assert all(r.verdict == "Error" for r in runs)
    assert runs[-1].metrics[0].message == "Prometheus: connection refused"


def test_abort_stops_the_test_and_the_split() -> None:
    sim = Sim.serving(ab_spec(), counts=growing(0.1, 0.1))
    sim.tick()
    sim.wait(40)
    assert sim.sticky == BY_HEADER
    sim.tick("abort")
    assert sim.status.phase == "Degraded"
    assert sim.sticky is None
    assert sim.weights == (100, 0)
    assert sticky_for(sim.spec, sim.status) is None


def test_a_new_rollout_forgets_the_previous_result() -> None:
    sim = Sim.serving(ab_spec(), counts=growing(0.15, 0.10))
    sim.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    assert sim.status.ab_test is not None
    sim.tick("retry")
    assert sim.status.phase == "Progressing"
    assert sim.status.ab_test is None or sim.status.ab_test.winner is None


def test_evaluations_are_requested_every_interval_with_the_test_settings() -> None:
    sim = Sim.serving(ab_spec(), counts=lambda _r, _n: None)
    sim.tick()
    sim.tick()  # the split
    sim.wait(29)
    assert experiments(sim) == []
    sim.wait(1)
    asked = [a.request for a in sim.decisions[-1].actions if isinstance(a, RequestAnalysis)]
    assert [r.kind for r in asked] == ["Experiment"]
    assert asked[0].ab_test is not None
    assert asked[0].ab_test.min_samples == 1000
