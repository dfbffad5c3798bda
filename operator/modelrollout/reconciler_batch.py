"""The I/O of a batch pass (the reconciler's, for a ModelDeployment whose rollout batch leads, and for batch
following an online rollout): read our CronJobs, every Job of ours and their pods; decide and plan (pure,
`modes.batch`); apply the CronJobs, start the Jobs, delete what no role wants. Never any data-lake access: how a
run ended is in its pods' termination messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import BatchRun, RevisionRef
from modelrollout.kube.children import ChildSource
from modelrollout.modes.batch.machine import BatchDecision, BatchInputs
from modelrollout.modes.batch.objects import build_run_job, cronjob_name, run_job_name, stored_model
from modelrollout.modes.batch.plan import BatchPlan, plan_batch
from modelrollout.modes.batch.runs import runs_of
from modelrollout.planning.names import LABEL_REVISION, selector
from modelrollout.planning.online import Owner
from modelrollout.rollout.verbs import Verb

if TYPE_CHECKING:
    from modelrollout.kube.client import KubeClient


@dataclass(frozen=True)
class BatchObserved:
    cronjobs: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]  # Jobs the ModelDeployment owns itself (pre-flights)
    runs: list[BatchRun]


async def observe_batch(children: ChildSource, md: ModelDeployment) -> BatchObserved:
    name, namespace, uid = md.metadata.name or "", md.metadata.namespace or "", md.metadata.uid
    cronjobs = {o["metadata"]["name"]: o for o in await children.owned("CronJob", namespace, name, uid)}
    owned_jobs = {o["metadata"]["name"]: o for o in await children.owned("Job", namespace, name, uid)}
    labels = selector(name, "batch")
    jobs = await children.labelled("Job", namespace, labels)
    pods = await children.pods(namespace, labels) if jobs else []
    return BatchObserved(cronjobs=cronjobs, jobs=owned_jobs, runs=runs_of(jobs, pods))


def batch_inputs(
    md: ModelDeployment,
    observed: BatchObserved,
    *,
    target: RevisionRef,
    default_image: str,
    verb: Verb | None,
    now: datetime,
    history_limit: int,
) -> BatchInputs:
    spec = md.spec
    stable = observed.cronjobs.get(cronjob_name(md.metadata.name or "", "stable"))
    return BatchInputs(
        spec=spec,
        target=target,
        target_model=spec.model.model_copy(update={"image": spec.model.image or default_image}),
        stable_model=stored_model(stable) if stable is not None else None,
        stable_model_revision=(stable["metadata"].get("labels") or {}).get(LABEL_REVISION) if stable else None,
        runs=observed.runs,
        verb=verb,
        now=now,
        history_limit=history_limit,
    )


def plan_of(md: ModelDeployment, decision: BatchDecision, observed: BatchObserved) -> BatchPlan:
    owner = Owner(name=md.metadata.name or "", namespace=md.metadata.namespace or "", uid=md.metadata.uid or "")
    return plan_batch(md.spec, owner, decision, previous=md.status, observed_runs=observed.runs,
                      cronjobs=observed.cronjobs, jobs=observed.jobs)  # fmt: skip


async def start_jobs(kube: KubeClient, plan: BatchPlan, namespace: str) -> None:
    """The pre-flight Job, and each `run` verb's Job from its CronJob as stored after this pass applied it (the
    Job is owned by it). A Job's name comes from its verb, so a pass that runs again after a failure finds it
    made (409) and goes on."""
    for job in plan.jobs:
        await _create(kube, job)
    for run in plan.run_jobs:
        cronjob = await kube.get("CronJob", namespace, run.cronjob)
        if cronjob is None:
            continue  # that role has no CronJob in this pass (the rollout ended): nothing to run
        body = build_run_job(cronjob, uid=cronjob["metadata"]["uid"], name=run_job_name(run.cronjob, run.verb_id),
                             at=run.at)  # fmt: skip
        await _create(kube, body)


async def _create(kube: KubeClient, body: dict[str, Any]) -> None:
    try:
        await kube.create(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
