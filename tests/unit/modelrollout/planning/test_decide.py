"""A pass's decision: analyses that fall due are judged before the pass acts, and no verdict is dropped."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from testkit.rollout import T0, V1, V2, analysis, make_spec, run_for

from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef, Verdict
from modelrollout.planning.decide import decide_pass
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.reconcile import Observed, RevisionState
from modelrollout.rollout import EnsureRevision, RecordEvent, SetWeights, Verb
from modelrollout.rollout.actions import GateAnswer, RequestConfirmation


def observed(*pods: tuple[RevisionRef, int]) -> Observed:
    states = {
        ref.revision: RevisionState(
            health=RevisionHealth(ref.revision, desired=n, ready=n, available=True), replicas=n, deployment={}
        )
        for ref, n in pods
    }
    return Observed(revisions=states)


def mid_rollout(**update: Any) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(
        {
            "phase": "Progressing",
            "stable": V1,
            "canary": V2,
            "current_step": 1,
            "step_started_at": T0 - timedelta(seconds=30),
            "rollout_started_at": T0 - timedelta(seconds=40),
            "weights": {"stable": 80, "canary": 20},
            "analysis": {"next_run_at": T0},
            **update,
        }
    )


async def no_gates(request: RequestConfirmation) -> GateAnswer:
    raise AssertionError(f"a spec without gates asked {request.gate}")


class Analyst:
    """Answers each request with the verdict scripted for its kind, and remembers what it was asked."""

    def __init__(self, **verdicts: Verdict) -> None:
        self.verdicts = verdicts
        self.asked: list[AnalysisRequest] = []

    async def __call__(self, request: AnalysisRequest) -> AnalysisOutcome:
        self.asked.append(request)
        return run_for(request, self.verdicts[request.kind], T0)


async def test_a_step_ending_with_a_failing_run_due_never_raises_the_weight_first() -> None:
    spec = make_spec(
        {
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]},
            "analysis": analysis(),
        }
    )
    analyst = Analyst(Background="Failed")
    decision, actions = await decide_pass(
        spec,
        mid_rollout(),
        observed=observed((V1, 4), (V2, 1)),
        target=V2,
        verb=None,
        now=T0,
        analyse=analyst,
        confirm=no_gates,
    )
    assert decision.status.phase == "RolledBack"
    assert SetWeights(stable=50, canary=50) not in actions
    assert SetWeights(stable=100, canary=0) in actions
    assert not [a for a in actions if isinstance(a, RecordEvent) and a.reason == "WeightSet"]
    assert [r.kind for r in analyst.asked] == ["Background"]


async def test_an_analysis_step_entered_during_the_pass_is_judged_in_the_same_pass() -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"analysis": {"duration": "0s"}}]
    spec = make_spec({"strategy": "canary", "canary": {"steps": steps}, "analysis": analysis()})
    analyst = Analyst(Background="Successful", Step="Failed")
    decision, _ = await decide_pass(
        spec,
        mid_rollout(),
        observed=observed((V1, 4), (V2, 1)),
        target=V2,
        verb=None,
        now=T0,
        analyse=analyst,
        confirm=no_gates,
    )
    # The pause ends and the analysis step (its window already passed) asks at once; the pass's start could not
    # have answered it, so it is judged on the decision that entered the step, and acted on in this pass.
    assert [r.kind for r in analyst.asked] == ["Step"]
    assert decision.status.phase == "RolledBack"
    assert [r.verdict for r in decision.status.analysis.runs] == ["Failed"]


async def test_without_a_due_analysis_the_pass_is_one_tick_and_a_verb_applies_once() -> None:
    spec = make_spec({"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})
    status = mid_rollout(analysis={}, paused=True, pause_reason="PauseStep", phase="Paused")
    analyst = Analyst()
    decision, actions = await decide_pass(
        spec,
        status,
        observed=observed((V1, 4), (V2, 1)),
        target=V2,
        verb=Verb(name="promote", id="v-1"),
        now=T0,
        analyse=analyst,
        confirm=no_gates,
    )
    assert analyst.asked == []
    assert decision.status.last_verb_id == "v-1"
    assert [a.reason for a in actions if isinstance(a, RecordEvent)].count("Promote") == 1


async def test_an_analysis_without_a_verdict_yet_leaves_the_pass_acting_on_what_it_decided() -> None:
    spec = make_spec(
        {
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]},
            "analysis": analysis(),
        }
    )
    asked: list[AnalysisRequest] = []

    async def not_yet(request: AnalysisRequest) -> AnalysisOutcome | None:
        asked.append(request)
        return None

    decision, actions = await decide_pass(
        spec,
        mid_rollout(),
        observed=observed((V1, 4), (V2, 1)),
        target=V2,
        verb=None,
        now=T0,
        analyse=not_yet,
        confirm=no_gates,
    )
    assert [r.kind for r in asked] == ["Background"]
    assert decision.status.analysis.runs == []
    assert decision.status.current_step == 2  # the pause ran out: the rollout goes on without the verdict
    assert EnsureRevision(revision=V2, role="canary", replicas=2) in actions  # pods for 50%, then the weight
