"""Batch scoring: a CronJob that scores files on a schedule with the serving revision, and new revisions rolled
out run by run (shadow, canary by key, or direct after a pre-flight). `objects` builds the CronJobs and Jobs,
`runs` reads how runs ended from the cluster, `gates` judges a candidate's run, `machine` decides the rollout and
`plan` turns a decision into objects and status; all pure, the reconciler does the I/O."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.rollout import RECORD_STRATEGIES, Strategy
from modelrollout.kube import kinds
from modelrollout.kube.kinds import Grant
from modelrollout.modes.base import ModeName, OwnedKind


@dataclass(frozen=True, slots=True)
class BatchMode:
    name: ModeName = "batch"
    owned: tuple[OwnedKind, ...] = (
        OwnedKind(
            kinds.CRON_JOB,
            "<name>-batch (the stable revision's runs), <name>-shadow and <name>-canary (a candidate's) during a "
            "rollout.",
            watched=True,
        ),
        OwnedKind(
            kinds.JOB,
            "The pre-flight Job of strategy direct; and every run's Job is watched: a run that ends moves the "
            "rollout on.",
            watched=True,
        ),
    )
    grants: tuple[Grant, ...] = (
        Grant(
            kinds.JOB,
            ("list", "watch", "create"),
            "Runs made by our CronJobs (owned by them): how each ended; `run` creates a Job from a CronJob, as "
            "`kubectl create job --from` does.",
        ),
    )
    strategies: frozenset[Strategy] = frozenset(RECORD_STRATEGIES)
    runnable: bool = True
