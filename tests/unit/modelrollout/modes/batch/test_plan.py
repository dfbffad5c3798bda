"""A batch decision made real: CronJobs per role, what is deleted, runs and readiness in status, one event per
ended run."""

from __future__ import annotations

from datetime import timedelta

from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.modes.batch.machine import decide_batch
from modelrollout.modes.batch.plan import pass_status, plan_batch
from modelrollout.modes.batch.runs import runs_of
from modelrollout.planning.online import Owner
from modelrollout.rollout.verbs import Verb
from tests.unit.modelrollout.modes.batch.support import T0, inputs, job, md, pod, ref, result

OWNER = Owner(name="churn-nightly", namespace="ml", uid="uid-1")


def test_a_shadow_rollout_wants_both_cronjobs_and_its_end_deletes_the_shadow() -> None:
    first = decide_batch(ModelDeploymentStatus(), inputs(md("8")))
    rolling = decide_batch(first.status, inputs(md("9"), stable="8"))
    plan = plan_batch(
        md("9").spec,
        OWNER,
        rolling,
        previous=first.status,
        observed_runs=[],
        cronjobs={"churn-nightly-batch": {}},
        jobs={},
    )
    assert [c["metadata"]["name"] for c in plan.cronjobs] == ["churn-nightly-batch", "churn-nightly-shadow"]
    assert plan.delete == []
    rolled_back = rolling.status.model_copy(update={"canary": None, "held": ref("9"), "phase": "RolledBack"})
    after = decide_batch(rolled_back, inputs(md("9"), stable="8"))
    plan = plan_batch(
        md("9").spec,
        OWNER,
        after,
        previous=rolled_back,
        observed_runs=[],
        cronjobs={"churn-nightly-batch": {}, "churn-nightly-shadow": {}},
        jobs={"old-preflight": {}},
    )
    assert plan.delete == [("CronJob", "churn-nightly-shadow"), ("Job", "old-preflight")]


def test_ended_runs_are_said_once_and_kept_with_their_verdicts() -> None:
    status = decide_batch(ModelDeploymentStatus(), inputs(md("8"))).status
    done = runs_of([job("n1", role="stable", revision=ref("8").revision)], [pod("n1", result(read=10, rejected=1))])
    d = decide_batch(status, inputs(md("8"), runs=done))
    plan = plan_batch(md("8").spec, OWNER, d, previous=status, observed_runs=done, cronjobs={}, jobs={})
    [event] = [e for e in plan.events if e.reason == "RunSucceeded"]
    assert "scored 9 of 10 records, rejected 1" in event.message
    assert "_manifest.json" in event.message
    assert d.status.batch is not None
    assert [r.job for r in d.status.batch.runs] == ["n1"]
    assert plan.readiness is not None
    assert plan.readiness.status == "True"
    assert plan.readiness.reason == "LastRunSucceeded"
    again = decide_batch(d.status, inputs(md("8"), runs=done))
    replan = plan_batch(md("8").spec, OWNER, again, previous=d.status, observed_runs=done, cronjobs={}, jobs={})
    assert not [e for e in replan.events if e.reason == "RunSucceeded"]


def test_a_failed_run_is_a_warning_and_batch_is_not_ready_until_a_run_succeeds() -> None:
    status = decide_batch(ModelDeploymentStatus(), inputs(md("8"))).status
    failed = result(outcome="Failed", reason="SchemaMismatch", message="input lacks column f3", read=0)
    seen = runs_of(
        [job("n1", role="stable", revision=ref("8").revision, phase="Failed")], [pod("n1", failed, exit_code=3)]
    )
    d = decide_batch(status, inputs(md("8"), runs=seen))
    plan = plan_batch(md("8").spec, OWNER, d, previous=status, observed_runs=seen, cronjobs={}, jobs={})
    [event] = [e for e in plan.events if e.reason == "RunFailed"]
    assert event.type == "Warning"
    assert "SchemaMismatch: input lacks column f3" in event.message
    assert plan.readiness is not None
    assert (plan.readiness.status, plan.readiness.reason) == ("False", "RunFailed")
    assert "input lacks column f3" in plan.readiness.message
    good = runs_of(
        [
            job("n1", role="stable", revision=ref("8").revision, phase="Failed"),
            job("n2", role="stable", revision=ref("8").revision, created=T0 + timedelta(days=1)),
        ],
        [pod("n1", failed, exit_code=3), pod("n2", result(), created=T0 + timedelta(days=1))],
    )
    later = decide_batch(d.status, inputs(md("8"), runs=good))
    plan = plan_batch(md("8").spec, OWNER, later, previous=d.status, observed_runs=good, cronjobs={}, jobs={})
    assert plan.readiness is not None
    assert plan.readiness.status == "True"


def test_a_run_verb_becomes_a_job_of_the_stable_cronjob() -> None:
    status = decide_batch(ModelDeploymentStatus(), inputs(md("8"))).status
    d = decide_batch(status, inputs(md("8"), verb=Verb(name="run", id="0123456789abcdef", at=T0)))
    plan = plan_batch(md("8").spec, OWNER, d, previous=status, observed_runs=[], cronjobs={}, jobs={})
    [run] = plan.run_jobs
    assert (run.cronjob, run.verb_id, run.at) == ("churn-nightly-batch", "0123456789abcdef", T0)


def test_suspended_batch_is_not_ready() -> None:
    resource = md("8", batch={"suspend": True})
    d = decide_batch(ModelDeploymentStatus(), inputs(resource))
    plan = plan_batch(resource.spec, OWNER, d, previous=None, observed_runs=[], cronjobs={}, jobs={})
    assert plan.readiness is not None
    assert plan.readiness.reason == "Suspended"


def test_a_retried_direct_rollout_gets_a_fresh_preflight_job() -> None:
    direct = {"strategy": "direct"}
    first = decide_batch(ModelDeploymentStatus(), inputs(md("8", rollout=direct)))
    started = decide_batch(first.status, inputs(md("9", rollout=direct), stable="8", now=T0))
    plan = plan_batch(md("9", rollout=direct).spec, OWNER, started, previous=first.status, observed_runs=[],
                      cronjobs={}, jobs={})  # fmt: skip
    [job] = plan.jobs
    name = job["metadata"]["name"]
    retried = started.status.model_copy(update={"rollout_started_at": T0 + timedelta(days=1)})
    again = decide_batch(retried, inputs(md("9", rollout=direct), stable="8", now=T0 + timedelta(days=1)))
    replan = plan_batch(md("9", rollout=direct).spec, OWNER, again, previous=retried, observed_runs=[],
                        cronjobs={}, jobs={name: {}})  # fmt: skip
    [fresh] = replan.jobs
    assert fresh["metadata"]["name"] != name
    assert ("Job", name) in replan.delete


def test_a_batch_led_pass_says_ready_per_mode_and_keeps_the_rollout_conditions() -> None:
    resource = md("8")
    d = decide_batch(ModelDeploymentStatus(), inputs(resource))
    plan = plan_batch(resource.spec, OWNER, d, previous=None, observed_runs=[], cronjobs={}, jobs={})
    status = pass_status(resource.spec, d, plan, prev=ModelDeploymentStatus(), generation=3, now=T0)
    said = {c.type: (c.status, c.reason) for c in status.conditions}
    assert said["Ready"] == ("True", "Scheduled")
    assert said["BatchReady"] == ("True", "Scheduled")
    assert said["Progressing"][0] == "False"
    assert (status.modes, status.observed_generation) == ("batch", 3)
