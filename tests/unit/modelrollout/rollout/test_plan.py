from __future__ import annotations

from typing import Any

import pytest
from testkit.rollout import METRICS, analysis

from modelrollout.api.rollout import RolloutSpec
from modelrollout.rollout.plan import (
    DEFAULT_SCALE_DOWN_DELAY_S,
    AnalysisStep,
    ExperimentStep,
    MirrorStep,
    PauseStep,
    PreviewStep,
    ShadowStep,
    SplitStep,
    SwitchStep,
    WeightStep,
    WindowStep,
    build_plan,
)


def plan(**rollout: Any) -> Any:
    return build_plan(RolloutSpec.model_validate(rollout))


def test_canary_steps_are_the_users_steps_with_durations_in_seconds() -> None:
    p = plan(
        strategy="canary",
        canary={
            "steps": [
                {"setWeight": 5},
                {"pause": {"duration": "1m30s"}},
                {"pause": {}},
                {"analysis": {}},
                {"analysis": {"metrics": ["p95"], "duration": "5m"}},
            ],
            "scaleDownDelay": "2m",
        },
        analysis=analysis(interval="45s"),
    )
    assert p.steps == (
        WeightStep(5),
        PauseStep(90),
        PauseStep(None),
        AnalysisStep(None, 90),  # two analysis intervals by default
        AnalysisStep(("p95",), 300),
    )
    assert p.scale_down_delay_s == 120
    assert p.interval_s == 45


@pytest.mark.parametrize(
    ("settings", "steps"),
    [
        ({}, (PreviewStep(), AnalysisStep(None, 60), SwitchStep())),
        ({"autoPromote": False}, (PreviewStep(), AnalysisStep(None, 60), PauseStep(None), SwitchStep())),
        ({"prePromotionAnalysis": False, "postPromotionWindow": "10m"}, (PreviewStep(), SwitchStep(), WindowStep(600))),
    ],
)
def test_blue_green_steps(settings: dict[str, Any], steps: tuple[Any, ...]) -> None:
    assert plan(strategy="blueGreen", blueGreen=settings, analysis=analysis()).steps == steps


def test_blue_green_has_no_pre_promotion_analysis_without_metrics() -> None:
    assert plan(strategy="blueGreen", blueGreen={}).steps == (PreviewStep(), SwitchStep())


def test_shadow_mirrors_then_compares_for_its_duration() -> None:
    p = plan(strategy="shadow", shadow={"mirrorPercent": 25, "duration": "15m", "minComparisons": 500})
    assert p.steps == (MirrorStep(25), ShadowStep(900))
    assert p.min_comparisons == 500
    assert p.scale_down_delay_s == DEFAULT_SCALE_DOWN_DELAY_S


def test_shadow_adds_agreement_and_keeps_a_users_latency_metric_instead_of_the_default() -> None:
    p = plan(strategy="shadow", shadow={}, analysis=analysis())
    assert [m.name for m in p.background_metrics] == ["p95", "errors", "shadow-agreement"]


def test_a_users_metric_with_a_shadow_name_wins() -> None:
    mine = {"name": "shadow-agreement", "builtin": "shadowAgreement", "min": 0.5}
    p = plan(strategy="shadow", shadow={}, analysis=analysis(metrics=[mine]))
    assert [(m.name, m.min) for m in p.background_metrics] == [("shadow-agreement", 0.5), ("shadow-latency", None)]


def test_direct_has_no_steps() -> None:
    assert plan(strategy="direct").steps == ()


def test_ab_test_splits_users_then_runs_the_experiment_until_max_duration() -> None:
    p = plan(
        strategy="abTest",
        abTest={
            "weight": 30,
            "routeBy": {"header": "x"},
            "successMetric": {"successes": "s", "trials": "t"},
            "maxDuration": "2h",
        },
        trafficRouting={"provider": "router"},
    )
    split, experiment = p.steps
    assert split == SplitStep(30)
    assert isinstance(experiment, ExperimentStep)
    assert experiment.seconds == 7200
    assert experiment.settings.weight == 30


def test_resolving_step_metrics() -> None:
    p = plan(strategy="canary", canary={"steps": [{"setWeight": 1}]}, analysis=analysis())
    assert [m.name for m in p.resolve(None)] == [m["name"] for m in METRICS]  # type: ignore[union-attr]
    assert [m.name for m in p.resolve(("errors",))] == ["errors"]  # type: ignore[union-attr]
    assert p.resolve(("errors", "nope")) == "analysis step names unknown metrics ['nope']; known: ['errors', 'p95']"
    empty = plan(strategy="canary", canary={"steps": [{"setWeight": 1}]})
    assert empty.resolve(None) == "rollout.analysis.metrics is empty"


@pytest.mark.parametrize(
    ("step", "text"),
    [
        (WeightStep(10), "setWeight 10"),
        (PauseStep(None), "pause until promoted"),
        (PauseStep(30), "pause 30s"),
        (AnalysisStep(("a", "b"), 60), "analysis of a, b over 60s"),
        (AnalysisStep(None, 60), "analysis of all metrics over 60s"),
        (PreviewStep(), "preview at full size"),
        (SwitchStep(), "switch all traffic"),
        (WindowStep(120), "post-promotion window 120s"),
        (MirrorStep(50), "mirror 50%"),
        (ShadowStep(600), "shadow comparison for 600s"),
        (SplitStep(30), "split users 70/30"),
    ],
)
def test_steps_describe_themselves_for_messages(step: Any, text: str) -> None:
    assert step.describe() == text
