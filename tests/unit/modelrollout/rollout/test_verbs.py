"""Every verb in every state: what it does, or why it is refused (a Warning event, nothing else changes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError
from testkit.rollout import V1, V2, V3, Sim, always, analysis, make_spec

from modelrollout.api.status import Phase
from modelrollout.rollout import EnsureRevision, Promote, RecordEvent, SetWeights, Verb

STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 50}, {"pause": {}}]


def spec(**settings: Any) -> Any:
    return make_spec({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis(**settings)})


def stepping() -> Sim:
    sim = Sim.serving(spec())
    sim.tick()
    sim.tick()
    assert (sim.status.current_step, sim.status.phase) == (1, "Progressing")
    return sim


def step_paused() -> Sim:
    sim = stepping()
    sim.run(until=lambda s: s.status.paused, step_s=600)
    assert (sim.status.current_step, sim.status.pause_reason) == (3, "PauseStep")
    return sim


def user_paused() -> Sim:
    sim = stepping()
    sim.tick("pause")
    return sim


def inconclusive_paused() -> Sim:
    sim = Sim.serving(spec(inconclusiveLimit=0), script=always("Inconclusive"))
    sim.tick()
    sim.run(until=lambda s: s.status.paused)
    assert sim.status.pause_reason == "Inconclusive"
    sim.script = lambda _request: None  # later runs stay unanswered, so only the verb acts
    return sim


def promoting() -> Sim:
    sim = stepping()
    sim.auto_ready = False
    sim.tick(Verb(name="promote", full=True))
    assert sim.status.phase == "Promoting"
    return sim


def healthy() -> Sim:
    return Sim.serving(spec(), target=V1)


def aborted() -> Sim:
    sim = stepping()
    sim.tick("abort")
    return sim


def rolled_back() -> Sim:
    sim = Sim.serving(spec(), script=always("Failed"))
    sim.tick()
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    return sim


STATES: dict[str, Callable[[], Sim]] = {
    "stepping": stepping,
    "step-paused": step_paused,
    "user-paused": user_paused,
    "inconclusive-paused": inconclusive_paused,
    "promoting": promoting,
    "healthy": healthy,
    "aborted": aborted,
    "rolled-back": rolled_back,
}
VERBS = {
    "promote": Verb(name="promote"),
    "promote-full": Verb(name="promote", full=True),
    "abort": Verb(name="abort"),
    "retry": Verb(name="retry"),
    "pause": Verb(name="pause"),
    "resume": Verb(name="resume"),
    "undo": Verb(name="undo"),
}
IGN = "VerbIgnored"
# state -> verb -> (phase after, reason of the first event the verb caused, or None for no event)
EXPECTED: dict[str, dict[str, tuple[Phase, str | None]]] = {
    "stepping": {
        "promote": ("Progressing", "Promote"),
        "promote-full": ("Promoting", "Promoting"),
        "abort": ("Degraded", "Aborted"),
        "retry": ("Progressing", IGN),
        "pause": ("Paused", "User"),
        "resume": ("Progressing", IGN),
        "undo": ("RolledBack", "Undone"),
    },
    "step-paused": {
        "promote": ("Promoting", "Promote"),
        "promote-full": ("Promoting", "Promoting"),
        "abort": ("Degraded", "Aborted"),
        "retry": ("Paused", IGN),
        "pause": ("Paused", "User"),
        "resume": ("Paused", IGN),
        "undo": ("RolledBack", "Undone"),
    },
    "user-paused": {
        "promote": ("Progressing", "Promote"),
        "promote-full": ("Promoting", "Promoting"),
        "abort": ("Degraded", "Aborted"),
        "retry": ("Paused", IGN),
        "pause": ("Paused", None),
        "resume": ("Progressing", "Resumed"),
        "undo": ("RolledBack", "Undone"),
    },
    "inconclusive-paused": {
        "promote": ("Progressing", "Promote"),
        "promote-full": ("Promoting", "Promoting"),
        "abort": ("Degraded", "Aborted"),
        "retry": ("Paused", IGN),
        "pause": ("Paused", "User"),
        "resume": ("Progressing", "Resumed"),
        "undo": ("RolledBack", "Undone"),
    },
    "promoting": {
        "promote": ("Promoting", IGN),
        "promote-full": ("Promoting", IGN),
        "abort": ("Degraded", "Aborted"),
        "retry": ("Promoting", IGN),
        "pause": ("Promoting", IGN),
        "resume": ("Promoting", IGN),
        "undo": ("RolledBack", "Undone"),
    },
    "healthy": {
        "promote": ("Healthy", IGN),
        "promote-full": ("Healthy", IGN),
        "abort": ("Healthy", IGN),
        "retry": ("Healthy", IGN),
        "pause": ("Healthy", IGN),
        "resume": ("Healthy", IGN),
        "undo": ("Healthy", "NothingToUndo"),
    },
    "aborted": {
        "promote": ("Degraded", IGN),
        "promote-full": ("Degraded", IGN),
        "abort": ("Degraded", IGN),
        "retry": ("Progressing", "Retry"),
        "pause": ("Degraded", IGN),
        "resume": ("Degraded", IGN),
        "undo": ("Degraded", "NothingToUndo"),
    },
    "rolled-back": {
        "promote": ("RolledBack", IGN),
        "promote-full": ("RolledBack", IGN),
        "abort": ("RolledBack", IGN),
        "retry": ("Progressing", "Retry"),
        "pause": ("RolledBack", IGN),
        "resume": ("RolledBack", IGN),
        "undo": ("RolledBack", "NothingToUndo"),
    },
}
CASES = [(state, verb, *EXPECTED[state][verb]) for state in STATES for verb in VERBS]


@pytest.mark.parametrize(("state", "verb", "phase", "reason"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_verb_in_every_state(state: str, verb: str, phase: Phase, reason: str | None) -> None:
    sim = STATES[state]()
    before = sim.status.model_copy(deep=True)
    decision = sim.tick(VERBS[verb])
    assert sim.status.phase == phase
    events = [a for a in decision.actions if isinstance(a, RecordEvent)]
    assert (events[0].reason if events else None) == reason
    if reason == IGN:
        assert events[0].type == "Warning"
        ignored = before.model_copy(update={"message": sim.status.message, "conditions": sim.status.conditions})
        assert sim.status.model_dump(exclude={"replicas"}) == ignored.model_dump(exclude={"replicas"})
    if phase in ("Degraded", "RolledBack") and before.canary is not None:
        assert sim.weights == (100, 0)
        assert sim.status.held == V2
        assert sim.status.canary is None


def test_verb_ids_make_a_repeated_verb_apply_once() -> None:
    sim = stepping()
    sim.auto_ready = False  # step 2's pods never come, so only verbs move the rollout
    sim.tick(Verb(name="promote", id="cmd-1"))
    assert sim.status.current_step == 2
    assert sim.status.last_verb_id == "cmd-1"
    sim.tick(Verb(name="promote", id="cmd-1"))  # the annotation was still there
    assert sim.status.current_step == 2
    sim.tick(Verb(name="promote", id="cmd-2"))
    assert sim.status.current_step == 3


def test_promote_skips_the_current_step_even_a_weight_waiting_for_pods() -> None:
    sim = Sim.serving(spec(), auto_ready=False)
    sim.tick()
    assert sim.status.current_step == 0
    sim.tick("promote")
    assert sim.status.current_step == 1
    assert sim.weights == (100, 0)


def test_resume_after_undecided_analysis_starts_counting_again() -> None:
    sim = inconclusive_paused()
    sim.tick("resume")
    assert sim.status.analysis.consecutive_inconclusive == 0
    assert sim.status.analysis.next_run_at is not None
    assert (sim.status.analysis.next_run_at - sim.now).total_seconds() == 30


def test_a_user_pause_keeps_the_safety_net_a_failure_still_rolls_back() -> None:
    sim = user_paused()
    sim.script = always("Failed")
    sim.run(until=lambda s: s.status.phase == "RolledBack")
    assert sim.weights == (100, 0)


def test_retry_rolls_the_same_revision_out_again_from_the_start() -> None:
    sim = rolled_back()
    sim.script = always("Successful")
    sim.tick("retry")
    assert sim.status.canary == V2
    assert sim.status.current_step == 0
    assert sim.status.analysis.failures == 0
    assert sim.status.held is None
    sim.run(until=lambda s: s.status.paused)
    sim.tick("promote")
    sim.tick()
    assert sim.status.stable == V2
    assert sim.outcomes == [(V1.revision, "Promoted"), (V2.revision, "RolledBack"), (V2.revision, "Promoted")]


def promoted_v2() -> Sim:
    sim = step_paused()
    sim.tick("promote")
    sim.tick()
    assert sim.status.stable == V2
    return sim


def test_undo_brings_back_the_previously_promoted_revision_without_steps() -> None:
    sim = promoted_v2()
    sim.auto_ready = False
    sim.pods[V1.revision] = 0  # already scaled down: undo scales it up again
    decision = sim.tick("undo")
    assert sim.status.phase == "Promoting"
    assert sim.status.canary == V1
    assert sim.status.held == V2
    assert EnsureRevision(revision=V1, role="canary", replicas=4) in decision.actions
    assert sim.status.scale_downs == []  # V1 no longer goes away
    sim.pods[V1.revision] = 4
    sim.tick()
    assert sim.status.stable == V1
    assert sim.status.phase == "RolledBack"
    assert sim.actions(Promote)[-1] == Promote(revision=V1, previous=V2)
    assert sim.outcomes[-1] == (V1.revision, "Promoted")
    assert "undo" in (sim.status.history[-1].message or "")
    assert [d.revision for d in sim.status.scale_downs] == [V2.revision]
    sim.wait(3600)
    assert sim.status.stable == V1  # the spec still asks for V2, which stays held
    assert sim.status.canary is None


def test_undo_twice_goes_back_and_forth_and_settles_healthy() -> None:
    sim = promoted_v2()
    sim.tick("undo")
    sim.tick()
    assert sim.status.stable == V1
    sim.tick("undo")
    sim.tick()
    assert sim.status.stable == V2
    assert sim.status.phase == "Healthy"  # the spec's revision serves again
    assert sim.status.held is None


def test_after_undo_retry_rolls_the_spec_revision_out_again_with_its_steps() -> None:
    sim = promoted_v2()
    sim.tick("undo")
    sim.tick()
    sim.tick("retry")
    assert sim.status.canary == V2
    assert sim.status.phase == "Progressing"
    assert sim.status.current_step == 0


def test_after_undo_a_new_spec_revision_rolls_out_normally() -> None:
    sim = promoted_v2()
    sim.tick("undo")
    sim.tick()
    sim.target = V3
    sim.tick()
    assert sim.status.canary == V3
    assert sim.status.stable == V1
    assert sim.status.held is None


def test_undo_during_a_rollout_returns_to_stable_and_holds_the_candidate() -> None:
    sim = stepping()
    sim.tick("undo")
    assert sim.outcomes[-1] == (V2.revision, "RolledBack")
    assert sim.actions(SetWeights)[-1] == SetWeights(stable=100, canary=0)
    sim.wait(3600)
    assert sim.status.canary is None


def test_full_applies_only_to_promote() -> None:
    with pytest.raises(ValidationError, match="full applies only to promote"):
        Verb(name="abort", full=True)
