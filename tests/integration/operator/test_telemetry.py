"""The operator's /metrics on the real API server: its passes, its calls to the API server by verb and code,
the ModelDeployments by phase, analysis runs by verdict and finished steps, as a rollout goes."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from testkit.operator import OperatorProcess
from testkit.ports import free_port
from testkit.waiting import eventually

from tests.integration.operator.k8s import K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PORT = free_port()


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{PORT}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.operator_env(MODELROLLOUT_METRICS_PORT=str(PORT))
async def test_the_operator_counts_its_passes_calls_phases_runs_and_steps(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("online-direct.yaml")
    await k8s.healthy("iris", "1")

    async def healthy_counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape()
        return samples if value(samples, "modelrollout_modeldeployments", phase="Healthy") == 1 else None

    samples = await eventually(healthy_counted, within=30, what="one Healthy ModelDeployment in /metrics")
    assert value(samples, "modelrollout_reconcile_passes_total", result="ok") >= 2
    assert value(samples, "modelrollout_reconcile_duration_seconds_count") >= 2
    assert value(samples, "modelrollout_api_requests_total", verb="apply", code="200") > 0
    assert value(samples, "modelrollout_api_requests_total", verb="list", code="200") > 0
    assert value(samples, "modelrollout_api_requests_total", verb="watch", code="200") > 0

    # A canary whose analysis has no Prometheus to ask: its background runs (every second of a 5 s pause) are
    # Errors, and its first step ends at once.
    await k8s.patch_spec(
        "iris",
        {
            "model": {"version": "2", "uri": "file:///models/iris/2/model.joblib"},
            "rollout": {
                "strategy": "canary",
                "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 50}]},
                "analysis": {"interval": "1s", "metrics": [{"name": "errors", "builtin": "errorRate", "max": 0.1}]},
            },
        },
    )

    async def ran() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape()
        errors = value(samples, "modelrollout_analysis_runs_total", kind="Background", verdict="Error")
        steps = value(samples, "modelrollout_rollout_step_duration_seconds_count", strategy="canary")
        return samples if errors > 0 and steps > 0 else None

    samples = await eventually(ran, within=60, what="an analysis run and a finished step in /metrics")
    phases = {
        dict(labels)["phase"]: v for (name, labels), v in samples.items() if name == "modelrollout_modeldeployments"
    }
    assert sum(phases.values()) == 1, phases
