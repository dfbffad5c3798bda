"""The pure parts of `make demo` (hack/demo.py): the ModelDeployment it applies, the patches between versions, and
what it prints for status changes the real rollout engine makes. The demo itself (cluster, processes, a few
minutes) is not run here: `make demo` is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hack.demo import (
    LOCAL_ONLY_ENV,
    MODEL_KEYS,
    SLOW_MS,
    Observation,
    SeenEvent,
    build_manifest,
    describe_changes,
    model_patch,
    model_spec,
    parse_args,
    router_samples,
    run_text,
    traffic_text,
)
from rich.console import Console
from rich.text import Text
from testkit.faulty import FAILING_MODEL, FAILURE_SHARE_ENV, LATENCY_ENV, SLOW_MODEL
from testkit.load import LoadSummary, Outcome
from testkit.models import ModelArtifact
from testkit.rollout import V1, V2, Sim

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import AnalysisRun, MetricResult, ModelDeploymentStatus
from modelrollout.cli.render import EventInfo
from modelrollout.traffic.router import RouterConfig

PROMETHEUS = "http://127.0.0.1:9090"


def artifact(tmp_path: Path, label: str = "stable", **fields: Any) -> ModelArtifact:
    return ModelArtifact(label=label, path=tmp_path / f"{label}.joblib", predictions=(), **fields)


def failing(tmp_path: Path) -> ModelArtifact:
    env = {"PYTHONPATH": "/repo", FAILURE_SHARE_ENV: "0.3"}
    return artifact(tmp_path, "healthy-failing", model_format="custom", model_class=FAILING_MODEL, env=env)


def manifest(tmp_path: Path, version: str = "1", model: ModelArtifact | None = None) -> dict[str, Any]:
    model = model or artifact(tmp_path)
    return build_manifest(name="churn", version=version, artifact=model, prometheus_url=PROMETHEUS)


def plain(lines: list[Text]) -> list[str]:
    return [" ".join(text.plain.split()) for text in lines]


# --- the ModelDeployment -------------------------------------------------------------------------------------------


def test_the_manifest_is_the_canary_example_pointed_at_the_local_stack(tmp_path: Path) -> None:
    body = manifest(tmp_path)
    md = ModelDeployment.model_validate(body)  # what the operator and the CLI accept

    assert md.metadata.name == "churn"
    assert md.spec.model.version == "1"
    assert md.spec.model.uri == (tmp_path / "stable.joblib").resolve().as_uri()
    assert md.spec.model.format == "sklearn"
    assert md.spec.model.resources is not None  # kept from examples/online-canary-router.yaml
    assert md.spec.online is not None
    assert md.spec.online.autoscaling is not None
    rollout = md.spec.rollout
    assert rollout.strategy == "canary"
    assert rollout.canary is not None
    weights = [s.set_weight for s in rollout.canary.steps if s.set_weight is not None]
    pauses = [s.pause.duration for s in rollout.canary.steps if s.pause is not None]
    assert weights == [20, 50, 80]
    assert pauses == ["6s", "6s", "6s"]
    assert rollout.analysis is not None
    assert rollout.analysis.interval == "3s"
    assert rollout.analysis.prometheus is not None
    assert rollout.analysis.prometheus.address == PROMETHEUS
    assert {(m.builtin, m.max) for m in rollout.analysis.metrics} == {("errorRate", 0.02), ("latencyP99", 0.25)}
    assert rollout.traffic_routing is not None
    assert rollout.traffic_routing.provider == "router"
    assert rollout.traffic_routing.router is not None
    assert rollout.traffic_routing.router.retry_on_stable is True


def test_a_faulty_version_is_a_custom_model_without_the_local_pythonpath(tmp_path: Path) -> None:
    md = ModelDeployment.model_validate(manifest(tmp_path, "3", failing(tmp_path)))
    assert md.spec.model.format == "custom"
    assert md.spec.model.class_name == FAILING_MODEL
    assert [(e.name, e.value) for e in md.spec.model.env] == [(FAILURE_SHARE_ENV, "0.3")]
    assert not set(LOCAL_ONLY_ENV) & {e.name for e in md.spec.model.env}

    slow = artifact(tmp_path, "slow", model_format="custom", model_class=SLOW_MODEL, env={LATENCY_ENV: f"{SLOW_MS:g}"})
    assert model_spec(name="churn", version="3", artifact=slow)["env"] == [{"name": LATENCY_ENV, "value": "300"}]


def test_the_patch_between_versions_changes_only_the_model_and_removes_what_the_new_one_lacks(tmp_path: Path) -> None:
    v2 = model_spec(name="churn", version="2", artifact=artifact(tmp_path, "healthy"))
    v3 = model_spec(name="churn", version="3", artifact=failing(tmp_path))
    assert set(v2) <= set(MODEL_KEYS)
    assert set(v3) <= set(MODEL_KEYS)

    forward = model_patch(v2, v3)["spec"]["model"]
    assert forward == {
        "version": "3",
        "uri": (tmp_path / "healthy-failing.joblib").resolve().as_uri(),
        "format": "custom",
        "className": FAILING_MODEL,
        "env": [{"name": FAILURE_SHARE_ENV, "value": "0.3"}],
    }
    back = model_patch(v3, v2)["spec"]["model"]
    assert back["className"] is None
    assert back["env"] is None
    assert back["format"] == "sklearn"
    assert model_patch(v2, v2) == {"spec": {"model": {}}}


# --- what it prints ------------------------------------------------------------------------------------------------


def observation(tmp_path: Path, sim: Sim, at: float, **fields: Any) -> Observation:
    md = ModelDeployment.model_validate({**manifest(tmp_path), "status": sim.status.to_wire()})
    return Observation(at=at, md=md, **fields)


def test_a_real_canary_prints_every_step_weight_and_verdict_then_the_promotion(tmp_path: Path) -> None:
    """The statuses the rollout engine really writes for the demo's spec, printed change by change."""
    spec = ModelDeployment.model_validate(manifest(tmp_path)).spec
    sim = Sim.serving(spec)
    seen: list[str] = []
    last = observation(tmp_path, sim, 0)
    for second in range(1, 60):
        sim.wait(1)
        current = observation(tmp_path, sim, second)
        seen += plain(describe_changes(last, current))
        last = current
        if sim.status.phase == "Healthy":
            break

    assert sim.status.stable == V2
    text = "\n".join(seen)
    for step in ("step 1: pause 6s", "step 3: pause 6s", "step 5: pause 6s"):
        assert step in text
    for weights in ("stable 80%", "stable 50%", "stable 20%"):
        assert any(weights in line and "status:" in line for line in seen), weights
    assert "canary: version 2 (revision bbbb2222)" in text
    assert any("analysis" in line and "Background run" in line and "Successful" in line for line in seen)
    assert any(line.endswith("history version 2 (revision bbbb2222): Promoted") for line in seen)
    assert "phase Healthy" in text
    assert seen.index(next(s for s in seen if "step 1:" in s)) < seen.index(next(s for s in seen if "step 5:" in s))
    # Nothing changes, nothing printed.
    assert describe_changes(last, last) == []


def test_the_router_configmap_and_events_are_printed_when_they_change(tmp_path: Path) -> None:
    sim = Sim.serving(ModelDeployment.model_validate(manifest(tmp_path)).spec)
    config = RouterConfig.model_validate(
        {
            "route": "churn",
            "backends": {"stable": "http://churn-stable:80", "canary": "http://churn-canary:80"},
            "versions": {"stable": "1", "canary": "2"},
            "weights": {"stable": 80, "canary": 20},
            "retryOnStable": True,
        }
    )
    event = SeenEvent(("churn.1", 1), EventInfo("Warning", "AnalysisFailed", "bad", datetime(2026, 1, 1, tzinfo=UTC)))
    before = observation(tmp_path, sim, 1)
    after = observation(tmp_path, sim, 2.5, router=config, events=(event,))

    lines = describe_changes(before, after)
    assert plain(lines) == [
        "2.5s router ConfigMap churn-router: v1 80% / v2 20%, retryOnStable",
        "2.5s event Warning AnalysisFailed: bad",
    ]
    assert lines[-1].no_wrap  # events are cut at the terminal's edge: the phase line carries the full message
    assert describe_changes(after, observation(tmp_path, sim, 3, router=config, events=(event,))) == []


def test_an_analysis_run_shows_each_value_against_its_bound_and_one_shared_reason() -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    failed = AnalysisRun(
        at=at,
        verdict="Failed",
        kind="Background",
        step=3,
        metrics=[
            MetricResult(name="error-rate", verdict="Failed", value=0.2917, message="0.2917 is above max 0.02"),
            MetricResult(name="latency-p99", verdict="Successful", value=0.00246),
        ],
    )
    bounds = {"error-rate": "max 0.02", "latency-p99": "max 0.25"}
    assert run_text(failed, bounds).plain == (
        "Background run, step 3: Failed  error-rate 0.292 (max 0.02) FAILED, latency-p99 0.00246 (max 0.25) ok"
    )
    why = "only 18 requests in the window"
    undecided = AnalysisRun(
        at=at,
        verdict="Inconclusive",
        kind="Background",
        metrics=[
            MetricResult(name="error-rate", verdict="Inconclusive", value=0.35, message=why),
            MetricResult(name="latency-p99", verdict="Inconclusive", value=None, message=why),
        ],
    )
    assert run_text(undecided, bounds).plain == (
        f"Background run: Inconclusive  error-rate 0.35 (max 0.02) undecided, latency-p99 no data (max 0.25) "
        f"undecided  ({why})"
    )


def test_a_status_never_seen_before_prints_phase_and_weights() -> None:
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "churn"},
            "spec": {
                "model": {"name": "churn", "version": "1", "uri": "s3://m/1", "format": "sklearn"},
                "online": {},
            },
            "status": ModelDeploymentStatus(phase="Healthy", stable=V1, message="serving").to_wire(),
        }
    )
    lines = plain(describe_changes(None, Observation(at=0, md=md)))
    assert lines == [
        "0.0s phase Healthy serving",
        f"0.0s phase stable: version 1 (revision {V1.revision})",
        "0.0s weights status: stable 100% ████████████████████████ canary 0%",
    ]
    rendered = Console(width=200, record=True)
    for text in describe_changes(None, Observation(at=0, md=md)):
        rendered.print(text)
    assert "Healthy" in rendered.export_text()


def test_traffic_is_what_the_clients_saw() -> None:
    def outcome(i: int, status: int | None, version: str | None) -> Outcome:
        return Outcome(index=i, row=i, sent_at=float(i), latency_s=0.01, status=status, version=version)

    summary = LoadSummary((outcome(0, 200, "1"), outcome(1, 200, "1"), outcome(2, 200, "2"), outcome(3, None, None)))
    assert " ".join(traffic_text(5, summary, 5).plain.split()) == (
        "5.0s traffic clients, last 5s: 4 requests, answered by v1 67%, v2 33%, 1 failed"
    )


# --- the bad version's clock ---------------------------------------------------------------------------------------

EXPOSITION = """\
# TYPE modelrouter_requests_total counter
modelrouter_requests_total{route="churn",version="2",role="stable",code="200"} 120.0
modelrouter_requests_total{route="churn",version="3",role="canary",code="200"} 14.0
modelrouter_requests_total{route="churn",version="3",role="canary",code="500"} 6.0
modelrouter_requests_total{route="other",version="3",role="canary",code="500"} 99.0
# TYPE modelrouter_weight gauge
modelrouter_weight{route="churn",role="stable"} 80.0
modelrouter_weight{route="churn",role="canary"} 20.0
"""


@pytest.mark.parametrize(("bad", "calls"), [("failing", 6.0), ("slow", 20.0)])
def test_bad_calls_and_the_canary_weight_come_from_the_routers_metrics(bad: Any, calls: float) -> None:
    assert router_samples(EXPOSITION, route="churn", version="3", bad=bad) == (calls, 20.0)
    assert router_samples("", route="churn", version="3", bad=bad) == (0.0, None)


def test_options_come_from_make_variables_and_flags(tmp_path: Path) -> None:
    options = parse_args([], env={"KEEP": "1", "MODELROLLOUT_CACHE": str(tmp_path), "CLUSTER_NAME": "mr-demo"})
    assert options.keep
    assert options.cluster == "mr-demo"
    assert options.work_dir == tmp_path / "demo"
    assert options.bad == "failing"
    assert options.kubeconfig is None
    assert not parse_args([], env={"KEEP": "0"}).keep
    assert parse_args(["--bad", "slow", "--kubeconfig", "/k"], env={}).bad == "slow"
    assert parse_args([], env={"BAD": "slow"}).bad == "slow"
