"""One A/B evaluation against a metric provider: the user's success metric per variant since the split."""

from __future__ import annotations

from typing import Any

from modelrollout.analysis.experiment import run_experiment
from modelrollout.analysis.provider import QueryResult
from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.rollout import AbTestSettings
from tests.unit.modelrollout.analysis.test_run import CANARY, STABLE, T0, Exploding, TableProvider

SUCCESSES = 'sum(increase(shop_conversions_total{model_version="{{version}}"}[{{interval}}]))'
TRIALS = 'sum(increase(shop_visits_total{model_version="{{version}}"}[{{interval}}]))'


def ab_request(window: float = 90.4, **ab: Any) -> AnalysisRequest:
    settings = AbTestSettings.model_validate(
        {
            "routeBy": {"cookie": "uid"},
            "successMetric": {"successes": SUCCESSES, "trials": TRIALS},
            "minSamples": 500,
            **ab,
        }
    )
    return AnalysisRequest(
        kind="Experiment",
        step=1,
        canary=CANARY,
        stable=STABLE,
        metrics=(),
        window_seconds=window,
        no_data="inconclusive",
        min_requests=1,
        min_comparisons=1,
        ab_test=settings,
    )


def counts(stable: tuple[float, float], canary: tuple[float, float]) -> TableProvider:
    return TableProvider(
        [
            ('conversions_total{model_version="6"}[91s]', QueryResult.of(stable[0])),
            ('visits_total{model_version="6"}[91s]', QueryResult.of(stable[1])),
            ('conversions_total{model_version="7"}[91s]', QueryResult.of(canary[0])),
            ('visits_total{model_version="7"}[91s]', QueryResult.of(canary[1])),
        ]
    )


async def test_counts_since_the_split_decide_the_winner() -> None:
    provider = counts((100.4, 1000.2), (150.6, 999.7))
    outcome = await run_experiment(provider, ab_request(), namespace="shop", name="churn", model="churn", now=T0)
    assert sum(provider.asked.values()) == 4  # every query filled with the variant and the whole window
    result = outcome.experiment
    assert result is not None
    assert (result.samples_stable, result.samples_canary) == (1000, 1000)  # increase() extrapolates: rounded
    assert result.rate_canary == 0.151
    assert result.winner == "canary"
    assert outcome.run.kind == "Experiment"
    assert outcome.run.step == 1
    assert outcome.run.at == T0
    assert outcome.run.verdict == "Successful"
    metric = outcome.run.metrics[0]
    assert metric.name == "ab-test"
    assert metric.evidence is not None
    assert metric.evidence["trialsCanary"] == 1000
    assert metric.evidence["pValue"] == result.p_value
    assert metric.evidence["effectLow"] > 0
    assert metric.message is not None
    assert "samples 1000/1000 (min 500 each)" in metric.message


async def test_a_losing_candidate_fails_the_run() -> None:
    outcome = await run_experiment(
        counts((150, 1000), (100, 1000)), ab_request(), namespace="shop", name="churn", model="churn", now=T0
    )
    assert outcome.run.verdict == "Failed"
    assert outcome.experiment is not None
    assert outcome.experiment.winner == "stable"


async def test_no_series_yet_is_zero_and_decides_nothing() -> None:
    outcome = await run_experiment(TableProvider([]), ab_request(), namespace="shop", name="c", model="c", now=T0)
    assert outcome.run.verdict == "Inconclusive"
    assert outcome.experiment is not None
    assert (outcome.experiment.samples_stable, outcome.experiment.samples_canary) == (0, 0)


async def test_successes_never_exceed_trials() -> None:
    outcome = await run_experiment(
        counts((11, 10), (0, 0)), ab_request(), namespace="shop", name="churn", model="churn", now=T0
    )
    assert outcome.experiment is not None
    assert outcome.experiment.rate_stable == 1.0


async def test_failed_queries_are_an_error_run_without_a_result() -> None:
    down = TableProvider([("visits_total", QueryResult.failed("connection refused"))])
    outcome = await run_experiment(down, ab_request(), namespace="shop", name="churn", model="churn", now=T0)
    assert outcome.experiment is None
    assert outcome.run.verdict == "Error"
    assert outcome.run.metrics[0].message == "stable trials: connection refused; canary trials: connection refused"
    crashed = await run_experiment(Exploding(), ab_request(), namespace="shop", name="churn", model="churn", now=T0)
    assert crashed.run.verdict == "Error"
    assert "RuntimeError: provider bug" in (crashed.run.metrics[0].message or "")


async def test_a_negative_count_is_an_error() -> None:
    bad = TableProvider([("conversions_total", QueryResult.of(-3))])
    outcome = await run_experiment(bad, ab_request(), namespace="shop", name="churn", model="churn", now=T0)
    assert outcome.run.verdict == "Error"
    assert "stable successes is -3" in (outcome.run.metrics[0].message or "")


async def test_an_unknown_placeholder_names_the_field() -> None:
    req = ab_request(successMetric={"successes": "sum(x{v='{{model}}'})", "trials": TRIALS})
    outcome = await run_experiment(TableProvider([]), req, namespace="shop", name="churn", model="churn", now=T0)
    assert outcome.run.verdict == "Error"
    assert (outcome.run.metrics[0].message or "").startswith("abTest.successMetric: unknown placeholder {{model}}")
