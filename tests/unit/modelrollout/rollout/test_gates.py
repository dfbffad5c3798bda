"""spec.rollout.gates through the production pass loop: confirmRollout before the candidate runs, preRollout before
it gets traffic, confirmPromotion before promotion; timeouts, rollbacks, a user's promote, and restarts (the Sim
replays every pass from status after a wire round trip and asserts the same decision)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from testkit.rollout import V1, V2, Sim, make_spec

from modelrollout.rollout import EnsureRevision, Promote, RecordEvent, SetWeights, tick
from modelrollout.rollout.actions import GateAnswer, RequestConfirmation, RunHook

WEBHOOK = {"url": "http://gate.ci:8080/approve"}


def spec(gates: dict[str, Any], strategy: str = "canary") -> Any:
    rollout: dict[str, Any] = {"strategy": strategy, "gates": gates}
    if strategy == "canary":
        rollout["canary"] = {"steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 50}]}
    return make_spec(rollout)


def reasons(sim: Sim) -> list[str]:
    return [e.reason for e in sim.events()]


def test_confirm_rollout_holds_the_candidate_without_pods_until_the_webhook_says_yes() -> None:
    sim = Sim.serving(spec({"confirmRollout": {**WEBHOOK, "interval": "20s"}}))
    first = sim.tick()
    assert sim.status.phase == "Progressing"
    assert sim.status.gate is not None
    assert sim.status.gate.name == "confirmRollout"
    assert not [a for a in first.actions if isinstance(a, EnsureRevision) and a.revision == V2]
    assert [c.gate for c in sim.confirmations] == ["confirmRollout"]
    assert sim.status.gate.checks == 1
    assert sim.status.gate.answer == "403: not yet"
    assert first.wake_at == sim.now + timedelta(seconds=20)

    sim.wait(10)
    assert len(sim.confirmations) == 1  # not asked again before its interval
    sim.wait(10)
    assert len(sim.confirmations) == 2
    assert sim.asked.get(V2.revision, 0) == 0

    sim.gate_says["confirmRollout"] = True
    sim.wait(20)
    assert sim.status.gate is None
    assert sim.status.gates_passed == ["confirmRollout"]
    assert sim.asked[V2.revision] == 1  # the first step's pods, in the pass that got the yes
    assert reasons(sim)[:3] == ["RolloutStarted", "GateWaiting", "GatePassed"]
    sim.run(until=lambda s: s.status.stable == V2)
    assert sim.status.gates_passed == []  # the record is of the rollout in progress


def test_pre_rollout_runs_its_job_against_a_ready_pod_before_any_traffic() -> None:
    sim = Sim.serving(spec({"preRollout": {"command": ["smoke-test"]}}))
    sim.tick()
    assert sim.asked[V2.revision] == 1  # one pod to test
    assert sim.hook_jobs == []  # not before that pod is ready
    sim.wait(5)
    assert len(sim.hook_jobs) == 1
    job = sim.hook_jobs[0]
    assert job.startswith(V2.revision)
    assert sim.status.gate is not None
    assert sim.status.gate.job == job
    assert sim.weights == (100, 0)
    sim.wait(30)
    assert sim.weights == (100, 0)  # a hook still running holds the traffic
    sim.hook_ends = "Succeeded"
    sim.wait(5)
    assert sim.status.gates_passed == ["preRollout"]
    assert sim.weights == (80, 20)


def test_a_failed_pre_rollout_hook_rolls_back_and_a_retry_runs_a_job_of_its_own() -> None:
    sim = Sim.serving(spec({"preRollout": {"command": ["smoke-test"]}}))
    sim.tick()
    sim.wait(5)
    sim.hook_ends = "Failed"
    sim.wait(5)
    assert sim.status.phase == "RolledBack"
    assert sim.status.canary is None
    assert sim.status.held == V2
    assert sim.status.history[-1].outcome == "RolledBack"
    assert "PreRolloutFailed" in reasons(sim)
    assert sim.weights == (100, 0)
    assert sim.status.gate is None

    sim.hook_ends = None
    sim.wait(60)
    sim.tick("retry")
    sim.wait(5)
    assert len(sim.hook_jobs) == 2
    assert sim.hook_jobs[0] != sim.hook_jobs[1]


def test_confirm_promotion_holds_the_last_step_until_yes_and_background_analysis_goes_on() -> None:
    sim = Sim.serving(spec({"confirmPromotion": WEBHOOK}))
    sim.run(until=lambda s: s.status.gate is not None)
    assert sim.status.gate is not None
    assert sim.status.gate.name == "confirmPromotion"
    assert sim.status.current_step == 3
    assert sim.weights == (50, 50)
    sim.wait(300)
    assert sim.status.phase == "Progressing"
    assert not sim.actions(Promote)
    sim.gate_says["confirmPromotion"] = True
    sim.wait(30)
    sim.run(until=lambda s: s.status.stable == V2)
    assert sim.status.stable == V2


def test_wait_up_to_with_abort_rolls_back_and_with_proceed_passes() -> None:
    gate = {**WEBHOOK, "interval": "10s", "waitUpTo": "1m"}
    aborting = Sim.serving(spec({"confirmRollout": gate}))
    aborting.run(until=lambda s: bool(s.status.history) and s.status.history[-1].revision == V2.revision)
    assert aborting.status.phase == "RolledBack"
    assert aborting.status.history[-1].outcome == "Aborted"
    assert "GateTimedOut" in reasons(aborting)
    assert aborting.now - aborting.status.history[-1].started_at <= timedelta(seconds=70)

    proceeding = Sim.serving(spec({"confirmRollout": {**gate, "onTimeout": "proceed"}}))
    proceeding.run(until=lambda s: "confirmRollout" in s.status.gates_passed)
    passed = proceeding.events("GatePassed")
    assert "onTimeout: proceed" in passed[0].message


def test_direct_with_gates_asks_before_the_candidate_runs_and_before_promotion() -> None:
    sim = Sim.serving(spec({"confirmRollout": WEBHOOK, "confirmPromotion": WEBHOOK}, strategy="direct"))
    sim.gate_says["confirmRollout"] = True
    sim.tick()
    assert [c.gate for c in sim.confirmations] == ["confirmRollout", "confirmPromotion"]  # both in one pass
    assert sim.status.gate is not None
    assert sim.status.gate.name == "confirmPromotion"
    assert not sim.actions(Promote)
    sim.gate_says["confirmPromotion"] = True
    sim.run(until=lambda s: s.status.stable == V2)
    assert sim.status.stable == V2


def test_a_users_promote_passes_the_gate_it_waits_at() -> None:
    sim = Sim.serving(spec({"confirmRollout": WEBHOOK}))
    sim.tick()
    sim.tick("promote")
    assert sim.status.gates_passed == ["confirmRollout"]
    passed = sim.events("GatePassed")[-1]
    assert "a user" in passed.message
    assert sim.status.current_step == 0  # the gate, not a step, was skipped


def test_the_first_revision_passes_no_gate() -> None:
    sim = Sim(spec({"confirmRollout": WEBHOOK, "preRollout": {"command": ["x"]}}), target=V1)
    sim.run(until=lambda s: s.status.phase == "Healthy")
    assert sim.confirmations == []
    assert sim.hook_jobs == []


def test_an_answer_for_another_revision_is_not_a_yes() -> None:
    sim = Sim.serving(spec({"confirmRollout": WEBHOOK}))
    sim.tick()
    assert sim.status.gate is not None
    decision = sim.decide(None, None)
    assert not any(isinstance(a, RequestConfirmation) for a in decision.actions)  # not due yet
    stale = GateAnswer("confirmRollout", V1.revision, True, "200")
    after = tick(sim.status, sim.spec, target=sim.target, metrics=None, now=sim.now, answer=stale)
    assert after.status.gate is not None
    assert after.status.gates_passed == []


def test_no_gates_no_questions_and_events_as_before() -> None:
    sim = Sim.serving(make_spec({"strategy": "canary", "canary": {"steps": [{"setWeight": 20}]}}))
    sim.run(until=lambda s: s.status.stable == V2)
    assert sim.confirmations == []
    assert not sim.actions(RunHook)
    assert "GateWaiting" not in reasons(sim)
    assert [a for a in sim.actions(SetWeights) if 0 < a.canary < 100]
    assert all(isinstance(e, RecordEvent) for e in sim.events())
