"""The operator's own metrics that need no API server: ModelDeployments counted by the phase last written."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelrollout.telemetry import Deployments, Phases


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


def _object(name: str, status: dict[str, object] | None = None, model: str = "churn") -> dict[str, object]:
    return {"metadata": {"namespace": "ml", "name": name}, "spec": {"model": {"name": model}}, "status": status or {}}


def _entry(outcome: str, finished: str) -> dict[str, str]:
    return {"revision": "r", "version": "2", "outcome": outcome, "startedAt": finished, "finishedAt": finished}


def test_per_model_deployment_series_count_what_a_pass_added_once_and_leave_with_it() -> None:
    registry = CollectorRegistry()
    deployments = Deployments(registry)

    def value(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"namespace": "ml", "modeldeployment": "a", **labels})

    old = _entry("Promoted", "2026-01-01T00:00:00Z")
    # First sight after a restart: the history the object already had is not counted again.
    deployments.record(_object("a", {"history": [old]}), {"history": [old], "weights": {"stable": 80, "canary": 20}})
    assert value("modelrollout_rollouts_total", outcome="Promoted") == 0
    assert value("modelrollout_rollouts_total", outcome="RolledBack") == 0  # exists at 0: increase() sees the first
    assert value("modelrollout_traffic_weight_percent", role="canary") == 20
    assert value("modelrollout_traffic_weight_percent", role="mirror") == 0
    assert value("modelrollout_modeldeployment_info", model="churn") == 1

    rolled_back = {"history": [old, _entry("RolledBack", "2026-01-02T00:00:00Z")], "weights": {"stable": 100}}
    before = _object("a", {"history": [old]})
    deployments.record(before, rolled_back)
    deployments.record(before, rolled_back)  # the pass's final write of the same decision
    assert value("modelrollout_rollouts_total", outcome="RolledBack") == 1
    assert value("modelrollout_traffic_weight_percent", role="canary") == 0

    ab = {"rateStable": 0.1, "rateCanary": 0.2, "samplesStable": 50, "samplesCanary": 40}
    deployments.record(_object("a", rolled_back), {**rolled_back, "abTest": ab})
    assert value("modelrollout_abtest_success_rate", variant="canary") == 0.2
    assert value("modelrollout_abtest_trials", variant="stable") == 50
    deployments.record(_object("a", rolled_back, model="renamed"), rolled_back)
    assert value("modelrollout_abtest_trials", variant="stable") is None, "no A/B test in status: no series"
    assert value("modelrollout_modeldeployment_info", model="churn") is None
    assert value("modelrollout_modeldeployment_info", model="renamed") == 1

    deployments.forget(("ml", "a"))
    deployments.forget(("ml", "never-seen"))
    assert value("modelrollout_rollouts_total", outcome="RolledBack") is None
    assert value("modelrollout_traffic_weight_percent", role="stable") is None


def test_batch_runs_are_counted_once_when_they_end_with_their_records() -> None:
    registry = CollectorRegistry()
    deployments = Deployments(registry)

    def value(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"namespace": "ml", "modeldeployment": "b", **labels})

    def run(job: str, role: str, phase: str) -> dict[str, object]:
        return {"job": job, "role": role, "phase": phase, "counts": {"read": 10, "scored": 9, "rejected": 1}}

    done = run("b-batch-1", "stable", "Succeeded")
    deployments.record(_object("b", {"batch": {"runs": [done]}}), {"batch": {"runs": [done]}})
    assert value("modelrollout_batch_runs_total", role="stable", phase="Succeeded") == 0, "ended before we looked"
    assert value("modelrollout_batch_runs_total", role="shadow", phase="Failed") == 0
    running = {"batch": {"runs": [done, run("b-shadow-2", "shadow", "Running")]}}
    deployments.record(_object("b", running), running)
    failed = {"batch": {"runs": [done, run("b-shadow-2", "shadow", "Failed")]}}
    deployments.record(_object("b", running), failed)
    deployments.record(_object("b", failed), failed)
    assert value("modelrollout_batch_runs_total", role="shadow", phase="Failed") == 1
    assert value("modelrollout_batch_records_total", role="shadow", result="scored") == 9
    assert value("modelrollout_batch_records_total", role="shadow", result="rejected") == 1
    deployments.forget(("ml", "b"))
    assert value("modelrollout_batch_records_total", role="shadow", result="scored") is None
