"""Builders shared by the batch mode's unit tests: a batch-led ModelDeployment, Jobs and pods as the cluster shows
them, scorer results as the scorer writes them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from testkit.manifests import load_example

from modelrollout.api.model import ModelSpec
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef
from modelrollout.modes.batch.machine import BatchInputs
from modelrollout.planning.reconcile import PlanSettings, target_of
from modelrollout.rollout.verbs import Verb
from modelrollout_contract.batch import Comparison, Counts, Histogram, ModelRef, RunResult

SETTINGS = PlanSettings(default_image="registry.example/model-server:1", progress_deadline_s=600, history_limit=5)
T0 = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
SHADOW = load_example("batch-shadow.yaml")


def md(version: str = "8", *, status: ModelDeploymentStatus | None = None, **spec: Any) -> ModelDeployment:
    body = copy.deepcopy(SHADOW)
    body["metadata"] |= {"namespace": "ml", "uid": "uid-1", "generation": 1}
    body["spec"]["model"]["version"] = version
    body["spec"]["model"]["uri"] = f"s3://models/churn/{version}/model.joblib"
    for key, value in spec.items():
        if key == "batch":
            body["spec"]["batch"] |= value
        else:
            body["spec"][key] = value
    if status is not None:
        body["status"] = status.to_wire()
    return ModelDeployment.model_validate(body)


def ref(version: str) -> RevisionRef:
    return target_of(md(version).spec, SETTINGS)


def model(version: str) -> ModelSpec:
    spec = md(version).spec.model
    return spec.model_copy(update={"image": SETTINGS.default_image})


def inputs(
    resource: ModelDeployment,
    *,
    runs: list[Any] | None = None,
    stable: str | None = None,
    verb: Verb | None = None,
    now: datetime = T0,
) -> BatchInputs:
    return BatchInputs(
        spec=resource.spec,
        target=target_of(resource.spec, SETTINGS),
        target_model=resource.spec.model.model_copy(update={"image": SETTINGS.default_image}),
        stable_model=model(stable) if stable else None,
        stable_model_revision=ref(stable).revision if stable else None,
        runs=runs or [],
        verb=verb,
        now=now,
        history_limit=SETTINGS.history_limit,
    )


def result(
    *,
    outcome: str = "Succeeded",
    reason: str = "Completed",
    read: int = 1000,
    scored: int | None = None,
    rejected: int = 0,
    manifest: str = "s3://lake/churn/date=2026-12-03/_manifest.json",
    comparison: Comparison | None = None,
    quantiles: dict[str, float] | None = None,
    message: str = "",
    duration: float = 10.0,
    histogram: Histogram | None = None,
) -> RunResult:
    return RunResult.model_validate(
        {
            "outcome": outcome,
            "reason": reason,
            "message": message,
            "manifest": manifest if outcome == "Succeeded" else "",
            "counts": Counts(read=read, scored=read - rejected if scored is None else scored, rejected=rejected),
            "durationSeconds": duration,
            "scoreQuantiles": quantiles or {},
            "comparison": comparison,
            "histogram": histogram,
        }
    )


def comparison(
    *,
    records: int = 1000,
    agreement: float = 1.0,
    psi: float = 0.0,
    scored: int = 1000,
    ref_scored: int = 1000,
    rejected: int = 0,
    seconds: float = 1.0,
    ref_seconds: float = 1.0,
) -> Comparison:
    return Comparison.model_validate(
        {
            "reference": ModelRef(name="churn", version="8"),
            "records": records,
            "scored": scored,
            "referenceScored": ref_scored,
            "rejected": rejected,
            "referenceRejected": 0,
            "agreement": agreement,
            "meanAbsDiff": 0.0,
            "psi": psi,
            "seconds": seconds,
            "referenceSeconds": ref_seconds,
        }
    )


def job(
    name: str,
    *,
    role: str,
    revision: str,
    version: str = "8",
    created: datetime = T0,
    phase: str | None = "Complete",
    scheduled: datetime | None = None,
    failed_reason: str = "BackoffLimitExceeded",
) -> dict[str, Any]:
    conditions = []
    if phase is not None:
        condition = {"type": phase, "status": "True"}
        if phase == "Failed":
            condition |= {"reason": failed_reason, "message": "Job has reached the specified backoff limit"}
        conditions.append(condition)
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created.isoformat().replace("+00:00", "Z"),
            "labels": {
                "modelrollout.dev/name": "churn-nightly",
                "modelrollout.dev/mode": "batch",
                "modelrollout.dev/revision": revision,
                "modelrollout.dev/role": role,
                "modelrollout.dev/version": version,
            },
            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": (scheduled or created).isoformat()},
        },
        "status": {"conditions": conditions},
    }


def pod(job_name: str, run: RunResult | str | None, *, exit_code: int = 0, created: datetime = T0) -> dict[str, Any]:
    message = run if isinstance(run, str) else (run.model_dump_json(by_alias=True) if run else "")
    state = {"terminated": {"exitCode": exit_code, "message": message}} if run is not None else {"running": {}}
    return {
        "metadata": {
            "name": f"{job_name}-x",
            "labels": {"job-name": job_name},
            "creationTimestamp": (created + timedelta(seconds=1)).isoformat(),
        },
        "status": {"containerStatuses": [{"name": "scorer", "state": state}]},
    }
