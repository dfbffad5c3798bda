"""How batch runs ended, from what the cluster shows (pure): a Job's conditions say whether it succeeded, and its
pods' termination messages say what the scorer did (modelrollout_contract.batch.RunResult: counts, manifest,
comparison). The operator learns results from pod status alone: no access to the data lake, no data-plane I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import ValidationError

from modelrollout.api.status import BatchComparison, BatchCounts, BatchRole, BatchRun, BatchRunPhase
from modelrollout.modes.batch.objects import ANNOTATION_SCHEDULED, CONTAINER, CONTROLLER_SCHEDULED, LABEL_VERSION
from modelrollout.planning.names import LABEL_REVISION, LABEL_ROLE
from modelrollout_contract.batch import RunResult

_ROLES = frozenset(get_args(BatchRole))
_TEXT = 1500


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _phase(job: Mapping[str, Any]) -> BatchRunPhase:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded"
        if condition.get("type") == "Failed":
            return "Failed"
    return "Running"


def _terminations(pod: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(exit code, message) of the scorer container's end in this pod, its last run first."""
    found = []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            ended = state.get("terminated")
            if ended:
                found.append((int(ended.get("exitCode", 0)), str(ended.get("message") or "")))
    return found


def _result(code: int, message: str) -> RunResult:
    """The scorer's RunResult; a message that is not one (the scorer died before writing it, and the kubelet
    kept the log's tail instead) becomes a failure that quotes it."""
    try:
        return RunResult.model_validate_json(message)
    except ValidationError:
        text = message.strip()[-_TEXT:] or f"the scorer exited with code {code} and left no result"
        return RunResult(outcome="Succeeded" if code == 0 else "Failed", reason="Error", message=text)


def _by_start(pod: Mapping[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp") or "")


def _results(pods: Iterable[Mapping[str, Any]]) -> list[RunResult]:
    """Every result the Job's pods left, oldest pod first."""
    return [_result(code, message) for pod in sorted(pods, key=_by_start) for code, message in _terminations(pod)]


def _pick(results: Sequence[RunResult], phase: BatchRunPhase) -> RunResult | None:
    """The result that tells the run's story: the commit's (the shard that wrote the manifest) when it
    succeeded, the latest failure when it failed."""
    if phase == "Succeeded":
        committed = [r for r in results if r.outcome == "Succeeded" and r.manifest]
        return committed[-1] if committed else next((r for r in reversed(results) if r.outcome == "Succeeded"), None)
    if phase == "Failed":
        return next((r for r in reversed(results) if r.outcome == "Failed"), results[-1] if results else None)
    return None


def _comparison(result: RunResult) -> BatchComparison | None:
    compared = result.comparison
    if compared is None:
        return None
    read = result.counts.read
    share = 100 * compared.rejected / read if read else 0.0
    reference_share = 100 * compared.reference_rejected / read if read else 0.0
    ratio = compared.seconds / compared.reference_seconds if compared.reference_seconds > 0 else None
    return BatchComparison(
        records=compared.records,
        agreement=compared.agreement,
        mean_abs_diff=compared.mean_abs_diff,
        psi=compared.psi,
        rejected_increase=share - reference_share,
        duration_ratio=ratio,
        stable_seconds=compared.reference_seconds,
        counts_equal=compared.scored == compared.reference_scored,
    )


def _failure_message(job: Mapping[str, Any]) -> str | None:
    """The Job controller's own words when no pod said anything (deadline exceeded, backoff limit reached)."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason, message = condition.get("reason", ""), condition.get("message", "")
            return f"{reason}: {message}".strip(": ") or None
    return None


def run_of(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> BatchRun | None:
    """The run a Job of ours stands for, or None for a Job without our labels."""
    meta = job.get("metadata", {})
    labels = meta.get("labels") or {}
    role, revision = labels.get(LABEL_ROLE), labels.get(LABEL_REVISION)
    if role not in _ROLES or not revision:
        return None
    annotations = meta.get("annotations") or {}
    phase = _phase(job)
    chosen = _pick(_results(pods), phase)
    run = BatchRun(
        job=meta.get("name", ""),
        role=role,
        revision=revision,
        version=labels.get(LABEL_VERSION, ""),
        scheduled_time=_time(annotations.get(CONTROLLER_SCHEDULED) or annotations.get(ANNOTATION_SCHEDULED)),
        created_at=_time(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC),
        phase=phase,
    )
    if chosen is None:
        if phase == "Failed":
            run.reason, run.message = "JobFailed", _failure_message(job)
        return run
    run.reason = chosen.reason
    run.message = chosen.message[:_TEXT] or None
    run.counts = BatchCounts(read=chosen.counts.read, scored=chosen.counts.scored, rejected=chosen.counts.rejected)
    run.duration_seconds = chosen.duration_s
    run.manifest = chosen.manifest or None
    run.comparison = _comparison(chosen)
    run.quantiles = dict(chosen.score_quantiles) or None
    run.histogram = chosen.histogram
    if chosen.keys is not None:
        run.keys = f"{chosen.keys.start}-{chosen.keys.end}"
    if phase == "Failed" and chosen.outcome != "Failed":
        run.reason, run.message = "JobFailed", _failure_message(job) or run.message
    return run


def runs_of(jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> list[BatchRun]:
    """Every run of our Jobs, oldest first."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        job_name = (pod.get("metadata", {}).get("labels") or {}).get("job-name")
        if job_name:
            by_job.setdefault(job_name, []).append(pod)
    runs = [run_of(job, by_job.get(job.get("metadata", {}).get("name", ""), [])) for job in jobs]
    return sorted((r for r in runs if r is not None), key=lambda r: (r.created_at, r.job))
