"""How a run ended, read from the Job's conditions and the scorer's termination message."""

from __future__ import annotations

from datetime import timedelta

from modelrollout.modes.batch.runs import run_of, runs_of
from tests.unit.modelrollout.modes.batch.support import T0, comparison, job, pod, result


def test_a_completed_run_reports_the_scorers_counts_and_manifest() -> None:
    run = run_of(job("j1", role="stable", revision="r8"), [pod("j1", result(read=1000, rejected=3))])
    assert run is not None
    assert (run.phase, run.reason, run.role, run.revision, run.version) == (
        "Succeeded",
        "Completed",
        "stable",
        "r8",
        "8",
    )
    assert run.counts is not None
    assert (run.counts.read, run.counts.scored, run.counts.rejected) == (1000, 997, 3)
    assert run.manifest == "s3://lake/churn/date=2026-12-03/_manifest.json"
    assert run.scheduled_time == T0
    assert run.duration_seconds == 10.0


def test_a_failed_run_says_the_scorers_reason() -> None:
    failed = result(outcome="Failed", reason="SchemaMismatch", message="input lacks feature column f3", read=0)
    run = run_of(job("j1", role="shadow", revision="r9", phase="Failed"), [pod("j1", failed, exit_code=3)])
    assert run is not None
    assert (run.phase, run.reason) == ("Failed", "SchemaMismatch")
    assert run.message == "input lacks feature column f3"
    assert run.manifest is None


def test_a_scorer_that_died_before_its_result_is_quoted_from_its_log() -> None:
    log_tail = "Traceback (most recent call last):\n  ...\nMemoryError"
    run = run_of(job("j1", role="stable", revision="r8", phase="Failed"), [pod("j1", log_tail, exit_code=137)])
    assert run is not None
    assert (run.phase, run.reason) == ("Failed", "Error")
    assert run.message is not None
    assert run.message.endswith("MemoryError")


def test_a_job_that_failed_without_any_pod_result_says_the_controllers_words() -> None:
    run = run_of(job("j1", role="stable", revision="r8", phase="Failed", failed_reason="DeadlineExceeded"), [])
    assert run is not None
    assert run.reason == "JobFailed"
    assert run.message is not None
    assert run.message.startswith("DeadlineExceeded")


def test_a_running_job_has_no_result_yet_and_retries_do_not_hide_the_last_failure() -> None:
    running = run_of(job("j1", role="stable", revision="r8", phase=None), [pod("j1", None)])
    assert running is not None
    assert running.phase == "Running"
    assert running.counts is None
    first = result(outcome="Failed", reason="StorageError", message="first attempt", read=0)
    second = result(outcome="Failed", reason="StorageError", message="second attempt", read=0)
    run = run_of(
        job("j2", role="stable", revision="r8", phase="Failed"),
        [pod("j2", second, exit_code=5, created=T0 + timedelta(minutes=1)), pod("j2", first, exit_code=5)],
    )
    assert run is not None
    assert run.message == "second attempt"


def test_of_a_sharded_run_the_commit_tells_the_whole() -> None:
    part = result(read=400, manifest="")
    whole = result(read=1000)
    run = run_of(
        job("j1", role="stable", revision="r8"), [pod("j1", whole), pod("j1", part, created=T0 + timedelta(1))]
    )
    assert run is not None
    assert run.counts is not None
    assert run.counts.read == 1000
    assert run.manifest


def test_a_shadow_runs_comparison_becomes_the_gates_measures() -> None:
    compared = comparison(
        records=990, agreement=0.97, psi=0.04, scored=990, ref_scored=995, rejected=10, seconds=3, ref_seconds=2
    )
    run = run_of(job("j1", role="shadow", revision="r9"), [pod("j1", result(read=1000, comparison=compared))])
    assert run is not None
    assert run.comparison is not None
    said = run.comparison
    assert (said.records, said.agreement, said.psi) == (990, 0.97, 0.04)
    assert said.rejected_increase == 1.0  # 10 of 1000 rejected by the candidate, none by the reference
    assert said.duration_ratio == 1.5
    assert said.counts_equal is False


def test_runs_are_ordered_by_creation_and_foreign_jobs_ignored() -> None:
    later = job("b", role="stable", revision="r8", created=T0 + timedelta(days=1))
    earlier = job("a", role="stable", revision="r8")
    foreign = {"metadata": {"name": "x", "labels": {"app": "other"}}, "status": {}}
    runs = runs_of([later, foreign, earlier], [pod("a", result()), pod("b", result())])
    assert [r.job for r in runs] == ["a", "b"]
