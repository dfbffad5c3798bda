"""The objects batch scoring writes: what a platform team's CronJob would say, plus the scorer's configuration."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelrollout.modes.batch.objects import (
    PERMANENT_EXIT_CODES,
    Scoring,
    build_cronjob,
    build_preflight_job,
    build_run_job,
    cronjob_name,
    preflight_job_name,
    preflight_location,
    shadow_location,
    stored_model,
)
from modelrollout.planning.online import LOCKED_DOWN_CONTAINER, LOCKED_DOWN_POD, Owner
from tests.unit.modelrollout.modes.batch.support import T0, md, model, ref

OWNER = Owner(name="churn-nightly", namespace="ml", uid="uid-1")


def env_of(body: dict[str, Any]) -> dict[str, Any]:
    spec = body["spec"]["jobTemplate"]["spec"] if body["kind"] == "CronJob" else body["spec"]
    [container] = spec["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def stable_scoring(version: str = "8", **update: Any) -> Scoring:
    resource = md(version)
    assert resource.spec.batch is not None
    return Scoring(
        role="stable", revision=ref(version), model=model(version), output=resource.spec.batch.output, **update
    )


def test_the_stable_cronjob_runs_one_run_at_a_time_on_the_spec_schedule() -> None:
    resource = md(
        batch={
            "suspend": True,
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 5,
            "activeDeadline": "2h",
            "ttlSecondsAfterFinished": 86400,
        }
    )
    body = build_cronjob(resource.spec, OWNER, stable_scoring())
    assert body["metadata"]["name"] == "churn-nightly-batch"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = body["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("30 1 * * *", "UTC", True)
    assert spec["concurrencyPolicy"] == "Forbid"
    assert (spec["startingDeadlineSeconds"], spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (
        600,
        5,
        3,
    )
    job = spec["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"], job["ttlSecondsAfterFinished"]) == (2, 7200, 86400)
    # A schema mismatch or a model that does not load fails at once: retrying cannot change it.
    [rule] = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == list(PERMANENT_EXIT_CODES)
    assert 3 in PERMANENT_EXIT_CODES
    assert 5 not in PERMANENT_EXIT_CODES
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == LOCKED_DOWN_POD
    [container] = pod["containers"]
    assert container["securityContext"] == LOCKED_DOWN_CONTAINER
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["args"] == ["batch"]
    assert container["image"] == "registry.example/model-server:1"
    labels = spec["jobTemplate"]["metadata"]["labels"]
    assert labels["modelrollout.dev/role"] == "stable"
    assert labels["modelrollout.dev/revision"] == ref("8").revision
    assert labels["modelrollout.dev/version"] == "8"
    assert pod is not None
    assert job["template"]["metadata"]["labels"] == labels


def test_the_scorer_is_configured_from_the_spec_and_the_job_name() -> None:
    env = env_of(build_cronjob(md().spec, OWNER, stable_scoring()))
    assert env["MODELSERVER_MODEL_URI"] == "s3://models/churn/8/model.joblib"
    assert env["MODELSERVER_MODEL_VERSION"] == "8"
    assert env["MODELSERVER_INPUT_URI"] == "s3://lake/events/date={date}/"
    assert env["MODELSERVER_OUTPUT_URI"] == "s3://lake/churn/date={date}"
    assert env["MODELSERVER_ID_COLUMNS"] == '["customer"]'
    assert env["MODELSERVER_THRESHOLD"] == "0.5"
    assert env["MODELSERVER_TIME_ZONE"] == "UTC"
    assert env["MODELSERVER_REVISION"] == ref("8").revision
    job_name = {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}
    assert env["MODELSERVER_JOB_NAME"] == job_name
    assert env["MODELSERVER_RUN_TOKEN"] == job_name
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "lake-credentials", "key": "AWS_ACCESS_KEY_ID"}}
    assert "MODELSERVER_SHARD_COUNT" not in env
    assert "MODELSERVER_REFERENCE_MODEL_URI" not in env


def test_shards_make_an_indexed_job_whose_pods_know_their_index() -> None:
    body = build_cronjob(md(batch={"shards": 3}).spec, OWNER, stable_scoring())
    job = body["spec"]["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 3)
    env = env_of(body)
    assert env["MODELSERVER_SHARD_COUNT"] == "3"
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["MODELSERVER_SHARD_INDEX"] == {"fieldRef": {"fieldPath": index}}


def test_a_shadow_cronjob_writes_aside_and_compares_with_the_stable_model() -> None:
    resource = md("9")
    assert resource.spec.batch is not None
    where = shadow_location(resource.spec.batch, ref("9").revision)
    assert where.uri == f"s3://lake/churn/date={{date}}/_shadow/{ref('9').revision}"
    scoring = Scoring(role="shadow", revision=ref("9"), model=model("9"), output=where, reference=model("8"))
    body = build_cronjob(resource.spec, OWNER, scoring)
    assert body["metadata"]["name"] == "churn-nightly-shadow"
    env = env_of(body)
    assert env["MODELSERVER_OUTPUT_URI"] == where.uri
    assert env["MODELSERVER_MODEL_URI"] == "s3://models/churn/9/model.joblib"
    assert env["MODELSERVER_REFERENCE_MODEL_URI"] == "s3://models/churn/8/model.joblib"
    assert env["MODELSERVER_REFERENCE_MODEL_VERSION"] == "8"


def test_an_explicit_shadow_output_is_used() -> None:
    resource = md(batch={"shadowOutput": {"uri": "s3://scratch/churn/{date}", "format": "csv"}})
    assert resource.spec.batch is not None
    where = shadow_location(resource.spec.batch, "abc")
    assert (where.uri, where.format) == ("s3://scratch/churn/{date}", "csv")


def test_canary_roles_are_two_shards_of_one_run_split_by_key() -> None:
    resource = md(rollout={"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}})
    assert resource.spec.batch is not None
    out = resource.spec.batch.output
    stable = build_cronjob(resource.spec, OWNER, stable_scoring(keys=(1000, 10000), token_from_schedule=True))
    canary = build_cronjob(
        resource.spec,
        OWNER,
        Scoring(
            role="canary", revision=ref("9"), model=model("9"), output=out, keys=(0, 1000), token_from_schedule=True
        ),
    )
    said = {name: env_of(body) for name, body in (("stable", stable), ("canary", canary))}
    assert said["stable"]["MODELSERVER_KEY_COLUMN"] == said["canary"]["MODELSERVER_KEY_COLUMN"] == "customer"
    assert (said["stable"]["MODELSERVER_KEY_FROM"], said["stable"]["MODELSERVER_KEY_TO"]) == ("1000", "10000")
    assert (said["canary"]["MODELSERVER_KEY_FROM"], said["canary"]["MODELSERVER_KEY_TO"]) == ("0", "1000")
    assert (said["stable"]["MODELSERVER_SHARD_INDEX"], said["canary"]["MODELSERVER_SHARD_INDEX"]) == ("0", "1")
    # Both commit one run: the token is the run's time (the scorer's default), not each Job's name.
    assert "MODELSERVER_RUN_TOKEN" not in said["stable"]
    assert "MODELSERVER_RUN_TOKEN" not in said["canary"]
    assert said["canary"]["MODELSERVER_OUTPUT_URI"] == said["stable"]["MODELSERVER_OUTPUT_URI"]
    assert canary["metadata"]["name"] == "churn-nightly-canary"


def test_a_run_now_is_the_cronjobs_job_owned_by_it_for_the_asked_time() -> None:
    cronjob = build_cronjob(md().spec, OWNER, stable_scoring())
    job = build_run_job(cronjob, uid="cj-uid", name="churn-nightly-batch-run-abc", at=T0)
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "churn-nightly-batch",
        "uid": "cj-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert env_of(job)["MODELSERVER_SCHEDULED_TIME"] == T0.isoformat()
    assert job["metadata"]["labels"] == cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
    # The CronJob's template is left as it was.
    assert "MODELSERVER_SCHEDULED_TIME" not in env_of(cronjob)


def test_a_preflight_scores_a_sample_aside_once() -> None:
    resource = md("9")
    assert resource.spec.batch is not None
    where = preflight_location(resource.spec.batch, ref("9").revision)
    scoring = Scoring(role="preflight", revision=ref("9"), model=model("9"), output=where)
    name = preflight_job_name("churn-nightly", ref("9").revision, T0)
    job = build_preflight_job(resource.spec, OWNER, scoring, at=T0, name=name)
    assert job["metadata"]["name"] == name
    assert len(preflight_job_name("a" * 40, ref("9").revision, T0)) <= 63
    assert preflight_job_name("n", "r", T0) != preflight_job_name("n", "r", T0 + timedelta(hours=1)), "per rollout"
    env = env_of(job)
    assert env["MODELSERVER_OUTPUT_URI"] == f"s3://lake/churn/date={{date}}/_preflight/{ref('9').revision}"
    assert int(env["MODELSERVER_MAX_RECORDS"]) > 0
    assert env["MODELSERVER_SCHEDULED_TIME"] == T0.isoformat()
    assert job["spec"]["backoffLimit"] == 0


def test_names_fit_what_the_cronjob_controller_needs_and_the_model_is_recorded() -> None:
    longest = "a" * 40
    for role in ("stable", "shadow", "canary"):
        assert len(cronjob_name(longest, role)) <= 52  # type: ignore[arg-type]
    body = build_cronjob(md().spec, OWNER, stable_scoring())
    assert stored_model(body) == model("8")
    assert stored_model({"metadata": {}}) is None
