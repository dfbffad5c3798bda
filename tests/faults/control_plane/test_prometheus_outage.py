"""Prometheus killed in the middle of a canary's analysis step, then started again on the same port with the same
TSDB: no promotion on missing data. Every run while it is away is an Error (the provider turns a refused
connection into a failed query, `analysis.prometheus`; the run's verdict is the worst of its metrics); the step
holds and the canary keeps its weight (the spec's policy: Error runs count as undecided, and `inconclusiveLimit`
of them in a row are tolerated before the rollout pauses for a human); once Prometheus answers again the same
step's analysis passes on fresh data and the candidate is promoted, by itself.

The analysis reads a series Prometheus really scrapes, its own `up` (the pods are kwok's and serve nothing to
measure; the e2e suite covers the model servers' series): `min_over_time` over the run's window is 1 only when
every scrape in the window succeeded, and empty when there was none, so a run right after the restart has no data
until the first scrape (Inconclusive, never Successful on what was stored before the outage).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from testkit.ports import free_port
from testkit.prometheus import PrometheusServer, ScrapeTarget

from tests.faults.control_plane.conftest import StartOperator
from tests.faults.control_plane.support import Mdep, percent

pytestmark = [pytest.mark.faults, pytest.mark.slow]

INTERVAL_S = 2
ANALYSIS_S = (
    8  # the analysis step's window: its first run is due this long after the step began (Prometheus stops ~2 s in)
)
ERRORS_WANTED = 2  # Error runs of the step seen before Prometheus comes back
INCONCLUSIVE_LIMIT = 10  # above the undecided runs the outage causes (Errors, then no data until a first scrape)
STEPS = [{"setWeight": 50}, {"analysis": {"duration": f"{ANALYSIS_S}s"}}]
JOB = "prometheus"


@pytest.fixture
def prometheus(tmp_path: Path, namespace: str) -> Iterator[PrometheusServer]:
    port = free_port()
    server = PrometheusServer(
        work_dir=tmp_path / "prometheus", port=port, targets=[ScrapeTarget.local(port, namespace=namespace, job=JOB)]
    )
    # Not waiting for its first scrape (up to 6 s): the test waits for a passing run, which needs it anyway.
    server.start(wait_for_targets=False)
    try:
        yield server
    finally:
        server.close()


def _rollout(prometheus: PrometheusServer) -> dict[str, Any]:
    query = f'min_over_time(up{{job="{JOB}",namespace="{{{{namespace}}}}"}}[{{{{interval}}}}])'
    return {
        "strategy": "canary",
        "canary": {"steps": STEPS},
        "trafficRouting": {"provider": "router"},
        "analysis": {
            "interval": f"{INTERVAL_S}s",
            "minRequests": 0,  # nothing serves requests here: the metric is the only evidence
            "inconclusiveLimit": INCONCLUSIVE_LIMIT,
            "prometheus": {"address": prometheus.url, "timeout": "2s"},
            "metrics": [{"name": "scraped", "query": query, "min": 1}],
        },
    }


def _runs(status: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in (status.get("analysis") or {}).get("runs", []) if r.get("kind") == kind]


def _at(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["at"].replace("Z", "+00:00"))


async def test_prometheus_stopped_mid_analysis_step_holds_without_promotion_and_promotes_once_it_returns(
    prometheus: PrometheusServer, start_operator: StartOperator, mdep: Mdep
) -> None:
    operator = start_operator(MODELROLLOUT_PROMETHEUS_SCRAPE_INTERVAL_S=f"{prometheus.scrape_interval_s:g}")
    await mdep.create(_rollout(prometheus))
    await mdep.healthy_on("1", within=60)
    await mdep.to_version("2")
    # Mid-analysis: the candidate has its weight, the analysis step has begun, a first run passed.
    await mdep.wait(
        lambda s: s.get("currentStep") == 1 and any(r["verdict"] == "Successful" for r in _runs(s, "Background")),
        "a passing background run in the analysis step",
        within=30,
    )

    prometheus.stop(graceful=False)
    stopped = datetime.now().astimezone()
    held = await mdep.wait(
        lambda s: sum(r["verdict"] == "Error" for r in _runs(s, "Step")) >= ERRORS_WANTED,
        f"{ERRORS_WANTED} Error runs of the analysis step",
        within=ANALYSIS_S + ERRORS_WANTED * INTERVAL_S + 15,
    )
    assert held["stable"]["version"] == "1", "promoted while Prometheus was down"
    assert held["canary"]["version"] == "2"
    assert held["currentStep"] == 1, "the analysis step holds"
    assert held["weights"]["canary"] == 50, "the canary keeps its weight"
    assert held["phase"] == "Progressing", held.get("message")
    while_down = [r for r in held["analysis"]["runs"] if _at(r) > stopped]
    assert while_down, held["analysis"]
    assert {r["verdict"] for r in while_down} == {"Error"}, while_down
    assert all("cannot reach Prometheus" in (m.get("message") or "") for r in while_down for m in r["metrics"])
    assert held["analysis"]["consecutiveInconclusive"] >= ERRORS_WANTED

    prometheus.start(wait_for_targets=False)  # the first scrape is part of what the rollout waits for
    restarted = datetime.now().astimezone()
    done = await mdep.healthy_on("2", within=60)

    after = [r for r in _runs(done, "Step") if _at(r) > restarted]
    assert after, done["analysis"]
    assert after[-1]["verdict"] == "Successful", done["analysis"]
    assert all(r["verdict"] != "Successful" for r in _runs(done, "Step") if _at(r) < restarted)
    events = await mdep.events_until(
        lambda found: sum(e.reason == "Promoted" for e in found) == 2, "the Promoted Event of version 2"
    )
    assert [percent(e.message) for e in events if e.reason == "WeightSet"] == [50], "the step once"
    undecided = [e for e in events if e.reason == "AnalysisInconclusive"]
    assert undecided
    assert all(e.type == "Warning" for e in undecided)
    assert any("Error" in e.message for e in undecided), [e.message for e in undecided]
    assert [e.reason for e in events if e.reason in ("AnalysisPassed", "Promoted")][-2:] == [
        "AnalysisPassed",
        "Promoted",
    ]
    assert operator.alive()
