"""Operator configuration: environment variables (prefix MODELROLLOUT_) or `modelrollout run` flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator reads at start-up; immutable afterwards."""

    model_config = SettingsConfigDict(env_prefix="MODELROLLOUT_", frozen=True, extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; all namespaces when empty (needs cluster RBAC)."
    )
    default_image: str = Field(
        default="ghcr.io/modelrollout/model-server:0.1.0",
        description="Model server image for ModelDeployments that do not set spec.model.image.",
    )
    reconcile_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="Period of the timer that corrects drift and refreshes status."
    )
    progress_deadline_s: int = Field(
        default=600, ge=10, description="Seconds a new revision may take to become available before it is failed."
    )
    liveness_port: int = Field(default=8081, ge=0, le=65535, description="Port of /healthz; 0 disables it.")
    metrics_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the operator's own /metrics (telemetry.py); 0 disables it."
    )
    field_manager: str = Field(default="modelrollout", description="Server-side apply field manager.")
    history_limit: int = Field(
        default=10, ge=1, le=100, description="Finished rollouts kept in status.history (the only such limit)."
    )
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Prometheus for analysis when a ModelDeployment sets no spec.rollout.analysis.prometheus.",
    )
    prometheus_scrape_interval_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Scrape interval of that Prometheus: rate windows are never shorter than four of them.",
    )
    apply_retry_initial_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="First retry delay of a ModelDeployment whose child object the API server refused; doubles.",
    )
    apply_retry_max_s: float = Field(
        default=300.0, gt=0, le=3600, description="Longest retry delay of such a ModelDeployment."
    )
