"""Which events webhooks hear of, and as what (`RecordEvent.notify`), through real passes of the engine: every
strategy's path to promotion and to rollback, pauses, verbs, and the events that notify nothing."""

from __future__ import annotations

from typing import Any

from testkit.rollout import V1, V2, V3, Sim, always, analysis, make_spec

from modelrollout.api.notifications import NOTIFICATION_KINDS
from modelrollout.rollout import RecordEvent
from tests.unit.modelrollout.rollout.test_ab_test import ab_spec, growing

STEPS = [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 60}, {"pause": {"duration": "1m"}}]
FAILURE = "pod churn-bbbb2222-x container model-server is ErrImagePull"


def canary(steps: list[dict[str, Any]] | None = None, **settings: Any) -> Any:
    return make_spec({"strategy": "canary", "canary": {"steps": steps or STEPS}, "analysis": analysis(**settings)})


def told(sim: Sim) -> list[tuple[str, set[str]]]:
    """(reason, kinds) of every event that notifies, in order."""
    return [(e.reason, set(e.notify)) for e in sim.events() if e.notify]


def kinds_of(events: list[RecordEvent]) -> dict[str, set[frozenset[str]]]:
    found: dict[str, set[frozenset[str]]] = {}
    for event in events:
        found.setdefault(event.reason, set()).add(frozenset(event.notify))
    return found


def test_a_first_revision_is_started_then_promoted() -> None:
    sim = Sim(spec=canary(), target=V1)
    sim.tick()
    sim.tick()
    assert told(sim) == [("RolloutStarted", {"started"}), ("Promoted", {"promoted"})]


def test_a_promoted_canary_is_started_each_step_reached_then_promoted() -> None:
    sim = Sim.serving(canary())
    sim.run(until=lambda s: s.status.stable == V2)
    assert told(sim) == [
        ("RolloutStarted", {"started"}),
        ("WeightSet", {"stepReached"}),
        ("WeightSet", {"stepReached"}),
        ("Promoted", {"promoted"}),
    ]
    # On the way, and told to nobody: the promotion beginning and the passing analysis runs.
    assert kinds_of(sim.events("Promoting")) == {"Promoting": {frozenset()}}


def test_a_canary_rolled_back_by_its_analysis_is_both_rolled_back_and_analysis_failed() -> None:
    sim = Sim.serving(canary(), script=always("Failed"))
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert told(sim)[-1] == ("AnalysisFailed", {"rolledBack", "analysisFailed"})
    assert [reason for reason, _ in told(sim)] == ["RolloutStarted", "WeightSet", "AnalysisFailed"]


def test_a_tolerated_failed_analysis_is_analysis_failed_only() -> None:
    sim = Sim.serving(canary(failureLimit=1), script=always("Failed"))
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    failures = [kinds for reason, kinds in told(sim) if reason == "AnalysisFailed"]
    assert failures == [{"analysisFailed"}, {"rolledBack", "analysisFailed"}]


def test_every_pause_is_paused() -> None:
    step = Sim.serving(canary([{"setWeight": 20}, {"pause": {}}]))
    step.run(until=lambda s: s.status.paused)
    assert told(step)[-1] == ("PauseStep", {"paused"})

    by_user = Sim.serving(canary())
    by_user.tick()
    by_user.tick("pause")
    assert told(by_user)[-1] == ("User", {"paused"})

    inconclusive = Sim.serving(canary(inconclusiveLimit=0), script=always("Inconclusive"))
    inconclusive.run(until=lambda s: s.status.paused)
    assert told(inconclusive)[-1] == ("Inconclusive", {"paused"})
    # The inconclusive runs before the limit notify nothing; the pause said once is not said again.
    inconclusive.wait(120)
    assert [reason for reason, _ in told(inconclusive)].count("Inconclusive") == 1


def test_a_candidate_that_cannot_run_is_rolled_back() -> None:
    sim = Sim.serving(canary(), auto_ready=False)
    sim.tick()
    sim.failure = FAILURE
    sim.tick()
    assert told(sim) == [("RolloutStarted", {"started"}), ("RevisionFailed", {"rolledBack"})]


def test_a_first_revision_that_cannot_run_has_nothing_to_roll_back_to() -> None:
    sim = Sim(spec=canary(), target=V1, auto_ready=False)
    sim.tick()
    sim.failure = FAILURE
    sim.tick()
    assert sim.events("RevisionFailed")
    assert told(sim) == [("RolloutStarted", {"started"})]


def test_abort_and_undo_by_a_user_are_rollbacks() -> None:
    aborted = Sim.serving(canary())
    aborted.tick()
    aborted.tick("abort")
    assert told(aborted)[-1] == ("Aborted", {"rolledBack"})

    undone = Sim.serving(canary())
    undone.tick()
    undone.tick("undo")
    assert told(undone)[-1] == ("Undone", {"rolledBack"})

    # Undo of a promoted revision: the earlier one comes back, and is promoted once it serves.
    back = Sim.serving(canary())
    back.run(until=lambda s: s.status.stable == V2)
    back.decisions.clear()
    back.tick("undo")
    back.run(until=lambda s: s.status.stable == V1)
    assert told(back) == [("Undo", {"rolledBack"}), ("Promoted", {"promoted"})]


def test_verbs_that_only_steer_notify_nothing() -> None:
    sim = Sim.serving(canary([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "1m"}}]))
    sim.run(until=lambda s: s.status.paused)
    sim.tick("resume")  # ignored at a pause step: a VerbIgnored warning
    sim.tick("promote")
    sim.tick("pause")
    sim.tick("resume")
    sim.tick()  # the candidate's pods for the next weight are ready
    quiet = {e.reason for e in sim.events() if not e.notify}
    assert {"VerbIgnored", "Promote", "Resumed"} <= quiet
    assert [reason for reason, _ in told(sim)] == ["RolloutStarted", "WeightSet", "PauseStep", "User", "WeightSet"]


def test_blue_green_switch_and_shadow_mirror_are_steps_reached() -> None:
    blue_green = Sim.serving(make_spec({"strategy": "blueGreen", "blueGreen": {}, "analysis": analysis()}))
    blue_green.run(until=lambda s: s.status.stable == V2)
    assert told(blue_green) == [
        ("RolloutStarted", {"started"}),
        ("Switched", {"stepReached"}),
        ("Promoted", {"promoted"}),
    ]
    shadow_spec = {"strategy": "shadow", "shadow": {"duration": "2m", "mirrorPercent": 50}, "analysis": analysis()}
    shadow = Sim.serving(make_spec(shadow_spec))
    shadow.run(until=lambda s: s.status.stable == V2)
    assert told(shadow) == [
        ("RolloutStarted", {"started"}),
        ("Mirroring", {"stepReached"}),
        ("Promoted", {"promoted"}),
    ]


def test_an_ab_test_is_decided_when_won_lost_or_undecided() -> None:
    won = Sim.serving(ab_spec(), counts=growing(0.10, 0.15))
    won.run(until=lambda s: s.status.stable == V2, step_s=10)
    assert told(won) == [
        ("RolloutStarted", {"started"}),
        ("UsersSplit", {"stepReached"}),
        ("AbTestWon", {"abDecided"}),
        ("Promoted", {"promoted"}),
    ]
    lost = Sim.serving(ab_spec(), counts=growing(0.15, 0.10))
    lost.run(until=lambda s: s.status.phase == "RolledBack", step_s=10)
    assert told(lost)[-1] == ("AbTestLost", {"rolledBack", "abDecided"})
    undecided = Sim.serving(ab_spec(maxDuration="5m"), counts=growing(0.12, 0.12))
    undecided.run(until=lambda s: s.status.phase == "RolledBack", step_s=7)
    assert told(undecided)[-1] == ("AbTestUndecided", {"rolledBack", "abDecided"})


def test_a_superseded_candidate_notifies_only_the_start_of_the_next() -> None:
    sim = Sim.serving(canary())
    sim.tick()
    sim.tick()
    sim.target = V3
    sim.tick()
    assert sim.events("Superseded")
    started, step = ("RolloutStarted", {"started"}), ("WeightSet", {"stepReached"})
    assert told(sim) == [started, step, started]


def test_the_engine_names_only_known_kinds() -> None:
    sim = Sim.serving(canary(failureLimit=1), script=always("Failed"))
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert all(set(e.notify) <= set(NOTIFICATION_KINDS) for e in sim.events())


def test_gates_that_stop_a_rollout_are_rollbacks_and_waiting_at_one_is_not_a_pause() -> None:
    gate = {"url": "http://gate.ci:8080/approve", "interval": "10s", "waitUpTo": "1m"}
    timed_out = Sim.serving(
        make_spec({"strategy": "canary", "canary": {"steps": STEPS}, "gates": {"confirmRollout": gate}})
    )
    timed_out.run(until=lambda s: s.status.phase == "RolledBack")
    assert told(timed_out) == [("RolloutStarted", {"started"}), ("GateTimedOut", {"rolledBack"})]
    assert timed_out.events("GateWaiting")
    hooked = Sim.serving(make_spec({"strategy": "canary", "canary": {"steps": STEPS},
                                    "gates": {"preRollout": {"command": ["smoke-test"]}}}))  # fmt: skip
    hooked.tick()
    hooked.wait(5)
    hooked.hook_ends = "Failed"
    hooked.wait(5)
    assert told(hooked)[-1] == ("PreRolloutFailed", {"rolledBack"})
