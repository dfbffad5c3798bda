from datetime import UTC, datetime, timedelta

from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.rollout.conditions import (
    APPLY_FAILED,
    mark_apply_failed,
    sync_conditions,
    without_apply_failure,
)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
REFUSED = "the API server refused Deployment md-abc (HTTP 403): exceeded quota"


def healthy() -> ModelDeploymentStatus:
    status = ModelDeploymentStatus(phase="Healthy", message="version 1 serves", observed_generation=1)
    sync_conditions(status, now=T0)
    return status


def degraded(status: ModelDeploymentStatus) -> tuple[str, str, str, int | None]:
    found = next(c for c in status.conditions if c.type == "Degraded")
    return found.status, found.reason, found.message, found.observed_generation


def test_a_refusal_is_in_message_and_degraded_and_the_phase_stays() -> None:
    status = healthy()
    mark_apply_failed(status, REFUSED, now=T0 + timedelta(seconds=5), generation=2)
    assert status.phase == "Healthy"
    assert status.message == REFUSED
    assert degraded(status) == ("True", APPLY_FAILED, REFUSED, 2)
    assert [c.type for c in status.conditions].count("Degraded") == 1
    assert status.observed_generation == 1, "the refused generation was not reconciled"


def test_the_next_pass_starts_without_the_refusal() -> None:
    status = healthy()
    mark_apply_failed(status, REFUSED, now=T0, generation=2)
    start = without_apply_failure(status)
    assert start.message is None
    assert all(c.reason != APPLY_FAILED for c in start.conditions)
    assert status.message == REFUSED, "a copy: the status read is not changed"
    sync_conditions(start, now=T0 + timedelta(seconds=9))
    assert degraded(start)[:2] == ("False", "AsExpected")


def test_a_later_decision_message_is_kept() -> None:
    status = healthy()
    mark_apply_failed(status, REFUSED, now=T0, generation=2)
    status.message = "step 1: setWeight 20"
    assert without_apply_failure(status).message == "step 1: setWeight 20"


def test_a_status_never_refused_is_unchanged() -> None:
    status = healthy()
    assert without_apply_failure(status) is status
