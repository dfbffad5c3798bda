"""The operator's own metrics that need no API server: ModelDeployments counted by the phase last written."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelrollout.telemetry import Phases


def test_each_model_deployment_counts_once_under_its_last_phase_and_leaves_when_deleted() -> None:
    registry = CollectorRegistry()
    phases = Phases(registry)

    def count(phase: str) -> float | None:
        return registry.get_sample_value("modelrollout_modeldeployments", {"phase": phase})

    phases.record(("ml", "a"), "Progressing")
    phases.record(("ml", "b"), "Healthy")
    phases.record(("ml", "a"), "Healthy")
    assert (count("Healthy"), count("Progressing")) == (2, 0)
    phases.record(("ml", "a"), "Healthy")  # unchanged: nothing to do
    phases.forget(("ml", "b"))
    phases.forget(("ml", "gone"))
    assert (count("Healthy"), count("Progressing")) == (1, 0)
