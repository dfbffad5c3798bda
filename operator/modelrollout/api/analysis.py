"""Metric analysis settings: which metrics, from which Prometheus, judged how."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.base import (
    DNS_LABEL,
    ApiModel,
    Duration,
    SecretKeyRef,
    cel,
    cel_rules,
)

NoDataPolicy = Literal["inconclusive", "fail", "pass"]
JudgeType = Literal["threshold", "sequential", "mannWhitney"]
Builtin = Literal[
    "latencyP95", "latencyP99", "errorRate", "requestRate", "shadowAgreement", "shadowMeanAbsDiff", "lagGrowth"
]


class MetricBound(ApiModel):
    """A bound relative to the stable revision over the same window."""

    max_increase: float | None = Field(
        default=None, ge=0, description="Largest allowed increase as a fraction of stable (0.1 = +10%)."
    )
    max_decrease: float | None = Field(
        default=None, ge=0, le=1, description="Largest allowed decrease as a fraction of stable."
    )


class AnalysisMetric(ApiModel):
    """One metric the analysis checks: a builtin over the model server's metrics, or custom PromQL."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.builtin) != has(self.query)",
                "each analysis metric sets exactly one of builtin or query",
            ),
            cel(
                "has(self.min) || has(self.max) || has(self.relativeToStable)",
                "an analysis metric needs a bound: set min, max or relativeToStable",
            ),
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "analysis metric min must not exceed max",
                field_path=".min",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL, description="Name shown in status.")
    builtin: Builtin | None = Field(default=None, description="A ready-made query over model server metrics.")
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Custom PromQL; may use {{namespace}} {{name}} {{version}} {{revision}} {{interval}}.",
    )
    min: float | None = Field(default=None, description="Fail when the value is below this.")
    max: float | None = Field(default=None, description="Fail when the value is above this.")
    relative_to_stable: MetricBound | None = Field(
        default=None, description="Bounds relative to the stable revision over the same window."
    )
    weight: int = Field(default=1, ge=0, le=100, description="Weight in the mannWhitney judge's score.")
    critical: bool = Field(default=False, description="mannWhitney: a failure of this metric fails the run.")
    group: str | None = Field(
        default=None,
        max_length=63,
        description="mannWhitney: metrics of a group share one score weighted by their summed weights; "
        "a metric without a group is a group of its own.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisMetric:
        if (self.builtin is None) == (self.query is None):
            raise ValueError("each analysis metric sets exactly one of builtin or query")
        if self.min is None and self.max is None and self.relative_to_stable is None:
            raise ValueError("an analysis metric needs a bound: set min, max or relativeToStable")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("analysis metric min must not exceed max")
        return self


class PrometheusSettings(ApiModel):
    """Where analysis metrics come from."""

    address: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description="Prometheus base URL, e.g. http://prometheus:9090.",
    )
    timeout: Duration = Field(default="10s", description="Timeout of one query.")
    bearer_token_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a bearer token sent as the Authorization header."
    )


class Judge(ApiModel):
    """How metric measurements become a verdict."""

    type: JudgeType = Field(
        default="threshold",
        description="threshold: fixed bounds; sequential: always-valid tests on counts; "
        "mannWhitney: Kayenta-style comparison with the stable revision.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="False-alarm rate the statistical judges keep.")
    pass_score: int = Field(default=95, ge=0, le=100, description="mannWhitney: least score that passes.")
    marginal_score: int = Field(default=75, ge=0, le=100, description="mannWhitney: least score that is not a fail.")
    tolerance: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="sequential and mannWhitney: the tolerated relative regression (0.5 = +50% of stable's "
        "bad-event rate or median) for metrics without relativeToStable.maxIncrease; sequential promotes once its "
        "upper confidence bound is below it.",
    )


class AnalysisSettings(ApiModel):
    """Metric analysis that promotes or rolls back the new revision."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.metrics) || self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
                "analysis.metrics names must be unique",
                field_path=".metrics",
            )
        )
    )

    interval: Duration = Field(default="30s", description="Time between two analysis runs.")
    failure_limit: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Failed runs tolerated; one more rolls back (as in Argo Rollouts).",
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Consecutive inconclusive runs tolerated; one more pauses the rollout for a human decision.",
    )
    no_data: NoDataPolicy = Field(
        default="inconclusive",
        description="Verdict for an empty or NaN result or too little traffic: inconclusive, fail or pass. "
        "pass never promotes a candidate without requests in the last window (a traffic gap).",
    )
    min_requests: int = Field(
        default=20, ge=0, description="Fewest canary requests in a window for a metric to count as data."
    )
    judge: Judge = Field(
        default_factory=Judge,
        description="How measurements become verdicts.",
        json_schema_extra={"default": {}},
    )
    prometheus: PrometheusSettings | None = Field(
        default=None, description="Prometheus to query; defaults to the operator's configured address."
    )
    metrics: list[AnalysisMetric] = Field(default_factory=list, max_length=20, description="What is checked.")

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisSettings:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("analysis.metrics names must be unique")
        return self
