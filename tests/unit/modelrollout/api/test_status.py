from __future__ import annotations

from datetime import UTC, datetime

from modelrollout.api.status import (
    AnalysisRun,
    Condition,
    HistoryEntry,
    MetricResult,
    ModelDeploymentStatus,
    RevisionRef,
    Weights,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def full_status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Progressing",
        observed_generation=3,
        modes="online",
        stable=RevisionRef(revision="a1b2c3d4", version="6"),
        canary=RevisionRef(revision="e5f6a7b8", version="7"),
        current_step=2,
        step_started_at=NOW,
        weights=Weights(stable=90, canary=10),
        analysis={
            "runs": [
                AnalysisRun(
                    at=NOW,
                    verdict="Failed",
                    step=2,
                    metrics=[
                        MetricResult(
                            name="p95",
                            verdict="Failed",
                            value=0.31,
                            stable_value=0.12,
                            evidence={"bound": 0.2},
                        )
                    ],
                )
            ],
            "consecutiveFailures": 1,
        },
        conditions=[Condition(type="Progressing", status="True", reason="CanaryStep", last_transition_time=NOW)],
        history=[HistoryEntry(revision="0f0f0f0f", version="5", outcome="Promoted", started_at=NOW, finished_at=NOW)],
    )


def test_status_round_trips_through_its_wire_form() -> None:
    status = full_status()
    wire = status.to_wire()
    assert wire["weights"] == {"stable": 90, "canary": 10, "mirror": 0}
    assert wire["analysis"]["runs"][0]["metrics"][0]["stableValue"] == 0.12
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    assert ModelDeploymentStatus.model_validate(wire) == status


def test_an_empty_status_is_pending_with_all_traffic_on_stable() -> None:
    status = ModelDeploymentStatus.model_validate({})
    assert status.phase == "Pending"
    assert status.weights == Weights(stable=100, canary=0, mirror=0)
