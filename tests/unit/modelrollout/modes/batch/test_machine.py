"""The batch rollout, pass by pass: each candidate run judged once when it ends; shadow promotes after its passing
runs and rolls back on one failure; direct waits for its pre-flight; canary steps up run by run; verbs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.modes.batch.machine import BatchDecision, decide_batch, follow_batch
from modelrollout.modes.batch.runs import runs_of
from modelrollout.rollout.verbs import Verb
from modelrollout_contract.batch import Histogram
from tests.unit.modelrollout.modes.batch.support import T0, comparison, inputs, job, md, pod, ref, result

V8, V9 = ref("8"), ref("9")
CANARY = {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]}}


def serving8() -> ModelDeploymentStatus:
    return decide_batch(ModelDeploymentStatus(), inputs(md("8"))).status


def shadow_run(name: str, *, at: Any, **compared: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        job(name, role="shadow", revision=V9.revision, version="9", created=at),
        pod(name, result(comparison=comparison(**compared))),
    )


def runs(*pairs: tuple[dict[str, Any], dict[str, Any]]) -> list[Any]:
    return runs_of([j for j, _ in pairs], [p for _, p in pairs])


def roles(d: BatchDecision) -> list[tuple[str, str, str | None]]:
    return [(r.role, r.revision.version, r.reference.version if r.reference else None) for r in d.roles]


def test_the_first_revision_scores_at_once() -> None:
    d = decide_batch(ModelDeploymentStatus(), inputs(md("8")))
    assert d.status.stable == V8
    assert d.status.canary is None
    assert d.status.phase == "Healthy"
    assert roles(d) == [("stable", "8", None)]


def test_a_new_version_is_shadowed_beside_stable_which_keeps_writing_the_output() -> None:
    d = decide_batch(serving8(), inputs(md("9"), stable="8"))
    assert d.status.phase == "Progressing"
    assert d.status.canary == V9
    assert roles(d) == [("stable", "8", None), ("shadow", "9", "8")]
    assert ("Normal", "RolloutStarted") in [(e.type, e.reason) for e in d.events]


def test_passing_shadow_runs_promote_after_the_configured_number_each_counted_once() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    night1 = runs(shadow_run("s1", at=T0 + timedelta(hours=1)))
    one = decide_batch(started, inputs(md("9"), stable="8", runs=night1, now=T0 + timedelta(hours=2)))
    assert one.status.batch is not None
    assert one.status.batch.passed_runs == 1
    assert one.status.canary == V9  # runs: 2 in examples/batch-shadow.yaml
    assert night1[0].gate == "Passed"
    again = decide_batch(
        one.status,
        inputs(
            md("9"), stable="8", runs=runs(shadow_run("s1", at=T0 + timedelta(hours=1))), now=T0 + timedelta(hours=3)
        ),
    )
    assert again.status.batch is not None
    assert again.status.batch.passed_runs == 1, "the same run counted twice"
    both = runs(shadow_run("s1", at=T0 + timedelta(hours=1)), shadow_run("s2", at=T0 + timedelta(days=1)))
    done = decide_batch(again.status, inputs(md("9"), stable="8", runs=both, now=T0 + timedelta(days=1, hours=1)))
    assert done.status.stable == V9
    assert done.status.canary is None
    assert done.status.phase == "Healthy"
    assert done.status.history[-1].outcome == "Promoted"
    assert roles(done) == [("stable", "9", None)]


def test_a_failing_shadow_run_rolls_back_and_stable_keeps_scoring() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    bad = runs(shadow_run("s1", at=T0 + timedelta(hours=1), agreement=0.8))
    d = decide_batch(started, inputs(md("9"), stable="8", runs=bad, now=T0 + timedelta(hours=2)))
    assert d.status.phase == "RolledBack"
    assert d.status.stable == V8
    assert d.status.canary is None
    assert d.status.held == V9
    assert "agreement 0.8000" in (d.status.message or "")
    assert d.status.history[-1].outcome == "RolledBack"
    assert roles(d) == [("stable", "8", None)]
    # Held: the next pass does not start it again.
    later = decide_batch(d.status, inputs(md("9"), stable="8", runs=bad, now=T0 + timedelta(hours=3)))
    assert later.status.canary is None
    assert later.status.phase == "RolledBack"
    # retry starts it again.
    retried = decide_batch(
        later.status,
        inputs(md("9"), stable="8", runs=bad, verb=Verb(name="retry", id="r1"), now=T0 + timedelta(hours=4)),
    )
    assert retried.status.canary == V9
    assert retried.status.phase == "Progressing"


def test_a_candidate_that_cannot_read_the_input_is_rolled_back_with_the_reason() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    failed = result(outcome="Failed", reason="SchemaMismatch", message="input lacks column f3", read=0)
    seen = runs_of(
        [job("s1", role="shadow", revision=V9.revision, created=T0 + timedelta(hours=1), phase="Failed")],
        [pod("s1", failed, exit_code=3)],
    )
    d = decide_batch(started, inputs(md("9"), stable="8", runs=seen, now=T0 + timedelta(hours=2)))
    assert d.status.phase == "RolledBack"
    assert "SchemaMismatch: input lacks column f3" in (d.status.message or "")


def test_runs_from_before_the_rollout_are_not_judged() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    old = runs(shadow_run("s0", at=T0 - timedelta(days=1), agreement=0.1))
    d = decide_batch(started, inputs(md("9"), stable="8", runs=old, now=T0 + timedelta(hours=1)))
    assert d.status.canary == V9
    assert d.status.phase == "Progressing"


def test_a_run_created_in_the_second_the_rollout_began_is_judged() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0 + timedelta(milliseconds=430))).status
    same_second = runs(shadow_run("s1", at=T0))  # creationTimestamp has whole seconds
    d = decide_batch(started, inputs(md("9"), stable="8", runs=same_second, now=T0 + timedelta(seconds=5)))
    assert d.status.batch is not None
    assert d.status.batch.passed_runs == 1


def test_run_now_runs_stable_and_during_shadow_the_candidate_on_the_same_data() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    at = T0 - timedelta(days=2)
    d = decide_batch(started, inputs(md("9"), stable="8", verb=Verb(name="run", id="abc123", at=at)))
    assert [(r.role, r.verb_id, r.at) for r in d.run_now] == [("stable", "abc123", at), ("shadow", "abc123", at)]
    assert d.status.last_verb_id == "abc123"
    repeated = decide_batch(d.status, inputs(md("9"), stable="8", verb=Verb(name="run", id="abc123", at=at)))
    assert repeated.run_now == [], "a verb applies once"


def test_direct_promotes_after_its_preflight_and_rolls_back_when_it_fails() -> None:
    direct = {"strategy": "direct"}
    started = decide_batch(serving8(), inputs(md("9", rollout=direct), stable="8", now=T0))
    assert started.preflight is not None
    assert started.preflight.revision == V9
    assert roles(started) == [("stable", "8", None)], "the CronJob keeps stable until the pre-flight passes"
    ok = runs_of(
        [job("p", role="preflight", revision=V9.revision, created=T0 + timedelta(minutes=1))],
        [pod("p", result(read=500, manifest=""))],
    )
    promoted = decide_batch(
        started.status, inputs(md("9", rollout=direct), stable="8", runs=ok, now=T0 + timedelta(minutes=2))
    )
    assert promoted.status.stable == V9
    assert promoted.preflight is None
    assert "scored 500 sample records" in (promoted.status.message or "")
    bad = runs_of(
        [job("p", role="preflight", revision=V9.revision, created=T0 + timedelta(minutes=1), phase="Failed")],
        [pod("p", result(outcome="Failed", reason="ModelLoadFailed", message="bad pickle"), exit_code=6)],
    )
    rolled = decide_batch(
        started.status, inputs(md("9", rollout=direct), stable="8", runs=bad, now=T0 + timedelta(minutes=2))
    )
    assert rolled.status.phase == "RolledBack"
    assert rolled.status.stable == V8
    assert "ModelLoadFailed: bad pickle" in (rolled.status.message or "")


def canary_night(n: int, weight: int, *, ok: bool = True) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    at = T0 + timedelta(days=n)
    scores = Histogram(positive=dict.fromkeys(range(-20, 0), 10))
    stable_read, canary_read = 10_000 - weight * 100, weight * 100
    canary = (
        result(read=canary_read, histogram=scores) if ok else result(outcome="Failed", reason="Error", message="boom")
    )
    return [
        (
            job(f"st{n}", role="stable", revision=V8.revision, created=at, scheduled=at),
            pod(f"st{n}", result(read=stable_read, histogram=scores, manifest="")),
        ),
        (
            job(
                f"ca{n}",
                role="canary",
                revision=V9.revision,
                version="9",
                created=at,
                scheduled=at,
                phase="Complete" if ok else "Failed",
            ),
            pod(f"ca{n}", canary, exit_code=0 if ok else 1),
        ),
    ]


def test_a_canary_steps_up_one_run_per_weight_with_the_same_key_split_each_run() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    assert [(r.role, r.keys) for r in d.roles] == [("stable", (1000, 10000)), ("canary", (0, 1000))]
    seen: list[Any] = []
    for night, weight, nxt in ((1, 10, (0, 5000)), (2, 50, (0, 10000))):
        seen += canary_night(night, weight)
        d = decide_batch(
            d.status, inputs(md("9", **spec), stable="8", runs=runs(*seen), now=T0 + timedelta(days=night, hours=1))
        )
        assert d.status.canary == V9
        assert {r.role: r.keys for r in d.roles}["canary"] == nxt
    seen += canary_night(3, 100)
    done = decide_batch(
        d.status, inputs(md("9", **spec), stable="8", runs=runs(*seen), now=T0 + timedelta(days=3, hours=1))
    )
    assert done.status.stable == V9
    assert done.status.canary is None
    assert [(r.role, r.keys) for r in done.roles] == [("stable", None)]


def test_run_now_during_a_canary_runs_both_shares_of_the_same_data() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    run = decide_batch(d.status, inputs(md("9", **spec), stable="8", verb=Verb(name="run", id="v1", at=T0)))
    assert [(r.role, r.at) for r in run.run_now] == [("stable", T0), ("canary", T0)]


def test_a_failing_canary_part_rolls_back_and_stable_rescores_that_run_whole() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    bad = runs(*canary_night(1, 10, ok=False))
    rolled = decide_batch(d.status, inputs(md("9", **spec), stable="8", runs=bad, now=T0 + timedelta(days=1, hours=1)))
    assert rolled.status.phase == "RolledBack"
    assert [(r.role, r.at) for r in rolled.run_now] == [("stable", T0 + timedelta(days=1))]
    assert [(r.role, r.keys) for r in rolled.roles] == [("stable", None)]


def test_a_canary_run_waits_for_stables_share_of_the_same_run() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    night = canary_night(1, 10)
    stable_running = (
        job(
            "st1",
            role="stable",
            revision=V8.revision,
            created=T0 + timedelta(days=1),
            scheduled=T0 + timedelta(days=1),
            phase=None,
        ),
        pod("st1", None),
    )
    waiting = decide_batch(
        d.status,
        inputs(md("9", **spec), stable="8", runs=runs(stable_running, night[1]), now=T0 + timedelta(days=1, hours=1)),
    )
    assert waiting.status.current_step == 0
    assert waiting.status.weights.canary == 10


def test_abort_stops_the_rollout_and_a_new_spec_supersedes_it() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    aborted = decide_batch(started, inputs(md("9"), stable="8", verb=Verb(name="abort", id="a1")))
    assert aborted.status.phase == "Degraded"
    assert aborted.status.held == V9
    assert aborted.status.history[-1].outcome == "Aborted"
    superseded = decide_batch(started, inputs(md("10"), stable="8"))
    assert superseded.status.canary == ref("10")
    assert [h.outcome for h in superseded.status.history] == ["Superseded"]
    back = decide_batch(started, inputs(md("8"), stable="8"))
    assert back.status.canary is None
    assert back.status.phase == "Healthy"


def test_pause_is_refused_with_a_reason() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    d = decide_batch(started, inputs(md("9"), stable="8", verb=Verb(name="pause", id="p1")))
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "VerbIgnored")]
    assert d.status.canary == V9


def test_beside_online_batch_follows_the_promoted_revision() -> None:
    status = ModelDeploymentStatus(stable=V8, canary=V9, phase="Progressing")
    d = follow_batch(status, inputs(md("9"), stable="8"))
    assert roles(d) == [("stable", "8", None)]
    promoted = follow_batch(ModelDeploymentStatus(stable=V9, phase="Healthy"), inputs(md("9"), stable="8"))
    assert roles(promoted) == [("stable", "9", None)]
    unknown = follow_batch(status, inputs(md("9")))  # batch added mid-rollout: stable's model is not known
    assert roles(unknown) == []


def test_a_canary_share_whose_scores_shifted_rolls_back_with_the_psi() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    at = T0 + timedelta(days=1)
    stable_scores = Histogram(positive=dict.fromkeys(range(-20, 0), 10))
    shifted = Histogram(positive={k + 8: 10 for k in range(-20, 0)})
    night = runs(
        (job("st1", role="stable", revision=V8.revision, created=at, scheduled=at),
         pod("st1", result(read=9000, histogram=stable_scores, manifest=""))),
        (job("ca1", role="canary", revision=V9.revision, version="9", created=at, scheduled=at),
         pod("ca1", result(read=1000, histogram=shifted))),
    )  # fmt: skip
    rolled = decide_batch(d.status, inputs(md("9", **spec), stable="8", runs=night, now=at + timedelta(hours=1)))
    assert rolled.status.phase == "RolledBack"
    assert "PSI" in (rolled.status.message or "")


def test_the_stable_model_is_kept_in_status_so_a_lost_cronjob_loses_nothing() -> None:
    status = serving8()
    assert status.batch is not None
    assert status.batch.stable_model is not None
    assert status.batch.stable_model.model.version == "8"
    started = decide_batch(status, inputs(md("9"), stable=None, now=T0))  # no CronJob to read the model from
    assert roles(started) == [("stable", "8", None), ("shadow", "9", "8")]
    assert started.status.canary == V9


def test_after_a_rollback_the_spec_going_back_to_stable_is_healthy_again() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0)).status
    bad = runs(shadow_run("s1", at=T0 + timedelta(hours=1), agreement=0.8))
    rolled = decide_batch(started, inputs(md("9"), stable="8", runs=bad, now=T0 + timedelta(hours=2))).status
    assert rolled.phase == "RolledBack"
    back = decide_batch(rolled, inputs(md("8"), stable="8", runs=bad, now=T0 + timedelta(hours=3)))
    assert back.status.phase == "Healthy"
    assert back.status.held is None


# --- notification kinds ------------------------------------------------------------------------------------------


def told(*decisions: BatchDecision) -> list[tuple[str, set[str]]]:
    return [(e.reason, set(e.notify)) for d in decisions for e in d.events if e.notify]


def test_a_shadow_promoted_is_started_then_promoted_and_a_failing_run_is_a_rollback_by_analysis() -> None:
    started = decide_batch(serving8(), inputs(md("9"), stable="8", now=T0))
    both = runs(shadow_run("s1", at=T0 + timedelta(hours=1)), shadow_run("s2", at=T0 + timedelta(days=1)))
    done = decide_batch(started.status, inputs(md("9"), stable="8", runs=both, now=T0 + timedelta(days=1, hours=1)))
    assert done.status.stable == V9
    assert told(started, done) == [("RolloutStarted", {"started"}), ("Promoted", {"promoted"})]
    bad = runs(shadow_run("s1", at=T0 + timedelta(hours=1), agreement=0.8))
    rolled = decide_batch(started.status, inputs(md("9"), stable="8", runs=bad, now=T0 + timedelta(hours=2)))
    assert told(rolled) == [("RolledBack", {"rolledBack", "analysisFailed"})]


def test_a_batch_canary_reaches_each_step_and_a_user_abort_is_a_rollback() -> None:
    spec = {"rollout": CANARY}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    decisions = [d]
    seen: list[Any] = []
    for night, weight in ((1, 10), (2, 50), (3, 100)):
        seen += canary_night(night, weight)
        d = decide_batch(
            d.status, inputs(md("9", **spec), stable="8", runs=runs(*seen), now=T0 + timedelta(days=night, hours=1))
        )
        decisions.append(d)
    assert told(*decisions) == [
        ("RolloutStarted", {"started"}),
        ("CanaryRunPassed", {"stepReached"}),
        ("CanaryRunPassed", {"stepReached"}),
        ("CanaryRunPassed", {"stepReached"}),
        ("Promoted", {"promoted"}),
    ]
    bad = runs(*canary_night(1, 10, ok=False))
    rolled = decide_batch(decisions[0].status, inputs(md("9", **spec), stable="8", runs=bad,
                                                      now=T0 + timedelta(days=1, hours=1)))  # fmt: skip
    assert told(rolled) == [("RolledBack", {"rolledBack", "analysisFailed"})]
    aborted = decide_batch(decisions[0].status, inputs(md("9", **spec), stable="8", verb=Verb(name="abort", id="a")))
    assert told(aborted) == [("Aborted", {"rolledBack"})]


def test_a_batch_canary_pause_step_is_paused_once() -> None:
    spec = {"rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}
    status = decide_batch(serving8(), inputs(md("8", **spec))).status
    d = decide_batch(status, inputs(md("9", **spec), stable="8", now=T0 + timedelta(minutes=1)))
    seen = canary_night(1, 10)
    paused = decide_batch(d.status, inputs(md("9", **spec), stable="8", runs=runs(*seen),
                                           now=T0 + timedelta(days=1, hours=1)))  # fmt: skip
    assert paused.status.paused
    still = decide_batch(paused.status, inputs(md("9", **spec), stable="8", runs=runs(*seen),
                                               now=T0 + timedelta(days=1, hours=2)))  # fmt: skip
    assert still.status.paused
    assert told(paused, still) == [("CanaryRunPassed", {"stepReached"}), ("PauseStep", {"paused"})]
