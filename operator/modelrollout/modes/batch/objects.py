"""The objects of batch scoring (pure): a CronJob per role of a revision (`stable` scores the night into the
output; `shadow` scores the same input with the candidate into the shadow location and compares it with the stable
model; `canary` scores the candidate's share of the keys into the same output as stable), the Job of a `run` verb
(what `kubectl create job --from=cronjob/...` makes), and the pre-flight Job of strategy direct.

Every pod runs `modelserver batch` with its whole configuration in MODELSERVER_* variables; the scorer tells how a
run ended in its termination message (modelrollout_contract.batch.RunResult), which is how results reach the
operator: it reads pod status, never the data lake.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelrollout.api.base import duration_seconds
from modelrollout.api.model import ModelSpec
from modelrollout.api.resource import GROUP
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import BatchRole, RevisionRef
from modelrollout.api.workloads import BatchSpec, DataLocation
from modelrollout.planning.names import LABEL_ROLE, MANAGED_BY, selector
from modelrollout.planning.online import (
    LOCKED_DOWN_CONTAINER,
    LOCKED_DOWN_POD,
    MODEL_DIR,
    Owner,
    model_env,
)
from modelrollout.planning.placement import place

CONTAINER = "scorer"
LABEL_VERSION = f"{GROUP}/version"
# The model of the revision a CronJob runs, as JSON: the only record of a stable model the spec no longer names.
ANNOTATION_MODEL = f"{GROUP}/model"
# When a run's data is from: set by the CronJob controller on the Jobs it makes; by us on the Jobs we make.
CONTROLLER_SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"
ANNOTATION_SCHEDULED = f"{GROUP}/scheduled-time"
# What `kubectl create job --from=cronjob/...` marks its Jobs with.
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOB_NAME = "metadata.labels['job-name']"
# Exit codes of `modelserver batch` (modelserver.batch.errors) that a retry cannot change: invalid settings, a
# schema mismatch, too many invalid records, a model that does not load. The Job fails at once instead of
# retrying them backoffLimit times; storage errors and crashes are retried.
PERMANENT_EXIT_CODES = (2, 3, 4, 6)
# Rows a pre-flight scores: enough to exercise the model on real records, few enough to take seconds.
PREFLIGHT_RECORDS = 10_000

_CRONJOB_SUFFIX: dict[BatchRole, str] = {"stable": "batch", "shadow": "shadow", "canary": "canary", "preflight": ""}


def cronjob_name(name: str, role: BatchRole) -> str:
    """`<name>-batch` (stable), `<name>-shadow`, `<name>-canary`: at most 47 characters, so the CronJob
    controller's Job names (`<cronjob>-<minutes>`, 11 more) stay within 63."""
    return f"{name}-{_CRONJOB_SUFFIX[role]}"


def run_job_name(cronjob: str, verb_id: str) -> str:
    """The Job of one `run` verb: named after the verb (a digest of its id, whatever the id looks like), so
    applying the verb again finds it made."""
    return f"{cronjob}-run-{hashlib.sha256(verb_id.encode()).hexdigest()[:8]}"


def preflight_job_name(name: str, revision: str, rollout_started: datetime) -> str:
    """One pre-flight per rollout of a revision: a retried rollout gets a fresh one, not the failed Job again."""
    attempt = hashlib.sha256(rollout_started.isoformat().encode()).hexdigest()[:4]
    return f"{name}-pf-{revision}-{attempt}"


def _under(location: DataLocation, *parts: str) -> DataLocation:
    return DataLocation(uri="/".join([location.uri.rstrip("/"), *parts]), format=location.format)


def shadow_location(batch: BatchSpec, revision: str) -> DataLocation:
    """Where a shadow candidate writes: spec.batch.shadowOutput, else `_shadow/<revision>` under the output (a `_`
    directory, which lake readers such as Spark and Hive skip, and which the stable run's commit never touches)."""
    return batch.shadow_output or _under(batch.output, "_shadow", revision)


def preflight_location(batch: BatchSpec, revision: str) -> DataLocation:
    return _under(batch.output, "_preflight", revision)


@dataclass(frozen=True)
class Scoring:
    """What one role's runs do: which model scores, into where, compared with what, on which keys."""

    role: BatchRole
    revision: RevisionRef
    model: ModelSpec  # image resolved (the default image filled in)
    output: DataLocation
    reference: ModelSpec | None = None  # shadow: the stable model the candidate is compared with
    keys: tuple[int, int] | None = None  # canary: the key buckets [from, to) of 10000 this role scores
    token_from_schedule: bool = False  # canary: stable's and candidate's Jobs are two shards of one run


def _env(spec: ModelDeploymentSpec, scoring: Scoring) -> list[dict[str, Any]]:
    batch = spec.batch
    assert batch is not None
    env = [
        *model_env(scoring.model),
        {"name": "MODELSERVER_DOWNLOAD_DIR", "value": MODEL_DIR},
        {"name": "MODELSERVER_REVISION", "value": scoring.revision.revision},
        {"name": "MODELSERVER_INPUT_URI", "value": batch.input.uri},
        {"name": "MODELSERVER_INPUT_FORMAT", "value": batch.input.format},
        {"name": "MODELSERVER_OUTPUT_URI", "value": scoring.output.uri},
        {"name": "MODELSERVER_OUTPUT_FORMAT", "value": scoring.output.format},
        {"name": "MODELSERVER_INVALID_RECORDS", "value": batch.invalid_records},
        {"name": "MODELSERVER_MAX_INVALID_PERCENT", "value": f"{batch.max_invalid_percent:g}"},
        # The scheduled time of a CronJob's run is in its Job's name; a retried pod gets the same one.
        {"name": "MODELSERVER_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": JOB_NAME}}},
    ]
    if batch.id_columns:
        env.append({"name": "MODELSERVER_ID_COLUMNS", "value": json.dumps(batch.id_columns)})
    if batch.threshold is not None:
        env.append({"name": "MODELSERVER_THRESHOLD", "value": f"{batch.threshold:g}"})
    if batch.time_zone:
        env.append({"name": "MODELSERVER_TIME_ZONE", "value": batch.time_zone})
    if batch.pushgateway_url:
        env.append({"name": "MODELSERVER_PUSHGATEWAY_URL", "value": batch.pushgateway_url})
    if scoring.keys is not None:
        key = batch.canary_key
        assert key is not None  # admission: a batch canary names its key
        env += [
            {"name": "MODELSERVER_KEY_COLUMN", "value": key},
            {"name": "MODELSERVER_KEY_FROM", "value": str(scoring.keys[0])},
            {"name": "MODELSERVER_KEY_TO", "value": str(scoring.keys[1])},
            # The two roles' Jobs are two shards of one run: shard 0 stable, shard 1 the candidate; the token is
            # the run's time (the scorer's default), which both share.
            {"name": "MODELSERVER_SHARD_COUNT", "value": "2"},
            {"name": "MODELSERVER_SHARD_INDEX", "value": "1" if scoring.role == "canary" else "0"},
        ]
    elif batch.shards > 1:
        env += [
            {"name": "MODELSERVER_SHARD_COUNT", "value": str(batch.shards)},
            {"name": "MODELSERVER_SHARD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        ]
    if not scoring.token_from_schedule:
        # One execution = one Job: a manual run of the same time never mixes its shard records with the nightly's.
        env.append({"name": "MODELSERVER_RUN_TOKEN", "valueFrom": {"fieldRef": {"fieldPath": JOB_NAME}}})
    if scoring.reference is not None:
        ref = scoring.reference
        env += [
            {"name": "MODELSERVER_REFERENCE_MODEL_URI", "value": ref.uri},
            {"name": "MODELSERVER_REFERENCE_MODEL_VERSION", "value": ref.version},
            {"name": "MODELSERVER_REFERENCE_MODEL_FORMAT", "value": ref.format},
        ]
        if ref.class_name:
            env.append({"name": "MODELSERVER_REFERENCE_MODEL_CLASS", "value": ref.class_name})
    # The user's variables last, so they can override ours (credentials, the S3 endpoint, the log level).
    env += [e.to_wire() for e in scoring.model.env]
    return env


def _labels(owner: Owner, scoring: Scoring) -> dict[str, str]:
    return {
        **selector(owner.name, "batch", scoring.revision.revision),
        LABEL_ROLE: scoring.role,
        LABEL_VERSION: scoring.revision.version,
    }


def _job_spec(spec: ModelDeploymentSpec, owner: Owner, scoring: Scoring) -> dict[str, Any]:
    batch = spec.batch
    assert batch is not None
    labels = _labels(owner, scoring)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": scoring.model.image,
        "args": ["batch"],
        "env": _env(spec, scoring),
        "securityContext": LOCKED_DOWN_CONTAINER,
        # The scorer writes its RunResult there; a crash before it could leaves the log's tail instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "models", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if scoring.model.resources:
        container["resources"] = scoring.model.resources.to_wire()
    template = place(
        {
            "metadata": {"labels": {**MANAGED_BY, **labels}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [container],
                "securityContext": LOCKED_DOWN_POD,
                "automountServiceAccountToken": False,
                "volumes": [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            },
        },
        spec.pod,
        model_pods=True,
    )
    job: dict[str, Any] = {
        "backoffLimit": batch.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": list(PERMANENT_EXIT_CODES)},
                }
            ]
        },
        "template": template,
    }
    shards = batch.shards if scoring.keys is None and scoring.role != "preflight" else 1
    if shards > 1:
        job |= {"completionMode": "Indexed", "completions": shards, "parallelism": shards}
    if batch.active_deadline:
        job["activeDeadlineSeconds"] = max(1, int(duration_seconds(batch.active_deadline)))
    if batch.ttl_seconds_after_finished is not None:
        job["ttlSecondsAfterFinished"] = batch.ttl_seconds_after_finished
    return job


def build_cronjob(spec: ModelDeploymentSpec, owner: Owner, scoring: Scoring) -> dict[str, Any]:
    """The CronJob of one role: the spec's schedule, one run at a time (a commit deletes the parts it does not
    list, which would include a concurrent run's), and the revision's model recorded for the passes after the
    spec has moved on."""
    batch = spec.batch
    assert batch is not None
    labels = _labels(owner, scoring)
    metadata = owner.metadata(cronjob_name(owner.name, scoring.role), labels)
    metadata["annotations"] = {ANNOTATION_MODEL: scoring.model.model_dump_json(by_alias=True, exclude_none=True)}
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": batch.schedule,
            "suspend": batch.suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": batch.starting_deadline_seconds,
            "successfulJobsHistoryLimit": batch.successful_jobs_history_limit,
            "failedJobsHistoryLimit": batch.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": {**MANAGED_BY, **labels}},
                "spec": _job_spec(spec, owner, scoring),
            },
        },
    }
    if batch.time_zone:
        body["spec"]["timeZone"] = batch.time_zone
    return body


def _with_scheduled_time(template: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A Job's pod template whose scorer scores the data of `at` (explicit, so the Job's name does not decide)."""
    placed = copy.deepcopy(template)
    for container in placed["spec"]["containers"]:
        if container["name"] == CONTAINER:
            container["env"].insert(0, {"name": "MODELSERVER_SCHEDULED_TIME", "value": at.isoformat()})
    return placed


def build_run_job(cronjob: dict[str, Any], *, uid: str, name: str, at: datetime) -> dict[str, Any]:
    """A run now, from a CronJob as stored: owned by the CronJob (as `kubectl create job --from` makes it), so
    the CronJob's history limits keep it and deleting the CronJob deletes it."""
    meta = cronjob["metadata"]
    template = cronjob["spec"]["jobTemplate"]
    job_spec = copy.deepcopy(template["spec"])
    job_spec["template"] = _with_scheduled_time(job_spec["template"], at)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {INSTANTIATE: "manual", ANNOTATION_SCHEDULED: at.isoformat()},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta["name"],
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def build_preflight_job(
    spec: ModelDeploymentSpec, owner: Owner, scoring: Scoring, *, at: datetime, name: str
) -> dict[str, Any]:
    """Strategy direct's check before the next run uses a new revision: the candidate checks the schema of the
    input of `at` and scores a sample of it into `_preflight/<revision>`; nothing of the output is touched."""
    job_spec = _job_spec(spec, owner, scoring)
    template = _with_scheduled_time(job_spec["template"], at)
    template["spec"]["containers"][0]["env"].insert(
        0, {"name": "MODELSERVER_MAX_RECORDS", "value": str(PREFLIGHT_RECORDS)}
    )
    job_spec["template"] = template
    job_spec["backoffLimit"] = 0
    metadata = owner.metadata(name, _labels(owner, scoring))
    metadata["annotations"] = {ANNOTATION_SCHEDULED: at.isoformat()}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def stored_model(cronjob: dict[str, Any]) -> ModelSpec | None:
    """The model a CronJob we made runs, from its annotation (None for one without it)."""
    raw = (cronjob.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_MODEL)
    if not raw:
        return None
    return ModelSpec.model_validate_json(raw)
