"""What the cluster says about a revision, reduced to what decisions need: is it available, and if it cannot
become available, why (in words a user can act on)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelrollout_contract.stream import TRANSIENT_EXIT

LAST_WORDS_CHARS = 400  # of a crashed container's last line, in a condition's message
# Container states a restart does not fix: waiting longer only delays the bad news.
_FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class RevisionHealth:
    revision: str
    desired: int
    ready: int
    available: bool
    failure: str | None = None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None)


def _transient(status: dict[str, Any]) -> bool:
    """The container last exited on a fault outside it that its restart fixes (a stream consumer after a broker
    restart): a crash loop on that is not the revision's failure."""
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    return terminated.get("exitCode") == TRANSIENT_EXIT


def _last_words(status: dict[str, Any]) -> str:
    """What the container said as it last exited (its termination message: with FallbackToLogsOnError, the end of
    its log), its last line, which is where a process says why it stops."""
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    lines = [line for line in str(terminated.get("message") or "").splitlines() if line.strip()]
    if not lines:
        return ""
    said = lines[-1].strip()
    said = said if len(said) <= LAST_WORDS_CHARS else "..." + said[-LAST_WORDS_CHARS:]
    return f"; it last exited {terminated.get('exitCode', '?')} saying: {said}"


def pod_failure(pod: dict[str, Any]) -> str | None:
    """The first container problem that keeps this pod from ever becoming ready, if any."""
    name = pod.get("metadata", {}).get("name", "?")
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff" and _transient(status):
            continue
        if waiting.get("reason") in _FATAL_WAITING:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            words = _last_words(status) if waiting.get("reason") == "CrashLoopBackOff" else ""
            return f"pod {name} container {status.get('name')} is {waiting['reason']}{detail}{words}"
    return None


def revision_health(revision: str, deployment: dict[str, Any], pods: Iterable[dict[str, Any]]) -> RevisionHealth:
    """Availability as the Deployment controller reports it, plus the reason it failed, if it did."""
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    available = (
        current
        and int(status.get("updatedReplicas", 0)) >= desired
        and int(status.get("availableReplicas", 0)) >= desired
        and int(status.get("replicas", 0)) == int(status.get("updatedReplicas", 0))
    )
    failure = None
    if not available:
        failure = next((f for f in map(pod_failure, pods) if f), None)
        progressing = _condition(deployment, "Progressing")
        if failure is None and progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            failure = f"not available within the progress deadline: {progressing.get('message', '')}".strip()
    return RevisionHealth(revision=revision, desired=desired, ready=ready, available=available, failure=failure)
