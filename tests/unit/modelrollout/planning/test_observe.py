from __future__ import annotations

from typing import Any

from modelrollout.planning.observe import pod_failure, revision_health
from modelrollout_contract.stream import TRANSIENT_EXIT


def deployment(
    *,
    replicas: int = 2,
    ready: int = 2,
    available: int = 2,
    updated: int = 2,
    total: int | None = None,
    generation: int = 3,
    observed: int = 3,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": updated if total is None else total,
            "readyReplicas": ready,
            "availableReplicas": available,
            "updatedReplicas": updated,
            "conditions": conditions or [],
        },
    }


def pod(reason: str | None, message: str = "") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}} if reason else {"running": {}}
    return {"metadata": {"name": "p1"}, "status": {"containerStatuses": [{"name": "model-server", "state": state}]}}


def test_available_when_every_replica_is_updated_and_available() -> None:
    health = revision_health("r1", deployment(), [])
    assert (health.available, health.desired, health.ready, health.failure) == (True, 2, 2, None)


def test_not_available_while_old_pods_of_the_revision_remain() -> None:
    assert not revision_health("r1", deployment(total=3), []).available


def test_not_available_before_the_controller_saw_the_latest_generation() -> None:
    assert not revision_health("r1", deployment(generation=4, observed=3), []).available


def test_not_available_while_scaling_up() -> None:
    health = revision_health("r1", deployment(replicas=3, ready=2, available=2, updated=3), [])
    assert not health.available
    assert health.failure is None, "slow is not failed"


def test_image_pull_failure_is_reported_with_the_pod_and_message() -> None:
    health = revision_health("r1", deployment(ready=0, available=0), [pod(None), pod("ErrImagePull", "not found")])
    assert health.failure == "pod p1 container model-server is ErrImagePull: not found"


def test_crash_loop_is_a_failure_but_container_creating_is_not() -> None:
    assert pod_failure(pod("CrashLoopBackOff")) == "pod p1 container model-server is CrashLoopBackOff"
    assert pod_failure(pod("ContainerCreating")) is None
    assert pod_failure({"metadata": {"name": "p"}, "status": {}}) is None


def test_progress_deadline_is_a_failure() -> None:
    stuck = deployment(
        ready=0,
        available=0,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "rs timed out"}
        ],
    )
    assert revision_health("r1", stuck, []).failure == "not available within the progress deadline: rs timed out"


def test_a_crash_loop_on_a_transient_exit_is_not_the_revisions_failure() -> None:
    """A stream consumer exits TRANSIENT_EXIT when a broker restart hung its transactional call: restarting fixes
    it, so its back-off says nothing about the model; any other last exit code does."""
    crashed = pod("CrashLoopBackOff")
    status = crashed["status"]["containerStatuses"][0]
    status["lastState"] = {"terminated": {"exitCode": TRANSIENT_EXIT, "reason": "Error"}}
    assert pod_failure(crashed) is None
    status["lastState"]["terminated"]["exitCode"] = 1
    assert pod_failure(crashed) == "pod p1 container model-server is CrashLoopBackOff"
    # Only a crash loop: an image that cannot be pulled is a failure whatever the container did before.
    pulling = pod("ImagePullBackOff")
    pulling["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": TRANSIENT_EXIT}}
    assert pod_failure(pulling) == "pod p1 container model-server is ImagePullBackOff"


def test_a_crash_loop_says_what_the_container_last_said_as_it_exited() -> None:
    """With FallbackToLogsOnError the termination message is the end of the log: its last line says why."""
    crashed = pod("CrashLoopBackOff", "back-off 10s restarting failed container")
    log_tail = "INFO consuming events\nERROR stopping on a fatal error: set max_message_bytes at or below it\n\n"
    crashed["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 1, "message": log_tail}}
    assert pod_failure(crashed) == (
        "pod p1 container model-server is CrashLoopBackOff: back-off 10s restarting failed container; it last "
        "exited 1 saying: ERROR stopping on a fatal error: set max_message_bytes at or below it"
    )
    crashed["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"] = "x" * 1_000
    said = pod_failure(crashed)
    assert said is not None
    assert said.endswith("saying: ..." + "x" * 400)
