"""The run's numbers for Prometheus: pushed once, when the run ends, to a Pushgateway (a batch job is gone before
any scrape). The group is (job modelserver-batch, model, version): each run replaces the previous run's values
of the same model version (POST: metrics this push does not carry stay), so `modelserver_batch_records_total`
is the last run's count, and the last-success timestamp, pushed by committed runs only, says when that version
last committed (the staleness alert every batch job needs)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from modelrollout_contract import metrics as names
from modelrollout_contract.batch import RunResult

JOB = "modelserver-batch"
log = logging.getLogger(__name__)


def registry_for(result: RunResult, *, model: str, version: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    records = Gauge(names.BATCH_RECORDS, "Records of the last run by result", ["model", "version", "result"],
                    registry=registry)  # fmt: skip
    records.labels(model, version, names.SCORED).set(result.counts.scored)
    records.labels(model, version, names.REJECTED).set(result.counts.rejected)
    duration = Gauge(names.BATCH_RUN_DURATION, "Wall time of the last run", ["model", "version"], registry=registry)
    duration.labels(model, version).set(result.duration_s)
    if result.outcome == "Succeeded":
        last = Gauge(names.BATCH_LAST_SUCCESS, "When a run last committed", ["model", "version"], registry=registry)
        last.labels(model, version).set(time.time())
    return registry


def push(url: str, result: RunResult, *, model: str, version: str) -> None:
    """Best effort: a Pushgateway that is down must not fail a run whose output is committed."""
    try:
        pushadd_to_gateway(
            url,
            job=JOB,
            grouping_key={"model": model, "version": version},
            registry=registry_for(result, model=model, version=version),
            timeout=10,
        )
    except OSError as exc:
        log.warning("pushing the run's metrics to %s failed: %s", url, exc)
