"""Rollout settings: the strategy (canary, blueGreen, shadow, abTest, direct) and its parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.base import (
    COOKIE_NAME,
    ApiModel,
    Duration,
    cel,
    cel_rules,
)
from modelrollout.api.gates import Gates
from modelrollout.api.traffic import Provider, TrafficRouting

Strategy = Literal["canary", "blueGreen", "shadow", "abTest", "direct"]
# What batch and stream can carry out when they lead a rollout (a spec without online): runs are events and records
# are split by key, so there is no preview to switch to (blueGreen) and no HTTP user to keep on a variant (abTest).
RECORD_STRATEGIES: tuple[Strategy, ...] = ("direct", "canary", "shadow")


class Pause(ApiModel):
    """Hold the rollout at this step."""

    duration: Duration | None = Field(
        default=None, description="How long to hold; without it the rollout waits for `promote`."
    )


class StepAnalysis(ApiModel):
    """Run the analysis once, to completion, before the next step."""

    metrics: list[str] | None = Field(
        default=None,
        max_length=20,
        description="Names of rollout.analysis.metrics to evaluate; all of them when unset.",
    )
    duration: Duration | None = Field(
        default=None, description="How long the analysis runs; defaults to two analysis intervals."
    )


class CanaryStep(ApiModel):
    """One canary step: exactly one of setWeight, pause or analysis."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
                "each canary step sets exactly one of setWeight, pause or analysis",
            )
        )
    )

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic to the canary.")
    pause: Pause | None = Field(default=None, description="Hold; timed, or until promoted.")
    analysis: StepAnalysis | None = Field(default=None, description="Run the analysis before going on.")

    @model_validator(mode="after")
    def _exactly_one_action(self) -> CanaryStep:
        if sum(x is not None for x in (self.set_weight, self.pause, self.analysis)) != 1:
            raise ValueError("each canary step sets exactly one of setWeight, pause or analysis")
        return self


class CanarySettings(ApiModel):
    """Shift traffic to the new revision in steps; metrics decide whether to go on."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "canary.steps: setWeight values must not decrease; to send traffic back to stable, abort",
                field_path=".steps",
            )
        )
    )

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=50,
        description="Steps in order. After the last one the canary is promoted.",
    )
    scale_down_delay: Duration = Field(
        default="30s", description="How long the old revision keeps running after promotion, for a fast undo."
    )

    @model_validator(mode="after")
    def _weights_never_decrease(self) -> CanarySettings:
        weights = [s.set_weight for s in self.steps if s.set_weight is not None]
        if weights != sorted(weights):
            raise ValueError("canary.steps: setWeight values must not decrease; to send traffic back to stable, abort")
        return self


class BlueGreenSettings(ApiModel):
    """Run the new revision at full size behind `<name>-preview`, then switch all traffic at once."""

    auto_promote: bool = Field(default=True, description="Switch as soon as pre-promotion analysis passes.")
    pre_promotion_analysis: bool = Field(
        default=True, description="Analyse the preview (rollout.analysis) before switching."
    )
    post_promotion_window: Duration = Field(
        default="0s", description="How long analysis goes on after the switch; a failure switches back."
    )
    scale_down_delay: Duration = Field(
        default="30s", description="How long the old revision keeps running after the switch."
    )


class ShadowSettings(ApiModel):
    """Mirror real traffic to the new revision; clients only get stable answers; the answers are compared."""

    mirror_percent: int = Field(default=100, ge=1, le=100, description="Percent of requests mirrored.")
    duration: Duration = Field(default="10m", description="How long the comparison must pass before promotion.")
    min_agreement: float = Field(
        default=0.98, ge=0, le=1, description="Classifiers: least share of identical predictions."
    )
    max_mean_abs_diff: float | None = Field(
        default=None, ge=0, description="Regressors: largest mean absolute difference of predictions."
    )
    min_comparisons: int = Field(
        default=100, ge=1, description="Fewest compared requests (batch: records) before a decision."
    )
    runs: int = Field(
        default=1, ge=1, le=30, description="Batch: shadow runs that must pass before the candidate is promoted."
    )


class RouteBy(ApiModel):
    """What keeps a user on one variant: a header or a cookie value (hashed)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.header) != has(self.cookie)",
                "abTest.routeBy sets exactly one of header or cookie",
            )
        )
    )

    header: str | None = Field(default=None, max_length=256, description="Header whose value picks the variant.")
    cookie: str | None = Field(
        default=None,
        max_length=256,
        pattern=COOKIE_NAME,
        description="Cookie whose value picks the variant (a cookie name: letters, digits and !#$%&'*+-.^_`|~).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> RouteBy:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("abTest.routeBy sets exactly one of header or cookie")
        return self


class SuccessMetric(ApiModel):
    """Per-variant successes and trials from Prometheus, e.g. conversions and requests."""

    successes: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL counting successes; {{version}} selects the variant.",
    )
    trials: str = Field(
        min_length=1, max_length=4096, description="PromQL counting trials; {{version}} selects the variant."
    )


class SplitTest(ApiModel):
    """What an A/B test (rollout.abTest) and an A/B/n test (online.graph.abn) share: how a user sticks to one
    variant, what counts as success, and how the variants are compared."""

    route_by: RouteBy = Field(description="How a user sticks to one variant.")
    success_metric: SuccessMetric = Field(description="What counts as success.")
    test: Literal["twoProportion", "sequential"] = Field(
        default="twoProportion", description="Statistical test that picks the winner."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Significance level of the test (family-wise with several variants)."
    )
    min_samples: int = Field(default=1000, ge=1, description="Trials per variant before any decision.")


class AbTestSettings(SplitTest):
    """Split users between stable (A) and candidate (B) and keep the variant with the better success rate."""

    weight: int = Field(default=50, ge=1, le=99, description="Percent of users assigned to the candidate.")
    max_duration: Duration = Field(default="24h", description="Stop undecided after this long and keep stable.")


_STRATEGY_BLOCKS = {"canary": "canary", "blueGreen": "blue_green", "shadow": "shadow", "abTest": "ab_test"}
_EXAMPLES = {
    "canary": "{steps: [{setWeight: 10}, {pause: {duration: 1m}}]}",
    "blueGreen": "{autoPromote: true}",
    "shadow": "{duration: 10m}",
    "abTest": "{routeBy: {header: x-user-id}, successMetric: {successes: ..., trials: ...}}",
}


def _strategy_rules() -> list[dict[str, str]]:
    rules = []
    for key, example in _EXAMPLES.items():
        rules.append(
            cel(
                f"self.strategy != '{key}' || has(self.{key})",
                f"rollout.strategy is {key}: set rollout.{key}, e.g. {example}",
                field_path=f".{key}",
                reason="FieldValueRequired",
            )
        )
        rules.append(
            cel(
                f"!has(self.{key}) || self.strategy == '{key}'",
                f"rollout.{key} is set but rollout.strategy is not {key}: set strategy: {key} or remove it",
                field_path=f".{key}",
            )
        )
    return rules


class RolloutSpec(ApiModel):
    """How a new revision reaches users."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            *_strategy_rules(),
            cel(
                "!(self.strategy in ['shadow', 'abTest']) || !has(self.trafficRouting) "
                "|| self.trafficRouting.provider != 'service'",
                "rollout.strategy shadow and abTest need a provider that can mirror and match headers: "
                "set trafficRouting.provider to router, gatewayAPI or istio",
                field_path=".trafficRouting.provider",
            ),
        )
    )

    strategy: Strategy = Field(
        default="direct",
        description="canary (weighted steps), blueGreen (preview, then switch), shadow (mirrored, compared), "
        "abTest (split users, pick a winner) or direct (replace once available).",
    )
    canary: CanarySettings | None = Field(default=None, description="Settings of strategy canary.")
    blue_green: BlueGreenSettings | None = Field(default=None, description="Settings of strategy blueGreen.")
    shadow: ShadowSettings | None = Field(default=None, description="Settings of strategy shadow.")
    ab_test: AbTestSettings | None = Field(default=None, description="Settings of strategy abTest.")
    analysis: AnalysisSettings | None = Field(
        default=None, description="Metric analysis that decides promotion and rollback."
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None, description="How traffic is split; provider router when unset."
    )
    gates: Gates | None = Field(
        default=None,
        description="Webhooks that must confirm the rollout and the promotion, and a Job that must pass before the "
        "candidate gets traffic.",
    )

    @model_validator(mode="after")
    def _strategy_settings(self) -> RolloutSpec:
        for key, attr in _STRATEGY_BLOCKS.items():
            present = getattr(self, attr) is not None
            if self.strategy == key and not present:
                raise ValueError(f"rollout.strategy is {key}: set rollout.{key}, e.g. {_EXAMPLES[key]}")
            if present and self.strategy != key:
                raise ValueError(
                    f"rollout.{key} is set but rollout.strategy is not {key}: set strategy: {key} or remove it"
                )
        if (
            self.strategy in ("shadow", "abTest")
            and self.traffic_routing is not None
            and self.traffic_routing.provider == "service"
        ):
            raise ValueError(
                "rollout.strategy shadow and abTest need a provider that can mirror and match headers: "
                "set trafficRouting.provider to router, gatewayAPI or istio"
            )
        return self

    @property
    def provider(self) -> Provider | None:
        """The traffic provider in force, decided here only: trafficRouting's, else our router; None for strategy
        direct without trafficRouting, which never splits traffic (`<name>` selects the serving revision)."""
        if self.traffic_routing is not None:
            return self.traffic_routing.provider
        return None if self.strategy == "direct" else "router"
